"""The global tracking transformer's network (config, embeddings, association) and its loss."""

from __future__ import annotations

import copy
import math
import warnings

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from pipeline_lib.data.instances import crop_offsets, extract_crops
from pipeline_lib.tracking.gtr.detections import Detections
from pipeline_lib.tracking.gtr.loss import association_accuracy, association_loss, track_logits
from pipeline_lib.tracking.gtr.model import (
    BoxEmbedding,
    GeometryBias,
    GeometryBiasConfig,
    GlobalTrackingTransformer,
    GTRModelConfig,
    HingeMLPEmbedding,
    ModelConfigError,
    PosEmbeddingConfig,
    TempEmbeddingConfig,
    TimeEmbedding,
)

SMALL = {
    "d_model": 32,
    "nhead": 2,
    "dim_feedforward": 64,
    "dropout": 0.0,
    "dropout_attn_head": 0.0,
}


def make_dets(
    boxes,
    frames,
    track_ids=None,
    image_hw=(1024, 1024),
    crop_size: int = 16,
    channels: int = 1,
    seed: int = 0,
) -> Detections:
    boxes = torch.as_tensor(boxes, dtype=torch.float32).reshape(-1, 4)
    n = len(boxes)
    gen = torch.Generator().manual_seed(seed)
    return Detections(
        crops=torch.rand((n, channels, crop_size, crop_size), generator=gen),
        boxes=boxes,
        centroids=(boxes[:, :2] + boxes[:, 2:]) / 2,
        frames=torch.as_tensor(frames, dtype=torch.int64),
        track_ids=torch.as_tensor([-1] * n if track_ids is None else track_ids, dtype=torch.int64),
        scores=torch.ones(n),
        image_hw=image_hw,
    )


def square_boxes(centres, size: float = 60.0) -> torch.Tensor:
    c = torch.as_tensor(centres, dtype=torch.float32).reshape(-1, 2)
    return torch.cat([c - size / 2, c + size / 2], dim=1)


def two_track_window(n_frames: int = 4, seed: int = 0) -> tuple[Detections, Detections]:
    """Two animals walking slowly; frames 0..n-1 are the window, frame n the (shuffled) query."""
    gen = torch.Generator().manual_seed(seed)
    start = torch.rand((2, 2), generator=gen) * 800 + 100
    step = (torch.rand((2, 2), generator=gen) - 0.5) * 20
    centres = torch.stack([start + step * t for t in range(n_frames + 1)])  # (T, 2, 2)
    window = make_dets(
        square_boxes(centres[:n_frames].reshape(-1, 2)),
        torch.arange(n_frames).repeat_interleave(2),
        torch.tensor([0, 1]).repeat(n_frames),
        seed=seed,
    )
    order = torch.randperm(2, generator=gen)
    query = make_dets(
        square_boxes(centres[n_frames][order]),
        [n_frames, n_frames],
        order,
        seed=seed + 1,
    )
    return window, query


def small_model(**overrides) -> GlobalTrackingTransformer:
    torch.manual_seed(0)
    return GlobalTrackingTransformer.from_dict({**SMALL, **overrides}).eval()


# ----------------------------------------------------------------------------------------------
# Configuration
# ----------------------------------------------------------------------------------------------


def test_config_defaults_and_round_trip():
    cfg = GTRModelConfig.from_dict(None)
    assert (cfg.d_model, cfg.nhead, cfg.num_encoder_layers, cfg.num_decoder_layers) == (
        128,
        4,
        1,
        1,
    )
    assert (cfg.dim_feedforward, cfg.dropout, cfg.activation) == (256, 0.1, "relu")
    assert cfg.encoder_cfg.model_name == "cnn" and cfg.encoder_cfg.in_chans == 1
    assert cfg.embedding_meta.pos.mode == "fixed" and cfg.embedding_meta.pos.normalize
    assert cfg.embedding_meta.temp.mode == "fixed"
    custom = GTRModelConfig.from_dict(
        {
            "d_model": 64,
            "norm": True,
            "encoder_cfg": {"model_name": "resnet18", "in_chans": 3},
            "embedding_meta": {
                "pos": {"mode": "learned", "emb_num": 8, "mlp_cfg": {"hidden_dims": 32}},
                "temp": {"mode": "off"},
            },
        }
    )
    assert GTRModelConfig.from_dict(custom.to_dict()) == custom
    assert custom.embedding_meta.pos.mlp_cfg.hidden_dims == 32


