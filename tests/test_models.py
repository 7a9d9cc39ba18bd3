"""UNet / heads / model assembly (parity with sleap-nn run directories) and the training losses."""

from __future__ import annotations

import copy
import sys
import types

import numpy as np
import pytest
import torch
import yaml
from helpers import ALL_HEADS, SLEAP_NN_RUN_DIRS, tiny_model_config

from pipeline_lib.io.checkpoints import load_checkpoint
from pipeline_lib.models.heads import ClassVectorsHead, ConfmapsHead, PafsHead
from pipeline_lib.models.model import PoseModel, build_model, count_parameters
from pipeline_lib.models.pretrained import load_pretrained, read_checkpoint_state
from pipeline_lib.models.unet import UNet
from pipeline_lib.training.losses import confmap_loss, ohkm_loss

CKPT_DIRS = SLEAP_NN_RUN_DIRS
HEADS = ALL_HEADS
_model_config = tiny_model_config


def _run_model_config(shared_data, name: str) -> tuple[dict, int]:
    """model_config of a sleap-nn run dir; edges and classes come from its head sections."""
    path = shared_data / "sleap_nn_assets" / "model_ckpts" / name / "training_config.yaml"
    model_config = yaml.safe_load(path.read_text())["model_config"]
    head = next(v for v in model_config["head_configs"].values() if v is not None)
    n_nodes = len(head["confmaps"].get("part_names") or [None])
    return model_config, n_nodes


def _run_ckpt(shared_data, name: str):
    return shared_data / "sleap_nn_assets" / "model_ckpts" / name / "best.ckpt"


@pytest.mark.parametrize("name", CKPT_DIRS + ["single_instance_with_metrics"])
def test_parameter_count_matches_sleap_nn(shared_data, name):
    model_config, n_nodes = _run_model_config(shared_data, name)
    model = build_model(model_config, n_nodes)
    assert count_parameters(model) == model_config["total_params"]


