"""ConvNeXt / Swin backbones: strides, shapes, every head on them, torchvision parity and
ImageNet weights from local files only."""

from __future__ import annotations

import pytest
import torch
import torchvision
from torchvision.models.convnext import CNBlockConfig

from pipeline_lib.config.training_config import HEAD_NAMES
from pipeline_lib.models.convnext import ConvNeXt
from pipeline_lib.models.decoder import same_size_padding
from pipeline_lib.models.model import build_model, count_parameters
from pipeline_lib.models.pretrained import (
    ENV_DIR,
    imagenet_weights_file,
    load_imagenet_weights,
)
from pipeline_lib.models.swint import SwinT

SMALL_CONVNEXT = {"depths": [1, 1, 1], "channels": [8, 16, 32]}
SMALL_SWIN = {"embed": 8, "depths": [1, 2], "num_heads": [2, 2]}
HEADS = HEAD_NAMES


def _backbone(name: str, **overrides) -> dict:
    if name == "convnext":
        cfg = {"arch": SMALL_CONVNEXT, "max_stride": 16, "output_stride": 2}
    else:
        cfg = {"arch": SMALL_SWIN, "window_size": 4, "max_stride": 8, "output_stride": 2}
    return {**cfg, **overrides}


def _model_config(backbone: str, head: str, **overrides) -> dict:
    sections = {
        "confmaps": {"sigma": 2.0, "output_stride": 2},
        "pafs": {"sigma": 5.0, "output_stride": 4},
        "class_maps": {"sigma": 2.0, "output_stride": 4},
        "class_vectors": {"num_fc_layers": 2, "num_fc_units": 8, "global_pool": True},
    }
    wanted = {
        "bottomup": ("confmaps", "pafs"),
        "multi_class_bottomup": ("confmaps", "class_maps"),
        "multi_class_topdown": ("confmaps", "class_vectors"),
    }.get(head, ("confmaps",))
    heads = {k: None for k in HEADS}
    heads[head] = {k: sections[k] for k in wanted}
    backbones = {"unet": None, "convnext": None, "swint": None}
    backbones[backbone] = _backbone(backbone, **overrides)
    return {"init_weights": "default", "backbone_config": backbones, "head_configs": heads}


@pytest.mark.parametrize("backbone", ["convnext", "swint"])
@pytest.mark.parametrize("head", HEADS)
def test_every_head_on_convnext_and_swint(backbone, head):
    model = build_model(_model_config(backbone, head), n_nodes=3, n_edges=2, n_classes=4)
    out = model(torch.rand(2, 1, 32, 48))
    n_maps = 1 if head == "centroid" else 3
    assert out["confmaps"].shape == (2, n_maps, 16, 24)
    if head == "bottomup":
        assert out["pafs"].shape == (2, 4, 8, 12)
        assert model.output_strides == {"confmaps": 2, "pafs": 4}
    if head == "multi_class_bottomup":
        assert out["class_maps"].shape == (2, 4, 8, 12)
    if head == "multi_class_topdown":
        assert out["class_vectors"].shape == (2, 4)
    assert list(out) == list(model.head_names)
    sum(v.sum() for v in out.values()).backward()
    stem = next(model.backbone.encoder.parameters())
    assert stem.grad is not None and stem.grad.abs().sum() > 0