def test_config_reads_a_dreem_model_section():
    """DREEM's documented model example loads: its inert keys at their default, timm's
    resnet18 built by torchvision, ``temp: null`` and mode "None" meaning off."""
    dreem = {
        "ckpt_path": None,
        "encoder_cfg": {
            "model_name": "resnet18",
            "backend": "timm",
            "in_chans": 3,
            "pretrained": False,
        },
        "d_model": 64,
        "nhead": 8,
        "num_encoder_layers": 1,
        "num_decoder_layers": 1,
        "dropout": 0.1,
        "activation": "relu",
        "return_intermediate_dec": False,
        "norm": False,
        "num_layers_attn_head": 2,
        "dropout_attn_head": 0.1,
        "embedding_meta": {
            "pos": {"mode": "fixed", "normalize": True, "temperature": 10000, "scale": None},
            "temp": None,
        },
        "return_embedding": False,
        "decoder_self_attn": False,
    }
    cfg = GTRModelConfig.from_dict(dreem)
    assert cfg.encoder_cfg.model_name == "resnet18" and cfg.nhead == 8
    assert cfg.embedding_meta.temp.mode == "off"
    assert cfg.embedding_meta.pos.effective_scale == 128.0
    none_mode = GTRModelConfig.from_dict({"embedding_meta": {"pos": {"mode": "None"}}})
    assert none_mode.embedding_meta.pos.mode == "off"
    assert GTRModelConfig.from_dict({"embedding_meta": None}).embedding_meta.temp.mode == "off"
    # A blank (null) key means its default, as in DREEM's configs.
    assert GTRModelConfig.from_dict({"d_model": None}).d_model == 128


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"d_modle": 64}, "'model.d_modle'; did you mean 'd_model'"),
        (
            {"embedding_meta": {"pos": {"nomalize": True}}},
            "'model.embedding_meta.pos.nomalize'; did you mean 'normalize'",
        ),
        ({"encoder_cfg": {"in_chan": 3}}, "'model.encoder_cfg.in_chan'; did you mean 'in_chans'"),
        (
            {"embedding_meta": {"pos": {"mlp_cfg": {"hidden_dim": 3}}}},
            "model.embedding_meta.pos.mlp_cfg.hidden_dim",
        ),
        ({"d_model": "128"}, "model.d_model must be an integer"),
        ({"d_model": 30, "nhead": 4}, "divisible by model.nhead"),
        ({"d_model": 36, "nhead": 4}, "multiple of 8"),
        ({"activation": "glu"}, "model.activation must be one of relu, gelu"),
        ({"encoder_cfg": {"model_name": "resnet50"}}, "model.encoder_cfg.model_name"),
        ({"encoder_cfg": {"pretrained": True}}, "never downloaded"),
        ({"return_embedding": True}, "model.return_embedding"),
        ({"ckpt_path": "x.ckpt"}, "model.ckpt_path"),
        ({"embedding_meta": {"temp": {"mode": "sine"}}}, "model.embedding_meta.temp.mode"),
        ({"embedding_meta": {"pos": {"n_points": 3}}}, "n_points must be 1"),
        (
            {"embedding_meta": {"pos": {"mode": "learned", "normalize": False}}},
            "normalize: false only applies",
        ),
        ({"embedding_meta": {"temp": {"max_window": 0}}}, "max_window must be >= 1"),
        ({"norm": "yes"}, "model.norm must be true or false"),
        ({"embedding_meta": []}, "model.embedding_meta must be a mapping"),
    ],
)
def test_config_errors_name_the_key(data, message):
    with pytest.raises(ModelConfigError) as err:
        GTRModelConfig.from_dict(data)
    assert message in str(err.value)


