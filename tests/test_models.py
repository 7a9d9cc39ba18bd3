"""UNet / heads / model assembly (parity with sleap-nn run directories) and the training losses."""

from __future__ import annotations

import copy
import io
import pickle

import pytest
import torch
import yaml

from pipeline_lib.models.heads import ConfmapsHead
from pipeline_lib.models.model import PoseModel, build_model, count_parameters
from pipeline_lib.models.unet import UNet
from pipeline_lib.training.losses import confmap_loss, ohkm_loss

CKPT_DIRS = [
    "minimal_instance_single_instance",
    "minimal_instance_centroid",
    "minimal_instance_centered_instance",
]


def _model_config(unet: dict | None = None, head: str = "single_instance", stride: int = 2):
    """A small sleap-nn-style model_config section."""
    backbone = {
        "in_channels": 1,
        "kernel_size": 3,
        "filters": 4,
        "filters_rate": 2.0,
        "max_stride": 8,
        "stem_stride": None,
        "middle_block": True,
        "up_interpolate": True,
        "stacks": 1,
        "convs_per_block": 2,
        "output_stride": stride,
    }
    backbone.update(unet or {})
    heads = {
        k: None
        for k in (
            "single_instance",
            "centroid",
            "centered_instance",
            "bottomup",
            "multi_class_bottomup",
            "multi_class_topdown",
        )
    }
    heads[head] = {"confmaps": {"sigma": 2.5, "output_stride": stride}}
    return {
        "init_weights": "default",
        "backbone_config": {"unet": backbone, "convnext": None, "swint": None},
        "head_configs": heads,
    }


def _run_model_config(shared_data, name: str) -> tuple[dict, int]:
    path = shared_data / "sleap_nn_assets" / "model_ckpts" / name / "training_config.yaml"
    model_config = yaml.safe_load(path.read_text())["model_config"]
    head = next(v for v in model_config["head_configs"].values() if v is not None)
    n_nodes = len(head["confmaps"].get("part_names") or [None])
    return model_config, n_nodes


class _LenientUnpickler(pickle.Unpickler):
    """Loads a Lightning checkpoint whose config objects need packages we do not install."""

    def find_class(self, module: str, name: str):
        try:
            return super().find_class(module, name)
        except (ImportError, AttributeError):
            return type(name, (), {"__setstate__": lambda self, state: None})


class _LenientPickle:
    Unpickler = _LenientUnpickler
    load = staticmethod(pickle.load)


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
    ckpt = torch.load(
        io.BytesIO(ckpt_path.read_bytes()),
        map_location="cpu",
        weights_only=False,
        pickle_module=_LenientPickle,
    )
    state = ckpt["state_dict"]
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
    assert list(out) == ["confmaps"]
    assert out["confmaps"].shape == (2, n_out, 8, 12)


def test_build_model_in_channels_override_and_xavier():
    cfg = _model_config()
    cfg["init_weights"] = "xavier"
    model = build_model(cfg, n_nodes=3, in_channels=3)
    assert model.in_channels == 3
    assert model(torch.rand(1, 3, 16, 16))["confmaps"].shape == (1, 3, 8, 8)
    biases = [m.bias for m in model.modules() if isinstance(m, torch.nn.Conv2d)]
    assert all(torch.count_nonzero(b) == 0 for b in biases)
    default = build_model(_model_config(), n_nodes=3)
    assert any(
        torch.count_nonzero(m.bias) > 0 for m in default.modules() if isinstance(m, torch.nn.Conv2d)
    )


def test_build_model_errors():
    cfg = _model_config()
    cfg["head_configs"]["single_instance"]["confmaps"]["output_stride"] = 4
    with pytest.raises(ValueError, match="output_stride"):
        build_model(cfg, n_nodes=2)
    cfg = _model_config()
    cfg["backbone_config"]["convnext"] = {"model_type": "tiny"}
    cfg["backbone_config"]["unet"] = None
    with pytest.raises(NotImplementedError, match="convnext"):
        build_model(cfg, n_nodes=2)
    cfg = _model_config()
    cfg["head_configs"]["single_instance"] = None
    cfg["head_configs"]["bottomup"] = {"confmaps": {}, "pafs": {}}
    with pytest.raises(NotImplementedError, match="bottomup"):
        build_model(cfg, n_nodes=2)
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


def test_head_stride_check_message():
    head = ConfmapsHead(8, 2, output_stride=4)
    with pytest.raises(ValueError, match="differs from the backbone output_stride"):
        head.check_stride(2)
    head.check_stride(4)


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