@pytest.mark.parametrize(
    ("stem", "max_stride", "output_stride", "encoder_stride"),
    [(2, 16, 2, 16), (2, 32, 1, 16), (4, 32, 4, 32), (1, 16, 1, 8), (2, 64, 8, 16)],
)
@pytest.mark.parametrize("cls", [ConvNeXt, SwinT])
def test_stride_mapping(cls, stem, max_stride, output_stride, encoder_stride):
    """Stage i runs at stem * 2**i; extra levels reach max_stride; the decoder output_stride."""
    arch = {"depths": [1, 1, 1, 1], "channels": [4, 8, 16, 32]}
    cfg = {"max_stride": max_stride, "output_stride": output_stride}
    if cls is ConvNeXt:
        cfg.update(arch=arch, stem_patch_stride=stem, stem_patch_kernel=3 if stem == 1 else 4)
    else:
        cfg.update(
            arch={"embed": 4, "depths": [1, 1, 1, 1], "num_heads": [1, 1, 2, 2]},
            stem_patch_stride=stem,
            patch_size=3 if stem == 1 else 4,
            window_size=2,
        )
    net = cls.from_config(cfg)
    assert (net.encoder_stride, net.max_stride) == (encoder_stride, max_stride)
    assert len(net.extra_levels) == (max_stride // encoder_stride).bit_length() - 1
    h, w = 2 * max_stride, 3 * max_stride
    stages = net.encoder(torch.rand(1, 1, h, w))
    assert [s.shape[-2:] for s in stages] == [
        (h // (stem * 2**i), w // (stem * 2**i)) for i in range(4)
    ]
    feats, bottleneck = net.forward_features(torch.rand(1, 1, h, w))
    assert sorted(feats) == sorted(net.stride_channels)
    assert min(feats) == output_stride and max(feats) == max_stride
    for stride, f in feats.items():
        assert f.shape == (1, net.stride_channels[stride], h // stride, w // stride)
    assert bottleneck.shape == (1, net.bottleneck_channels, 2, 3)
    assert net(torch.rand(1, 1, h, w)).shape[1] == net.out_channels


def test_decoder_widths_follow_filters_rate():
    net = ConvNeXt.from_config(
        {"arch": SMALL_CONVNEXT, "max_stride": 16, "output_stride": 1, "filters_rate": 2}
    )
    # w(t) = 8 * 2**log2(t / 2): 4 at stride 1, the stage widths at 2..8, 64 at the extra level.
    assert net.stride_channels == {16: 64, 8: 32, 4: 16, 2: 8, 1: 4}
    slow = ConvNeXt.from_config(
        {"arch": SMALL_CONVNEXT, "max_stride": 8, "output_stride": 2, "filters_rate": 1.5}
    )
    assert slow.stride_channels == {8: 32, 4: 12, 2: 8}


@pytest.mark.parametrize("up_interpolate", [True, False])
def test_transposed_conv_decoder(up_interpolate):
    net = SwinT.from_config(_backbone("swint", up_interpolate=up_interpolate, output_stride=1))
    has_transposed = any(isinstance(m, torch.nn.ConvTranspose2d) for m in net.modules())
    assert has_transposed is not up_interpolate
    assert net(torch.rand(1, 1, 16, 16)).shape == (1, net.out_channels, 16, 16)


def test_presets_mirror_torchvision():
    """model_type builds torchvision's encoder tensor for tensor (on the meta device: no memory)."""
    with torch.device("meta"):
        ours = ConvNeXt.from_config({"model_type": "small", "in_channels": 3})
        theirs = torchvision.models.convnext_small()
        swin = SwinT.from_config({"model_type": "tiny", "in_channels": 3})
        swin_tv = torchvision.models.swin_t()
    for encoder, reference in ((ours.encoder, theirs), (swin.encoder, swin_tv)):
        mine = {k: v.shape for k, v in encoder.state_dict().items()}
        ref = {
            k: v.shape
            for k, v in reference.state_dict().items()
            if not k.startswith(("classifier", "head"))
        }
        assert mine == ref


def test_arch_resolution_and_config_errors():
    assert (
        ConvNeXt.from_config({"model_type": "base", "arch": SMALL_CONVNEXT}).stride_channels[2] == 8
    )  # an explicit arch wins over model_type
    swin = SwinT.from_config(
        {"arch": {"embed": 8, "depths": [1, 1], "channels": [2, 4]}, "max_stride": 4}
    )  # the guide's spelling of num_heads
    assert swin.encoder.features[1][0].attn.num_heads == 2
    bad = [
        ({"arch": {"depths": [1]}}, "arch needs exactly"),
        ({"arch": SMALL_CONVNEXT, "max_stride": 4}, "below the stride the encoder reaches"),
        ({"arch": SMALL_CONVNEXT, "max_stride": 24}, "power of two"),
        ({"arch": SMALL_CONVNEXT, "max_stride": 8, "output_stride": 16}, "cannot exceed"),
        ({"arch": SMALL_CONVNEXT, "stem_patch_stride": 3}, "stem_patch_stride"),
        ({"arch": SMALL_CONVNEXT, "depths": [1]}, "Unknown key"),
        ({"model_type": "huge"}, "model_type"),
        ({"arch": SMALL_CONVNEXT, "stem_patch_kernel": 4, "stem_patch_stride": 1}, "odd kernel"),
    ]
    for cfg, message in bad:
        with pytest.raises(ValueError, match=message):
            ConvNeXt.from_config(cfg)
    with pytest.raises(ValueError, match="not divisible"):
        SwinT.from_config({"arch": {"embed": 6, "depths": [1], "num_heads": [4]}, "max_stride": 2})
    with pytest.raises(ValueError, match="multiples of max_stride"):
        ConvNeXt.from_config(_backbone("convnext"))(torch.rand(1, 1, 24, 32))


def test_same_size_padding():
    for kernel, stride in [(4, 2), (4, 4), (7, 2), (3, 1), (2, 2), (1, 4)]:
        pad = same_size_padding(kernel, stride, "x")
        conv = torch.nn.Conv2d(1, 1, kernel, stride=stride, padding=pad)
        assert conv(torch.rand(1, 1, 8 * stride, 4 * stride)).shape[-2:] == (8, 4)


# --- ImageNet weights from local files ----------------------------------------------------------


def _tiny_torchvision(kind: str) -> torch.nn.Module:
    """A small torchvision model with the same key layout as the real ones."""
    if kind == "convnext":
        setting = [CNBlockConfig(8, 16, 1), CNBlockConfig(16, 32, 1), CNBlockConfig(32, None, 1)]
        return torchvision.models.convnext.ConvNeXt(setting)
    return torchvision.models.SwinTransformer(
        patch_size=[4, 4], embed_dim=8, depths=[1, 2], num_heads=[2, 2], window_size=[4, 4]
    )


@pytest.fixture
def weights_dirs(tmp_path, monkeypatch):
    """An empty PIPELINE_PRETRAINED_DIR and an empty torch hub cache."""
    env_dir, torch_home = tmp_path / "pretrained", tmp_path / "torch_home"
    env_dir.mkdir()
    monkeypatch.setenv(ENV_DIR, str(env_dir))
    monkeypatch.setenv("TORCH_HOME", str(torch_home))
    return env_dir, torch_home / "hub" / "checkpoints"


@pytest.mark.parametrize(
    ("kind", "name", "filename", "where"),
    [
        ("convnext", "ConvNeXt_Tiny_Weights", "convnext_tiny-983f1562.pth", "env"),
        ("swint", "Swin_T_Weights", "swin_t-704ceda3.pth", "hub"),
    ],
)
def test_imagenet_weights_land_in_the_encoder(weights_dirs, kind, name, filename, where):
    env_dir, hub_dir = weights_dirs
    folder = env_dir if where == "env" else hub_dir
    folder.mkdir(parents=True, exist_ok=True)
    source = _tiny_torchvision(kind).state_dict()
    torch.save(source, folder / filename)
    assert imagenet_weights_file(name) == folder / filename

    cfg = _model_config(kind, "single_instance", pre_trained_weights=name)
    if kind == "convnext":
        cfg["backbone_config"]["convnext"]["arch"] = {"depths": [1, 1, 1], "channels": [8, 16, 32]}
    cfg["init_weights"] = "xavier"  # must not overwrite what was loaded
    model = build_model(cfg, n_nodes=2)
    summary = model.backbone.pretrained_summary
    encoder = model.backbone.encoder.state_dict()
    stem = "features.0.0.weight"
    assert summary["adapted"] == [stem] and not summary["skipped"]
    assert summary["loaded"] == len(encoder)
    assert summary["unused"] and all(
        k.startswith(("classifier", "head")) for k in summary["unused"]
    )
    for key, value in encoder.items():
        if key != stem:
            assert torch.equal(value, source[key]), key
    # Grayscale stem: the RGB kernels summed and divided by in_channels (1).
    assert torch.allclose(encoder[stem], source[stem].sum(1, keepdim=True))
    # A gray image gives the same stem response as its RGB replication did.
    gray = torch.rand(1, 1, 16, 16)
    rgb_conv = torch.nn.functional.conv2d(gray.expand(1, 3, 16, 16), source[stem], stride=2)
    ours = torch.nn.functional.conv2d(gray, encoder[stem], stride=2)
    assert torch.allclose(ours, rgb_conv, atol=1e-5)


def test_imagenet_weights_partial_and_in_channels(weights_dirs):
    env_dir, _ = weights_dirs
    source = _tiny_torchvision("swint").state_dict()
    torch.save(source, env_dir / "swin_t-704ceda3.pth")
    # Another window size: the position-bias tables keep their init, the rest loads.
    net = SwinT.from_config(_backbone("swint", window_size=2, in_channels=3))
    summary = load_imagenet_weights(net, "Swin_T_Weights")
    assert summary["skipped"] and all("relative_position" in k for k in summary["skipped"])
    assert summary["adapted"] == []  # 3 input channels: the stem loads unchanged
    assert torch.equal(net.encoder.features[0][0].weight, source["features.0.0.weight"])
    assert count_parameters(net) > 0


def test_imagenet_weights_missing_file_and_wrong_backbone(weights_dirs):
    env_dir, hub_dir = weights_dirs
    with pytest.raises(FileNotFoundError) as err:
        imagenet_weights_file("ConvNeXt_Small_Weights")
    message = str(err.value)
    assert "convnext_small-0c510722.pth" in message and ENV_DIR in message
    assert str(env_dir) in message and str(hub_dir) in message
    assert "download.pytorch.org" in message  # where to fetch it by hand
    cfg = _model_config("convnext", "centroid", pre_trained_weights="ConvNeXt_Small_Weights")
    with pytest.raises(FileNotFoundError, match="never downloads"):
        build_model(cfg, n_nodes=1)
    # Inference skips the ImageNet weights (the checkpoint replaces them).
    build_model(cfg, n_nodes=1, load_pre_trained_weights=False)
    with pytest.raises(ValueError, match="does not fit this backbone"):
        load_imagenet_weights(SwinT.from_config(_backbone("swint")), "ConvNeXt_Tiny_Weights")
    with pytest.raises(ValueError, match="must be one of"):
        imagenet_weights_file("Swin_V2_T_Weights")


@pytest.mark.parametrize(
    ("name", "strides"),
    [
        ("config_bottomup_convnext.yaml", {"confmaps": 2, "pafs": 4}),
        ("config_centroid_swint.yaml", {"confmaps": 2}),
    ],
)
def test_sleap_nn_sample_configs_build(shared_data, name, strides):
    """The documented sample configs build unchanged (on the meta device: no memory, no time)."""
    import yaml

    path = shared_data / "sleap_nn_assets" / "sample_configs" / name
    model_config = yaml.safe_load(path.read_text())["model_config"]
    with torch.device("meta"):
        model = build_model(model_config, n_nodes=2, n_edges=1)
    assert model.output_strides == strides
    # stem_patch_stride 2 and four stages reach 16, the configured max_stride: no extra level.
    assert model.max_stride == model.backbone.encoder_stride == 16
    assert not model.backbone.extra_levels
    assert model.backbone.stride_channels == {16: 768, 8: 384, 4: 192, 2: 96}