def test_flat_sinusoids_warn_and_defaults_do_not():
    """DREEM's normalised positions times 2 pi leave the sinusoids nearly flat: warned."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        GlobalTrackingTransformer(GTRModelConfig())
    with pytest.warns(UserWarning, match=r"model\.embedding_meta\.pos"):
        GTRModelConfig.from_dict({"embedding_meta": {"pos": {"scale": 2 * math.pi}}})
        GlobalTrackingTransformer.from_dict({"embedding_meta": {"pos": {"scale": 2 * math.pi}}})
    with pytest.warns(UserWarning, match=r"model\.embedding_meta\.temp"):
        GlobalTrackingTransformer.from_dict({"embedding_meta": {"temp": {"scale": 0.5}}})


# ----------------------------------------------------------------------------------------------
# Embeddings
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["fixed", "learned"])
def test_box_moved_along_x_changes_only_the_x_parts(mode):
    torch.manual_seed(0)
    emb = BoxEmbedding(PosEmbeddingConfig(mode=mode), 64)
    boxes = square_boxes([[300.0, 400.0], [450.0, 400.0]])
    parts = emb.coordinate_parts(make_dets(boxes, [0, 0]))
    change = (parts[1] - parts[0]).norm(dim=-1)  # x1, y1, x2, y2
    assert change[0] > 0.5 and change[2] > 0.5
    assert change[1] == 0 and change[3] == 0


def test_positions_are_normalised_per_axis():
    """On a 1000 x 200 (w x h) frame, x = 500 and y = 100 are both the middle: same embedding.
    Dividing both axes by one number would make them differ."""
    emb = BoxEmbedding(PosEmbeddingConfig(), 64)
    dets = make_dets([[500.0, 100.0, 600.0, 150.0]], [0], image_hw=(200, 1000))
    parts = emb.coordinate_parts(dets)
    assert torch.allclose(parts[0, 0], parts[0, 1])  # x1 / W == y1 / H == 0.5
    assert not torch.allclose(parts[0, 2], parts[0, 3])  # 0.6 vs 0.75
    values = emb.coordinates(dets)[0]
    assert torch.allclose(values, torch.tensor([0.5, 0.5, 0.6, 0.75]))


def test_centre_and_size_coordinates_when_not_over_boxes():
    emb = BoxEmbedding(PosEmbeddingConfig(over_boxes=False), 64)
    dets = make_dets([[100.0, 200.0, 300.0, 260.0]], [0], image_hw=(400, 1000))
    assert torch.allclose(emb.coordinates(dets)[0], torch.tensor([0.2, 0.575, 0.2, 0.15]))


@pytest.mark.parametrize("mode", ["fixed", "learned"])
def test_box_embedding_is_not_degenerate(mode):
    """Distinct boxes get clearly distinct embeddings; a 5 px move still registers."""
    torch.manual_seed(0)
    emb = BoxEmbedding(PosEmbeddingConfig(mode=mode), 128)
    centres = [[130.0, 130.0], [135.0, 130.0], [230.0, 130.0], [630.0, 730.0]]
    e = emb(make_dets(square_boxes(centres), [0, 0, 0, 0]))
    cos = F.cosine_similarity(e[:1], e, dim=1)
    assert cos[2] < 0.9  # 100 px apart
    assert cos[3] < 0.5  # across the frame
    assert (e[1] - e[0]).norm() > 1e-3 * e[0].norm()  # 5 px apart


def test_missing_box_gets_zero_position_embedding():
    emb = BoxEmbedding(PosEmbeddingConfig(), 64)
    dets = make_dets([[float("nan")] * 4, [10.0, 10.0, 50.0, 50.0]], [0, 0])
    out = emb(dets)
    assert torch.isfinite(out).all()
    assert out[0].abs().sum() == 0 and out[1].abs().sum() > 0


@pytest.mark.parametrize("mode", ["fixed", "learned"])
def test_time_embedding_varies_across_a_window_and_depends_on_offset_only(mode):
    torch.manual_seed(0)
    emb = TimeEmbedding(TempEmbeddingConfig(mode=mode, max_window=32), 128)
    early = emb(torch.arange(0, 9), window_start=0)
    late = emb(torch.arange(500, 509), window_start=500)
    assert torch.allclose(early, late)
    first_last = F.cosine_similarity(early[0], early[8], dim=0)
    assert first_last < 0.6, f"first and last frame of a window too alike: {first_last:.3f}"
    assert (early[1] - early[0]).norm() > 0.1 * early[0].norm()  # one frame apart
    assert torch.allclose(emb.relative_time(torch.tensor([4, 12]), 4), torch.tensor([0, 0.25]))


def test_learned_coordinate_mlp_starts_as_an_interpolated_table():
    torch.manual_seed(0)
    emb = HingeMLPEmbedding(n_values=2, hidden=5, out=3)
    knots = torch.linspace(0, 1, 5)
    at_knots = emb(knots[:, None].expand(-1, 2))
    mids = emb(((knots[:-1] + knots[1:]) / 2)[:, None].expand(-1, 2))
    assert torch.allclose(mids, (at_knots[:-1] + at_knots[1:]) / 2, atol=1e-5)
    assert torch.allclose(at_knots[0], emb.b2)


# ----------------------------------------------------------------------------------------------
# The network
# ----------------------------------------------------------------------------------------------


def test_forward_shapes_including_empty_window_and_query():
    model = small_model()
    window, query = two_track_window()
    assert model(window, query).shape == (2, 8)
    empty = window.select(torch.zeros(len(window), dtype=torch.bool))
    assert model(empty, query).shape == (2, 0)
    assert model(window, query.select(torch.tensor([], dtype=torch.long))).shape == (0, 8)
    assert model.associate(empty, query).shape == (2, 0)


def test_associate_is_forward_without_grad_in_eval_mode():
    model = small_model(dropout=0.3, dropout_attn_head=0.3)
    window, query = two_track_window()
    model.train()
    logits = model.associate(window, query)
    assert not logits.requires_grad
    assert model.training  # mode restored
    model.eval()
    assert torch.allclose(logits, model(window, query))


def test_logits_depend_on_relative_time_not_on_absolute_frame():
    model = small_model()
    window, query = two_track_window()
    shifted_w, shifted_q = copy.deepcopy(window), copy.deepcopy(query)
    shifted_w.frames += 1000
    shifted_q.frames += 1000
    assert torch.allclose(model(window, query), model(shifted_w, shifted_q), atol=1e-5)
    later_q = copy.deepcopy(query)
    later_q.frames += 3  # a gap before the query frame: a different situation
    assert not torch.allclose(model(window, query), model(window, later_q), atol=1e-4)


# ----------------------------------------------------------------------------------------------
# Relative geometry
# ----------------------------------------------------------------------------------------------


def moved(dets: Detections, transform) -> Detections:
    """``dets`` with every box corner and anchor passed through ``transform`` ((N, 2) -> (N, 2));
    boxes are re-taken as the extent of the transformed corners."""
    out = copy.deepcopy(dets)
    b = dets.boxes
    corners = torch.stack([b[:, [0, 1]], b[:, [2, 1]], b[:, [0, 3]], b[:, [2, 3]]], dim=1)
    moved_corners = transform(corners.reshape(-1, 2)).reshape(-1, 4, 2)
    out.boxes = torch.cat([moved_corners.amin(dim=1), moved_corners.amax(dim=1)], dim=1)
    out.centroids = transform(dets.centroids)
    return out


@pytest.mark.parametrize(
    "transform",
    [
        lambda p: p + torch.tensor([300.0, -150.0]),  # another place in another arena
        lambda p: torch.stack([1024 - p[:, 1], p[:, 0]], dim=1),  # a quarter turn
        lambda p: torch.stack([1024 - p[:, 0], p[:, 1]], dim=1),  # a mirror image
        lambda p: p * 0.5,  # a camera twice as far away
    ],
    ids=["translate", "rotate", "mirror", "scale"],
)
def test_geometry_features_do_not_change_when_the_scene_moves(transform):
    window, query = two_track_window(seed=3)
    bias = GeometryBias(GeometryBiasConfig(), max_window=32)
    before = bias.features(window, query)
    after = bias.features(moved(window, transform), moved(query, transform))
    assert torch.allclose(before, after, atol=1e-4)


def test_geometry_sees_each_tracks_motion():
    """A query where a window track's motion carries it is near in predicted distance even
    when it is far in plain distance; without the previous detection there is no prediction."""
    centres = [[100.0, 100.0], [140.0, 100.0]]  # one animal moving 40 px/frame along x
    window = make_dets(square_boxes(centres, size=20.0), [0, 1], [5, 5])
    query = make_dets(square_boxes([[180.0, 100.0]], size=20.0), [2])
    feats = GeometryBias(GeometryBiasConfig(), max_window=32).features(window, query)[0]
    distance, predicted, moving = feats[:, 0], feats[:, 1], feats[:, 2]
    assert predicted[1] == pytest.approx(0.0, abs=1e-6) and distance[1] > 0.5
    assert moving.tolist() == [0.0, 1.0]
    assert predicted[0] == distance[0]  # first detection of the track: plain distance
    unknown = copy.deepcopy(window)
    unknown.track_ids[:] = -1  # an unknown track has no motion
    feats = GeometryBias(GeometryBiasConfig(), max_window=32).features(unknown, query)[0]
    assert feats[:, 2].tolist() == [0.0, 0.0] and torch.equal(feats[:, 1], feats[:, 0])


def test_geometry_bias_starts_at_zero_and_missing_boxes_give_finite_logits():
    window, query = two_track_window()
    on = small_model()
    assert torch.equal(on.geometry_bias(window, query), torch.zeros(2, 8))
    window.boxes[0] = float("nan")
    window.centroids[0] = float("nan")
    assert torch.isfinite(on.geometry_bias.features(window, query)).all()


def test_geometry_bias_config_switch_and_errors():
    assert GTRModelConfig.from_dict({}).geometry_bias == GeometryBiasConfig()
    assert GTRModelConfig.from_dict({"geometry_bias": None}).geometry_bias is None
    assert GTRModelConfig.from_dict({"geometry_bias": False}).geometry_bias is None
    assert GTRModelConfig.from_dict({"geometry_bias": True}).geometry_bias == GeometryBiasConfig()
    cfg = GTRModelConfig.from_dict({"geometry_bias": {"hidden_dims": 8, "num_layers": 1}})
    assert GTRModelConfig.from_dict(cfg.to_dict()) == cfg
    assert small_model(geometry_bias=None).geometry_bias is None
    with pytest.raises(ModelConfigError, match=r"model\.geometry_bias\.hiden_dims.*hidden_dims"):
        GTRModelConfig.from_dict({"geometry_bias": {"hiden_dims": 8}})
    with pytest.raises(ModelConfigError, match=r"model\.geometry_bias\.num_layers must be >= 1"):
        GTRModelConfig.from_dict({"geometry_bias": {"num_layers": 0}})


def test_use_vis_feats_false_ignores_crops_and_true_reads_them():
    model = small_model()
    window, query = two_track_window()
    other_w, other_q = copy.deepcopy(window), copy.deepcopy(query)
    other_w.crops = torch.rand_like(window.crops)
    other_q.crops = torch.rand_like(query.crops)
    assert torch.equal(
        model(window, query, use_vis_feats=False), model(other_w, other_q, use_vis_feats=False)
    )
    assert not torch.allclose(model(window, query), model(other_w, other_q), atol=1e-4)


def test_decoder_self_attention_switch_has_an_effect():
    """Same weights: with several queries the outputs differ; with one query they cannot."""
    off = small_model(decoder_self_attn=False)
    on = GlobalTrackingTransformer.from_dict({**SMALL, "decoder_self_attn": True}).eval()
    on.load_state_dict(off.state_dict())
    window, query = two_track_window()
    assert not torch.allclose(off(window, query), on(window, query), atol=1e-5)
    single = query.select(torch.tensor([0]))
    assert torch.allclose(off(window, single), on(window, single), atol=1e-5)


def test_network_shape_options_build_what_they_say():
    model = small_model(norm=True, num_layers_attn_head=3, num_encoder_layers=2)
    assert isinstance(model.encoder.norm, torch.nn.LayerNorm)
    assert isinstance(model.decoder.norm, torch.nn.LayerNorm)
    assert len(model.encoder.layers) == 2
    assert sum(isinstance(m, torch.nn.Linear) for m in model.query_proj) == 3
    assert small_model().encoder.norm is None


def test_crop_channels_must_match_the_encoder():
    window, query = two_track_window()
    grey_into_rgb = small_model(encoder_cfg={"in_chans": 3})
    assert grey_into_rgb(window, query).shape == (2, 8)
    rgb_w = copy.deepcopy(window)
    rgb_w.crops = rgb_w.crops.expand(-1, 3, -1, -1).contiguous()
    rgb_q = copy.deepcopy(query)
    rgb_q.crops = rgb_q.crops.expand(-1, 3, -1, -1).contiguous()
    with pytest.raises(ValueError, match=r"3 channels but model\.encoder_cfg\.in_chans is 1"):
        small_model()(rgb_w, rgb_q)
    with pytest.raises(ValueError, match="one video"):
        other = copy.deepcopy(query)
        other.image_hw = (512, 512)
        small_model()(window, other)


def test_resnet18_encoder_builds_offline_and_runs():
    model = small_model(encoder_cfg={"model_name": "resnet18", "in_chans": 1})
    window, query = two_track_window()
    logits = model(window, query)
    assert logits.shape == (2, 8) and torch.isfinite(logits).all()
    assert model.visual.net.conv1.in_channels == 1


# ----------------------------------------------------------------------------------------------
# Loss and accuracy
# ----------------------------------------------------------------------------------------------


def test_uniform_logits_give_log_k_plus_one():
    k = 3
    logits = torch.zeros(2, k)
    loss = association_loss(logits, torch.tensor([0, 2]), torch.tensor([0, 1, 2]))
    assert math.isclose(loss.item(), math.log(k + 1), rel_tol=1e-6)
    # Two instances per track: a track's pooled probability is 2 / (2k + 1).
    loss = association_loss(
        torch.zeros(1, 2 * k), torch.tensor([1]), torch.tensor([0, 0, 1, 1, 2, 2])
    )
    assert math.isclose(loss.item(), math.log(2 * k + 1) - math.log(2), rel_tol=1e-6)


def test_loss_goes_to_zero_when_logits_favour_the_right_track():
    window_ids = torch.tensor([0, 1, 0, 1])
    query_ids = torch.tensor([1, 0])
    right = torch.tensor([[-20.0, 20.0, -20.0, 15.0], [20.0, -20.0, 15.0, -20.0]])
    assert association_loss(right, query_ids, window_ids).item() < 1e-6
    assert association_accuracy(right, query_ids, window_ids).item() == 1.0
    wrong = -right
    assert association_loss(wrong, query_ids, window_ids).item() > 10
    assert association_accuracy(wrong, query_ids, window_ids).item() == 0.0


def test_absent_track_targets_no_match():
    window_ids = torch.tensor([0, 1])
    query_ids = torch.tensor([7])  # not in the window: a new animal
    logits = torch.tensor([[-5.0, -5.0]])
    low = association_loss(logits, query_ids, window_ids, no_match_logit=5.0)
    high = association_loss(logits, query_ids, window_ids, no_match_logit=-5.0)
    assert low.item() < 1e-3 and high.item() > 1.0
    assert association_accuracy(logits, query_ids, window_ids, 5.0).item() == 1.0
    # Against an empty window every known query is "no match", with nothing to learn.
    empty = association_loss(torch.zeros(2, 0), torch.tensor([0, 1]), torch.zeros(0).long())
    assert empty.item() == 0.0


def test_unknown_tracks_are_ignored():
    window_ids = torch.tensor([0, 1])
    logits = torch.tensor([[3.0, -1.0], [0.5, 0.2]])
    base = association_loss(logits[:1], torch.tensor([0]), window_ids)
    with_unknown_query = association_loss(logits, torch.tensor([0, -1]), window_ids)
    assert torch.allclose(base, with_unknown_query)
    # An unknown window detection is no candidate, however high it scores.
    widened = torch.cat([logits[:1], torch.tensor([[50.0]])], dim=1)
    assert torch.allclose(
        base, association_loss(widened, torch.tensor([0]), torch.tensor([0, 1, -1]))
    )
    only_unknown = torch.zeros(2, 2, requires_grad=True)
    loss = association_loss(only_unknown, torch.tensor([-1, -1]), window_ids)
    loss.backward()
    assert loss.item() == 0.0
    assert math.isnan(association_accuracy(only_unknown, torch.tensor([-1, -1]), window_ids))


def test_track_logits_pool_by_logsumexp():
    logits = torch.tensor([[1.0, 2.0, 3.0]])
    tracks, pooled = track_logits(logits, torch.tensor([4, 2, 4]))
    assert tracks.tolist() == [2, 4]
    assert torch.allclose(pooled, torch.tensor([[2.0, math.log(math.e + math.e**3)]]))


def test_no_match_logit_is_learnable_and_shapes_are_checked():
    model = small_model()
    window, query = two_track_window()
    query.track_ids = torch.tensor([5, 0])  # one new animal
    loss = association_loss(
        model(window, query), query.track_ids, window.track_ids, model.no_match_logit
    )
    loss.backward()
    assert model.no_match_logit.grad is not None and model.no_match_logit.grad != 0
    with pytest.raises(ValueError, match="window_track_ids"):
        association_loss(torch.zeros(2, 3), torch.tensor([0, 1]), torch.tensor([0, 1]))
    with pytest.raises(ValueError, match="query_track_ids"):
        association_loss(torch.zeros(2, 3), torch.tensor([0]), torch.tensor([0, 1, 2]))


def test_short_optimisation_learns_two_tracks_from_positions():
    """30 Adam steps, positions and time only: every query goes to its own track.

    One thread: the tensors are tiny, and a second thread costs more in handoffs than it gives
    (about 10x slower on a loaded two-core machine)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        _optimise_two_tracks()
    finally:
        torch.set_num_threads(threads)