@pytest.mark.parametrize("name", CKPT_DIRS)
def test_layer_layout_matches_sleap_nn_checkpoint(shared_data, name):
    """Same tensors, same shapes, in an order a weight loader can rely on."""
    model_config, n_nodes = _run_model_config(shared_data, name)
    ckpt_path = shared_data / "sleap_nn_assets" / "model_ckpts" / name / "best.ckpt"
    state = load_checkpoint(ckpt_path)["state_dict"]  # weights-only, OmegaConf objects dropped
    groups = ("backbone.encoders.", "backbone.middle_blocks.", "backbone.decoders.", "head_layers.")
    theirs = [
        tuple(v.shape) for g in groups for k, v in state.items() if k.startswith("model." + g)
    ]
    assert len(theirs) == len(state)
    model = build_model(model_config, n_nodes)
    ours = [tuple(v.shape) for v in model.state_dict().values()]
    assert ours == theirs
    # The mapped weights load and run.
    mapped = dict(
        zip(
            model.state_dict(),
            (state[k] for g in groups for k in state if k.startswith("model." + g)),
            strict=True,
        )
    )
    model.load_state_dict(mapped)
    h = w = 2 * model.max_stride
    out = model(torch.rand(1, model.in_channels, h, w))["confmaps"]
    assert out.shape[-2:] == (h // model.output_stride, w // model.output_stride)
    assert torch.isfinite(out).all()


@pytest.mark.parametrize(
    "overrides",
    [
        {},
        {"up_interpolate": False},
        {"middle_block": False},
        {"convs_per_block": 1},
        {"output_stride": 8},
        {"output_stride": 1},
        {"stem_stride": 2},
        {"stem_stride": 4, "output_stride": 1},
        {"stacks": 2},
        {"stacks": 2, "up_interpolate": False, "stem_stride": 2},
        {"kernel_size": 5, "filters_rate": 1.5},
    ],
)
def test_unet_shapes(overrides):
    cfg = {"filters": 4, "filters_rate": 2.0, "max_stride": 8, "output_stride": 2, **overrides}
    net = UNet.from_config(cfg)
    x = torch.rand(2, 1, 32, 48)
    out, bottleneck = net(x, return_bottleneck=True)
    s = net.output_stride
    assert out.shape == (2, net.out_channels, 32 // s, 48 // s)
    assert bottleneck.shape == (2, net.bottleneck_channels, 32 // 8, 48 // 8)
    feats, _ = net.forward_features(x)
    assert sorted(feats) == sorted(net.stride_channels)
    for stride, f in feats.items():
        assert f.shape == (2, net.stride_channels[stride], 32 // stride, 48 // stride)


def test_stacks_run_in_sequence():
    """Every stack contributes: gradients reach the first stack, and 2 stacks != 1 stack."""
    one = UNet(filters=4, filters_rate=2.0, max_stride=8, output_stride=2, stacks=1)
    two = UNet(filters=4, filters_rate=2.0, max_stride=8, output_stride=2, stacks=2)
    assert count_parameters(two) > count_parameters(one)
    # The first stack of a two-stack net is built exactly like a one-stack net.
    assert [p.shape for p in two.stack_modules[0].parameters()] == [
        p.shape for p in one.stack_modules[0].parameters()
    ]
    two(torch.rand(1, 1, 16, 16)).square().sum().backward()
    first = next(two.stack_modules[0].parameters())
    assert first.grad is not None and first.grad.abs().sum() > 0


def test_unet_rejects_bad_config_and_input():
    with pytest.raises(ValueError, match="max_stride"):
        UNet(max_stride=12)
    with pytest.raises(ValueError, match="output_stride"):
        UNet(max_stride=8, output_stride=16)
    with pytest.raises(ValueError, match="Unknown"):
        UNet.from_config({"filtres": 8})
    net = UNet(filters=4, max_stride=8, output_stride=4)
    with pytest.raises(ValueError, match="multiples of max_stride"):
        net(torch.rand(1, 1, 20, 16))
    with pytest.raises(ValueError, match="expects"):
        net(torch.rand(1, 3, 16, 16))


@pytest.mark.parametrize(
    ("head", "n_out"), [("single_instance", 5), ("centered_instance", 5), ("centroid", 1)]
)
def test_build_model_heads(head, n_out):
    model = build_model(_model_config(head=head), n_nodes=5)
    assert isinstance(model, PoseModel)
    assert model.head_name == head
    assert (model.output_stride, model.max_stride, model.in_channels) == (2, 8, 1)
    out = model(torch.rand(2, 1, 16, 24))
    assert list(out) == ["confmaps"] == list(model.head_names)
    assert out["confmaps"].shape == (2, n_out, 8, 12)


MULTI_HEAD_SECTIONS = {
    "bottomup": {"pafs": {"sigma": 5.0, "output_stride": 4}},
    "multi_class_bottomup": {"class_maps": {"sigma": 2.0, "output_stride": 2}},
    "multi_class_topdown": {
        "class_vectors": {"num_fc_layers": 2, "num_fc_units": 16, "global_pool": True}
    },
}


@pytest.mark.parametrize("up_interpolate", [True, False])
@pytest.mark.parametrize("head", HEADS)
def test_every_head_on_unet(head, up_interpolate):
    cfg = _model_config(
        {"up_interpolate": up_interpolate}, head=head, extra=MULTI_HEAD_SECTIONS.get(head)
    )
    model = build_model(cfg, n_nodes=4, n_edges=3, n_classes=2)
    out = model(torch.rand(2, 1, 16, 32))
    assert list(out) == list(model.head_names)
    assert out["confmaps"].shape == (2, 1 if head == "centroid" else 4, 8, 16)
    assert model.output_strides["confmaps"] == model.output_stride == 2
    if head == "bottomup":
        assert model.head_names == ("confmaps", "pafs")
        assert out["pafs"].shape == (2, 6, 4, 8)  # 2 * n_edges at the PAF head's own stride 4
        assert model.output_strides == {"confmaps": 2, "pafs": 4}
        assert model.heads["pafs"].in_channels == model.backbone.stride_channels[4]
    elif head == "multi_class_bottomup":
        assert out["class_maps"].shape == (2, 2, 8, 16)
        assert 0 <= out["class_maps"].min() and out["class_maps"].max() <= 1  # sigmoid
    elif head == "multi_class_topdown":
        assert out["class_vectors"].shape == (2, 2)
        assert "class_vectors" not in model.output_strides  # not a map
    sum(v.sum() for v in out.values()).backward()
    first = next(model.backbone.parameters())
    assert first.grad is not None and first.grad.abs().sum() > 0


def test_head_sizes_come_from_config_lists():
    cfg = _model_config(head="bottomup", extra={"pafs": {"edges": [["a", "b"], ["b", "c"]]}})
    cfg["head_configs"]["bottomup"]["confmaps"]["part_names"] = ["a", "b", "c"]
    model = build_model(cfg, n_nodes=3)
    assert model.heads["pafs"].out_channels == 4
    with pytest.raises(ValueError, match="edges"):
        build_model(cfg, n_nodes=3, n_edges=5)
    cfg = _model_config(head="multi_class_bottomup", extra={"class_maps": {"classes": None}})
    with pytest.raises(ValueError, match="number of classes"):
        build_model(cfg, n_nodes=3)
    cfg["head_configs"]["multi_class_bottomup"]["class_maps"]["classes"] = ["f", "m", "x"]
    assert build_model(cfg, n_nodes=3).heads["class_maps"].out_channels == 3


def test_class_vectors_without_global_pool_need_the_crop_size():
    extra = {"class_vectors": {"num_fc_layers": 1, "num_fc_units": 8, "global_pool": False}}
    cfg = _model_config(head="multi_class_topdown", extra=extra)
    with pytest.raises(ValueError, match="input_hw"):
        build_model(cfg, n_nodes=2, n_classes=3)
    model = build_model(cfg, n_nodes=2, n_classes=3, input_hw=(32, 16))
    head = model.heads["class_vectors"]
    assert isinstance(head, ClassVectorsHead)
    # Flatten of the (C, 32/8, 16/8) bottleneck feeds the first Linear layer.
    assert head.fc[0].in_features == model.backbone.bottleneck_channels * 4 * 2
    assert model(torch.rand(2, 1, 32, 16))["class_vectors"].shape == (2, 3)
    with pytest.raises(ValueError, match="crop size it was built for"):
        model(torch.rand(1, 1, 16, 16))
    with pytest.raises(ValueError, match="multiple of max_stride"):
        build_model(cfg, n_nodes=2, n_classes=3, input_hw=(20, 16))


def test_class_vectors_pool_is_global_max():
    """sleap-nn / SLEAP pool the bottleneck with a global max before the Linear layers."""
    head = ClassVectorsHead(2, 2, output_stride=8, num_fc_layers=0)
    with torch.no_grad():
        head.out.weight.copy_(torch.eye(2))
        head.out.bias.zero_()
    bottleneck = torch.zeros(1, 2, 3, 3)
    bottleneck[0, 0, 1, 2] = 5.0
    bottleneck[0, 1] = 1.0
    assert head(bottleneck).tolist() == [[5.0, 1.0]]


def test_build_model_in_channels_override_and_xavier():
    cfg = _model_config(
        head="multi_class_topdown", extra=MULTI_HEAD_SECTIONS["multi_class_topdown"]
    )
    cfg["init_weights"] = "xavier"
    model = build_model(cfg, n_nodes=3, in_channels=3, n_classes=2)
    assert model.in_channels == 3
    assert model(torch.rand(1, 3, 16, 16))["confmaps"].shape == (1, 3, 8, 8)
    layers = [
        m
        for m in model.modules()
        if isinstance(m, torch.nn.Conv2d | torch.nn.ConvTranspose2d | torch.nn.Linear)
    ]
    assert any(isinstance(m, torch.nn.Linear) for m in layers)
    for layer in layers:
        assert torch.count_nonzero(layer.bias) == 0
        fan_in, fan_out = torch.nn.init._calculate_fan_in_and_fan_out(layer.weight)
        assert layer.weight.abs().max() <= (6 / (fan_in + fan_out)) ** 0.5
    cfg["init_weights"] = "default"
    default = build_model(cfg, n_nodes=3, n_classes=2)
    assert any(
        torch.count_nonzero(m.bias) > 0 for m in default.modules() if isinstance(m, torch.nn.Linear)
    )


def test_build_model_errors():
    cfg = _model_config()
    cfg["head_configs"]["single_instance"]["confmaps"]["output_stride"] = 4
    with pytest.raises(ValueError, match="finer than every head's output_stride"):
        build_model(cfg, n_nodes=2)
    cfg = _model_config(head="bottomup", extra={"pafs": {"output_stride": 16}})
    with pytest.raises(ValueError, match=r"pafs.output_stride \(16\) is not produced"):
        build_model(cfg, n_nodes=2, n_edges=1)
    cfg = _model_config(head="bottomup", extra={"pafs": {"output_stride": 1}})
    with pytest.raises(ValueError, match="not produced by the backbone"):
        build_model(cfg, n_nodes=2, n_edges=1)
    cfg = _model_config(head="bottomup")
    with pytest.raises(ValueError, match="bottomup.pafs must be a mapping"):
        build_model(cfg, n_nodes=2, n_edges=1)
    cfg = _model_config()
    cfg["head_configs"]["centroid"] = copy.deepcopy(cfg["head_configs"]["single_instance"])
    with pytest.raises(ValueError, match="exactly one"):
        build_model(cfg, n_nodes=2)
    cfg = _model_config()
    cfg["init_weights"] = "he"
    with pytest.raises(ValueError, match="init_weights"):
        build_model(cfg, n_nodes=2)
    cfg = _model_config()
    cfg["head_configs"]["single_instance"]["confmaps"]["part_names"] = ["a", "b", "c"]
    with pytest.raises(ValueError, match="part_names"):
        build_model(cfg, n_nodes=2)
    cfg = _model_config()
    cfg["backbone_config"]["vit"] = {}
    with pytest.raises(ValueError, match="Unknown key"):
        build_model(cfg, n_nodes=2)


def test_pose_model_checks_heads_against_backbone():
    backbone = UNet(filters=4, filters_rate=2.0, max_stride=8, output_stride=2)
    with pytest.raises(ValueError, match="reads 5 channels"):
        PoseModel(backbone, [ConfmapsHead(5, 2, output_stride=2)], "single_instance")
    with pytest.raises(ValueError, match="confmaps head first"):
        PoseModel(backbone, [PafsHead(backbone.out_channels, 1, 2)], "bottomup")
    heads = [ConfmapsHead(backbone.out_channels, 2, 2), PafsHead(backbone.stride_channels[8], 1, 8)]
    model = PoseModel(backbone, heads, "bottomup")
    assert model(torch.rand(1, 1, 16, 16))["pafs"].shape == (1, 2, 2, 2)  # reads the bottleneck


# --- loading trained weights ---------------------------------------------------------------------


def _peaks(confmap: torch.Tensor, k: int) -> list[tuple[int, int]]:
    """(x, y) grid cells of the ``k`` highest local maxima of one map."""
    pooled = torch.nn.functional.max_pool2d(confmap[None, None], 3, stride=1, padding=1)[0, 0]
    values = torch.where(confmap == pooled, confmap, torch.full_like(confmap, -1e9)).flatten()
    top = torch.topk(values, k).indices
    return [(int(i) % confmap.shape[1], int(i) // confmap.shape[1]) for i in top]


@pytest.mark.parametrize(
    "name", ["minimal_instance_bottomup", "minimal_instance_multiclass_bottomup"]
)
def test_sleap_nn_checkpoint_predicts_its_training_frame(shared_data, name):
    """Loaded sleap-nn weights find the labelled points: our layer order and semantics
    (skip-first concat, transposed convs, PAF x/y order, class-map sigmoid) are sleap-nn's."""
    import sleap_io as sio

    model_config, n_nodes = _run_model_config(shared_data, name)
    run = yaml.safe_load(_run_ckpt(shared_data, name).with_name("training_config.yaml").read_text())
    scale = run["data_config"]["preprocessing"]["scale"]
    model = build_model(model_config, n_nodes).eval()
    ckpt = str(_run_ckpt(shared_data, name))
    summary = load_pretrained(model, ckpt, ckpt)
    assert summary["backbone"]["format"] == summary["head"]["format"] == "sleap-nn"
    assert summary["head"]["tensors"] == 4

    frame = sio.load_slp(str(shared_data / "sleap_nn_assets/datasets/minimal_instance.pkg.slp"))[0]
    image = torch.from_numpy(frame.image).permute(2, 0, 1)[None].float() / 255
    if scale != 1:
        image = torch.nn.functional.interpolate(image, scale_factor=scale, mode="bilinear")
    with torch.no_grad():
        out = model(image)
    truth = torch.tensor(np.stack([inst.numpy() for inst in frame.instances]))  # (2, nodes, xy)
    stride = model.output_strides["confmaps"]
    for node in range(n_nodes):
        found = torch.tensor(_peaks(out["confmaps"][0, node], 2), dtype=torch.float64)
        found = found * stride / scale
        dist = torch.cdist(truth[:, node], found).min(dim=1).values
        assert (dist < 4 * stride / scale).all(), (node, dist)
    for inst in truth:
        if "pafs" in out:
            ps = model.output_strides["pafs"]
            mid = ((inst[0] + inst[1]) / 2 / ps).round().long()
            field = out["pafs"][0, :, mid[1], mid[0]].double()
            direction = (inst[1] - inst[0]) / (inst[1] - inst[0]).norm()
            assert torch.dot(field / field.norm(), direction) > 0.95
    if "class_maps" in out:
        cs = model.output_strides["class_maps"]
        cells = [(inst[0] * scale / cs).round().long() for inst in truth]
        probs = torch.stack([out["class_maps"][0, :, y, x] for x, y in cells])
        assert probs.argmax(1).tolist() in ([0, 1], [1, 0])  # one identity per animal
        one_hot = torch.nn.functional.one_hot(probs.argmax(1), 2).float()
        assert (probs - one_hot).abs().max() < 0.1  # the sigmoid maps its logits to ~0 / ~1


def test_class_vectors_match_sleap_keras_activations(shared_data):
    """SLEAP's own class-vector output for a zero crop is reproduced: global *max* pooling,
    ReLU Linear layers, logits that softmax to SLEAP's probabilities."""
    import h5py

    from pipeline_lib.models.legacy_keras import load_legacy_model

    folder = shared_data / "sleap_nn_assets/legacy_models/min_tracks_2node.UNet.topdown_multiclass"
    _, model, _ = load_legacy_model(folder)
    with h5py.File(folder / "dummy_activations.h5", "r") as f:
        confmaps_ref = torch.from_numpy(f["CenteredInstanceConfmapsHead"][:]).permute(0, 3, 1, 2)
        vectors_ref = torch.from_numpy(f["ClassVectorsHead"][:])
    size = confmaps_ref.shape[-1] * model.output_stride
    with torch.no_grad():
        out = model.eval()(torch.zeros(1, model.in_channels, size, size))
    assert torch.allclose(out["confmaps"], confmaps_ref, atol=1e-5)
    assert torch.allclose(out["class_vectors"].softmax(-1), vectors_ref, atol=1e-5)


def _lightning_ckpt(model: torch.nn.Module, path) -> None:
    torch.save({"state_dict": {f"model.{k}": v for k, v in model.state_dict().items()}}, path)


def test_load_pretrained_from_our_checkpoints(tmp_path):
    cfg = _model_config(head="bottomup", extra=MULTI_HEAD_SECTIONS["bottomup"])
    torch.manual_seed(0)
    source = build_model(cfg, n_nodes=3, n_edges=2)
    _lightning_ckpt(source, tmp_path / "best.ckpt")
    torch.manual_seed(1)
    target = build_model(cfg, n_nodes=3, n_edges=2)
    before = copy.deepcopy(target.state_dict())
    summary = load_pretrained(target, str(tmp_path / "best.ckpt"), None)
    assert summary == {
        "backbone": {
            "path": str(tmp_path / "best.ckpt"),
            "format": "pipeline_lib",
            "tensors": len([k for k in before if k.startswith("backbone.")]),
        }
    }
    for key, value in target.state_dict().items():
        expected = source.state_dict()[key] if key.startswith("backbone.") else before[key]
        assert torch.equal(value, expected), key
    load_pretrained(target, None, str(tmp_path / "best.ckpt"))
    for key, value in target.state_dict().items():
        assert torch.equal(value, source.state_dict()[key]), key

    # A head for another skeleton does not fit: the error names the tensor.
    other = build_model(cfg, n_nodes=5, n_edges=2)
    with pytest.raises(ValueError, match=r"'heads.confmaps.conv.weight' has shape \(3, "):
        load_pretrained(other, None, str(tmp_path / "best.ckpt"))
    # The backbone still fits.
    load_pretrained(other, str(tmp_path / "best.ckpt"), None)
    with pytest.raises(FileNotFoundError, match="pretrained_head_weights"):
        load_pretrained(other, None, str(tmp_path / "missing.ckpt"))


def test_load_pretrained_sleap_nn_mismatch_names_the_tensor(shared_data):
    model_config, _ = _run_model_config(shared_data, "minimal_instance_bottomup")
    model_config["head_configs"]["bottomup"]["confmaps"]["part_names"] = None
    model = build_model(model_config, n_nodes=3)
    ckpt = str(_run_ckpt(shared_data, "minimal_instance_bottomup"))
    load_pretrained(model, ckpt, None)  # the backbone does not depend on the skeleton
    with pytest.raises(ValueError, match="head_layers.0.MultiInstanceConfmapsHead.0.weight"):
        load_pretrained(model, None, ckpt)
    wider = copy.deepcopy(model_config)
    wider["backbone_config"]["unet"]["filters"] = 8
    with pytest.raises(ValueError, match="backbone.encoders.0.encoder_stack.0"):
        load_pretrained(build_model(wider, n_nodes=2), ckpt, None)
    state = read_checkpoint_state(ckpt)
    assert all(not k.startswith("model.") for k in state)


def test_load_pretrained_h5_goes_to_the_keras_loader(tmp_path, monkeypatch):
    calls = []

    def fake_loader(model, path, part):
        calls.append((path, part))
        return {"path": path, "format": "keras"}

    fake = types.ModuleType("pipeline_lib.models.legacy_keras")
    fake.load_keras_weights = fake_loader
    monkeypatch.setitem(sys.modules, "pipeline_lib.models.legacy_keras", fake)
    h5 = tmp_path / "best_model.h5"
    h5.write_bytes(b"not read by the fake")
    model = build_model(_model_config(), n_nodes=2)
    summary = load_pretrained(model, str(h5), str(h5))
    assert calls == [(str(h5), "backbone"), (str(h5), "head")]
    assert summary["head"]["format"] == "keras"


# --- losses -----------------------------------------------------------------------------------


def test_confmap_loss_is_mse():
    pred, target = torch.zeros(1, 2, 2, 2), torch.ones(1, 2, 2, 2)
    pred[0, 0] = 1.0
    assert confmap_loss(pred, target).item() == pytest.approx(0.5)
    with pytest.raises(ValueError):
        confmap_loss(pred, target[:, :1])


def _maps_with_channel_losses(losses: list[float]) -> tuple[torch.Tensor, torch.Tensor]:
    """pred/target (1, C, 2, 2) whose per-channel MSE equals ``losses``."""
    target = torch.zeros(1, len(losses), 2, 2)
    pred = torch.tensor(losses).sqrt().view(1, -1, 1, 1).expand(1, -1, 2, 2).clone()
    return pred, target


def test_ohkm_picks_hard_channels():
    losses = [1.0, 1.5625, 4.0, 16.0, 9.0]  # exact squares, so the maps reproduce them exactly
    pred, target = _maps_with_channel_losses(losses)
    # ratio 2: channels with loss >= 2 are hard -> {4, 16, 9}; k = 3.
    got = ohkm_loss(pred, target, hard_to_easy_ratio=2.0, min_hard_keypoints=2, loss_scale=5.0)
    assert got.item() == pytest.approx(5.0 * (4.0 + 16.0 + 9.0) / 3)
    # max_hard caps k at 2 -> the two largest.
    got = ohkm_loss(pred, target, 2.0, 2, max_hard_keypoints=2, loss_scale=5.0)
    assert got.item() == pytest.approx(5.0 * (16.0 + 9.0) / 2)
    # A high ratio finds one hard channel; min_hard raises k to 2.
    got = ohkm_loss(pred, target, hard_to_easy_ratio=10.0, min_hard_keypoints=2, loss_scale=1.0)
    assert got.item() == pytest.approx((16.0 + 9.0) / 2)
    # min_hard larger than the number of channels is capped.
    got = ohkm_loss(pred, target, hard_to_easy_ratio=100.0, min_hard_keypoints=9, loss_scale=1.0)
    assert got.item() == pytest.approx(sum(losses) / 5)


def test_ohkm_zero_loss_channels_and_gradient():
    pred, target = _maps_with_channel_losses([0.0, 0.0, 4.0])
    pred.requires_grad_(True)
    got = ohkm_loss(pred, target, hard_to_easy_ratio=2.0, min_hard_keypoints=0, loss_scale=2.0)
    assert got.item() == pytest.approx(2.0 * 4.0)
    got.backward()
    assert pred.grad[0, 2].abs().sum() > 0 and pred.grad[0, :2].abs().sum() == 0
    zero = ohkm_loss(target, target, min_hard_keypoints=0)
    assert zero.item() == 0.0