def _optimise_two_tracks() -> None:
    torch.manual_seed(0)
    model = GlobalTrackingTransformer.from_dict(SMALL)
    problems = [two_track_window(seed=s) for s in range(6)]
    optimiser = torch.optim.Adam(model.parameters(), lr=3e-3)

    def accuracy() -> float:
        model.eval()
        with torch.no_grad():
            scores = [
                association_accuracy(
                    model(w, q, use_vis_feats=False),
                    q.track_ids,
                    w.track_ids,
                    model.no_match_logit,
                )
                for w, q in problems
            ]
        model.train()
        return float(torch.stack(scores).mean())

    before = accuracy()
    for _ in range(30):
        optimiser.zero_grad()
        loss = sum(
            association_loss(
                model(w, q, use_vis_feats=False), q.track_ids, w.track_ids, model.no_match_logit
            )
            for w, q in problems
        )
        loss.backward()
        optimiser.step()
    assert accuracy() == 1.0, f"accuracy {accuracy():.2f} (before training {before:.2f})"
    assert loss.item() / len(problems) < 0.3


def test_positions_alone_generalise_to_unseen_pairs():
    """Trained on fresh random pairs, the position and time embeddings are enough to associate
    pairs never seen in training: the network learns proximity, not the training examples."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        torch.manual_seed(0)
        model = GlobalTrackingTransformer.from_dict(SMALL)
        optimiser = torch.optim.Adam(model.parameters(), lr=1e-3)
        for step in range(100):
            optimiser.zero_grad()
            problems = [two_track_window(seed=step * 8 + s) for s in range(8)]
            loss = sum(
                association_loss(
                    model(w, q, use_vis_feats=False), q.track_ids, w.track_ids, model.no_match_logit
                )
                for w, q in problems
            )
            loss.backward()
            optimiser.step()
        held_out = [two_track_window(seed=100_000 + s) for s in range(40)]
        model.eval()
        with torch.no_grad():
            accuracy = torch.stack(
                [
                    association_accuracy(
                        model(w, q, use_vis_feats=False),
                        q.track_ids,
                        w.track_ids,
                        model.no_match_logit,
                    )
                    for w, q in held_out
                ]
            ).mean()
    finally:
        torch.set_num_threads(threads)
    assert accuracy >= 0.9, f"held-out accuracy {float(accuracy):.2f}"


# ----------------------------------------------------------------------------------------------
# Real data: a few two_flies crops
# ----------------------------------------------------------------------------------------------


def _fly_detections(slp, n_frames: int = 3, crop_size: int = 64) -> Detections:
    import sleap_io as sio

    labels = sio.load_slp(str(slp))
    names = sorted({t.name for t in labels.tracks})
    parts = []
    for lf in labels.labeled_frames[:n_frames]:
        image = lf.image
        points = np.stack([inst.numpy() for inst in lf.instances])
        lo, hi = np.nanmin(points, axis=1), np.nanmax(points, axis=1)
        centres = (lo + hi) / 2
        crops = extract_crops(image, crop_offsets(centres, crop_size), crop_size)
        h, w = image.shape[:2]
        parts.append(
            Detections(
                crops=torch.from_numpy(crops).permute(0, 3, 1, 2).float() / 255.0,
                boxes=torch.from_numpy(np.concatenate([lo, hi], axis=1)).float(),
                centroids=torch.from_numpy(centres).float(),
                frames=torch.full((len(points),), lf.frame_idx, dtype=torch.int64),
                track_ids=torch.tensor([names.index(i.track.name) for i in lf.instances]),
                scores=torch.ones(len(points)),
                image_hw=(h, w),
            )
        )
    return Detections.concat(parts)


def test_real_fly_crops_run_and_positions_keep_identity(shared_data):
    slp = shared_data / "dreem_assets" / "sleap" / "two_flies.slp"
    if not slp.exists():
        pytest.skip(f"{slp} not found")
    dets = _fly_detections(slp)
    last = int(dets.frames.max())
    window = dets.select(dets.frames < last)
    query = dets.select(dets.frames == last)
    for encoder in ({"model_name": "cnn", "in_chans": 1}, {"model_name": "resnet18"}):
        model = small_model(encoder_cfg=encoder)
        logits = model.associate(window, query)
        assert logits.shape == (len(query), len(window)) and torch.isfinite(logits).all()
        assert not torch.allclose(logits, model.associate(window, query, use_vis_feats=False))
    # The fixed position embedding alone already matches each fly to itself a frame earlier.
    emb = BoxEmbedding(PosEmbeddingConfig(), 128)
    prev = window.select(window.frames == window.frames.max())
    sim = F.cosine_similarity(emb(query)[:, None], emb(prev)[None], dim=-1)
    assert prev.track_ids[sim.argmax(dim=1)].tolist() == query.track_ids.tolist()
    assert sim.max(dim=1).values.min() > sim.min(dim=1).values.max()
