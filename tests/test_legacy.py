"""SLEAP <= 1.4 compatibility: training_config.json conversion and Keras best_model.h5 weights.

The real-data tests use SLEAP's own files (configs, Keras models and the activations SLEAP
produced for a zero input); the synthetic tests check what a zero input cannot: the orientation
of the first layer's kernel, the transposed-conv layout and the flatten order of class vectors,
against a NumPy re-implementation of the Keras layers.
"""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
import torch.nn.functional as F
import yaml

from pipeline_lib.cli import main as cli_main
from pipeline_lib.config import ConfigError, load_training_config, model_type
from pipeline_lib.config.legacy import convert_legacy_config
from pipeline_lib.models.legacy_keras import (
    HEAD_KINDS,
    keras_input_channels,
    load_keras_weights,
    load_legacy_model,
)
from pipeline_lib.models.model import build_model

ASSETS = "sleap_nn_assets"
MODELS_WITH_WEIGHTS = (
    "minimal_robot.UNet.single_instance",
    "min_tracks_2node.UNet.topdown_multiclass",
    "min_tracks_2node.UNet.bottomup_multiclass",
)


def _legacy_jsons(shared_data: Path) -> list[Path]:
    root = shared_data / ASSETS
    files = sorted((root / "legacy_sleap_json_configs").glob("*.json"))
    files += sorted((root / "legacy_models").glob("*/*.json"))
    assert len(files) >= 19, f"expected the 19 legacy configs under {root}, found {len(files)}"
    return files


def _at(data: dict, dotted: str):
    for key in dotted.split("."):
        data = data[key]
    return data


def _robot_json(shared_data: Path) -> dict:
    path = shared_data / ASSETS / "legacy_models/minimal_robot.UNet.single_instance"
    return json.loads((path / "training_config.json").read_text())


# --------------------------------------------------------------------------- config conversion


def test_every_legacy_config_converts_and_loads(shared_data):
    for path in _legacy_jsons(shared_data):
        legacy = json.loads(path.read_text())
        cfg = load_training_config(convert_legacy_config(path))
        heads = [k for k, v in legacy["model"]["heads"].items() if v is not None]
        expected = {"multi_instance": "bottomup"}.get(heads[0], heads[0])
        assert model_type(cfg) == expected, path.name


ONE_TO_ONE = (
    ("data.labels.validation_fraction", "data_config.validation_fraction"),
    ("data.preprocessing.input_scaling", "data_config.preprocessing.scale"),
    ("data.preprocessing.ensure_rgb", "data_config.preprocessing.ensure_rgb"),
    ("data.instance_cropping.crop_size", "data_config.preprocessing.crop_size"),
    (
        "data.instance_cropping.crop_size_detection_padding",
        "data_config.preprocessing.crop_padding",
    ),
    ("model.backbone.unet.filters", "model_config.backbone_config.unet.filters"),
    ("model.backbone.unet.filters_rate", "model_config.backbone_config.unet.filters_rate"),
    ("model.backbone.unet.max_stride", "model_config.backbone_config.unet.max_stride"),
    ("model.backbone.unet.up_interpolate", "model_config.backbone_config.unet.up_interpolate"),
    ("model.backbone.unet.middle_block", "model_config.backbone_config.unet.middle_block"),
    ("model.backbone.unet.stacks", "model_config.backbone_config.unet.stacks"),
    ("optimization.batch_size", "trainer_config.train_data_loader.batch_size"),
    ("optimization.batch_size", "trainer_config.val_data_loader.batch_size"),
    ("optimization.epochs", "trainer_config.max_epochs"),
    ("optimization.batches_per_epoch", "trainer_config.train_steps_per_epoch"),
    ("optimization.min_batches_per_epoch", "trainer_config.min_train_steps_per_epoch"),
    ("optimization.initial_learning_rate", "trainer_config.optimizer.lr"),
    (
        "optimization.learning_rate_schedule.reduction_factor",
        "trainer_config.lr_scheduler.reduce_lr_on_plateau.factor",
    ),
    (
        "optimization.learning_rate_schedule.plateau_patience",
        "trainer_config.lr_scheduler.reduce_lr_on_plateau.patience",
    ),
    (
        "optimization.learning_rate_schedule.plateau_min_delta",
        "trainer_config.lr_scheduler.reduce_lr_on_plateau.threshold",
    ),
    (
        "optimization.learning_rate_schedule.min_learning_rate",
        "trainer_config.lr_scheduler.reduce_lr_on_plateau.min_lr",
    ),
    (
        "optimization.early_stopping.plateau_patience",
        "trainer_config.early_stopping.patience",
    ),
    (
        "optimization.early_stopping.plateau_min_delta",
        "trainer_config.early_stopping.min_delta",
    ),
    (
        "optimization.hard_keypoint_mining.loss_scale",
        "trainer_config.online_hard_keypoint_mining.loss_scale",
    ),
    ("outputs.run_name", "trainer_config.run_name"),
)


def test_field_mappings_match_the_json_values(shared_data):
    for path in _legacy_jsons(shared_data):
        legacy = json.loads(path.read_text())
        out = convert_legacy_config(path)
        for old, new in ONE_TO_ONE:
            assert _at(out, new) == _at(legacy, old), f"{path.name}: {old} -> {new}"
        # SLEAP builds the decoder down to the finest map-head stride and records that in the
        # training_config.json it writes (the centroid initial_config.json says 2, its
        # training_config.json 4), so the converter uses the head strides.
        stride = out["model_config"]["backbone_config"]["unet"]["output_stride"]
        if path.name == "training_config.json" or "legacy_sleap_json_configs" in str(path):
            assert stride == legacy["model"]["backbone"]["unet"]["output_stride"], path
        runs_folder = legacy["outputs"]["runs_folder"]
        assert out["trainer_config"]["ckpt_dir"] == (runs_folder or None)
        assert out["data_config"]["train_labels_path"] == (
            [legacy["data"]["labels"]["training_labels"]]
            if legacy["data"]["labels"]["training_labels"]
            else []
        )
        assert out["data_config"]["use_augmentations_train"] is False  # all flags off
        assert out["trainer_config"]["lr_scheduler"]["reduce_lr_on_plateau"]["threshold_mode"] == (
            "abs"
        )

        (legacy_head,) = [k for k, v in legacy["model"]["heads"].items() if v is not None]
        head_src = legacy["model"]["heads"][legacy_head]
        heads = out["model_config"]["head_configs"]
        if legacy_head == "multi_instance":
            bottomup = heads["bottomup"]
            assert bottomup["confmaps"]["sigma"] == head_src["confmaps"]["sigma"]
            assert bottomup["pafs"]["edges"] == head_src["pafs"]["edges"]
            assert bottomup["pafs"]["sigma"] == head_src["pafs"]["sigma"]
            assert bottomup["pafs"]["output_stride"] == head_src["pafs"]["output_stride"]
        elif legacy_head == "multi_class_topdown":
            vectors = heads["multi_class_topdown"]["class_vectors"]
            for key in ("classes", "num_fc_layers", "num_fc_units", "global_pool", "loss_weight"):
                assert vectors[key] == head_src["class_vectors"][key], key
            confmaps = heads["multi_class_topdown"]["confmaps"]
            assert confmaps["anchor_part"] == legacy["data"]["instance_cropping"]["center_on_part"]
        elif legacy_head == "multi_class_bottomup":
            maps = heads["multi_class_bottomup"]["class_maps"]
            for key in ("classes", "sigma", "output_stride", "loss_weight"):
                assert maps[key] == head_src["class_maps"][key], key
        else:
            confmaps = heads[legacy_head]["confmaps"]
            assert confmaps["sigma"] == head_src["sigma"]
            assert confmaps["output_stride"] == head_src["output_stride"]


def test_specific_mappings(shared_data):
    root = shared_data / ASSETS / "legacy_sleap_json_configs"
    scaled = convert_legacy_config(root / "centered_instance_with_scaling_training_config.json")
    pre = scaled["data_config"]["preprocessing"]
    assert (pre["max_height"], pre["max_width"], pre["scale"], pre["crop_size"]) == (
        384,
        384,
        0.5,
        56,
    )
    assert scaled["model_config"]["head_configs"]["centered_instance"]["confmaps"][
        "loss_weight"
    ] == pytest.approx(1.0)

    topdown = convert_legacy_config(root / "topdown_training_config.json")
    skeleton = topdown["data_config"]["skeletons"][0]
    assert [n["name"] for n in skeleton["nodes"]] == ["head", "thorax"]
    assert skeleton["edges"] == [{"source": {"name": "thorax"}, "destination": {"name": "head"}}]
    assert topdown["model_config"]["backbone_config"]["unet"]["in_channels"] == 1
    assert topdown["model_config"]["backbone_config"]["unet"]["convs_per_block"] == 2

    robot = convert_legacy_config(root / "single_instance_training_config.json")
    zmq = robot["trainer_config"]["zmq"]
    assert (zmq["publish_port"], zmq["controller_port"]) == (9001, 9000)
    assert robot["trainer_config"]["ckpt_dir"] is None  # runs_folder ""
    assert robot["data_config"]["data_pipeline_fw"] == "torch_dataset_cache_img_memory"


def test_augmentation_flags_become_probabilities(shared_data):
    legacy = _robot_json(shared_data)
    aug = legacy["optimization"]["augmentation_config"]
    aug.update(rotate=True, rotation_min_angle=-30.0, rotation_max_angle=45.0, scale=True)
    aug.update(uniform_noise=True, uniform_noise_max_val=51.0, brightness=True)
    aug.update(translate=True, translate_min=-8, translate_max=8)
    legacy["data"]["instance_cropping"]["crop_size"] = 80
    out = convert_legacy_config(legacy)
    load_training_config(out)
    geometric = out["data_config"]["augmentation_config"]["geometric"]
    intensity = out["data_config"]["augmentation_config"]["intensity"]
    assert out["data_config"]["use_augmentations_train"] is True
    assert (geometric["rotation_p"], geometric["rotation_min"], geometric["rotation_max"]) == (
        1.0,
        -30.0,
        45.0,
    )
    assert (geometric["scale_p"], geometric["affine_p"], geometric["translate_p"]) == (1.0, 0, 1.0)
    assert geometric["translate_width"] == pytest.approx(8 / 80)
    assert intensity["uniform_noise_p"] == 1.0
    assert intensity["uniform_noise_max"] == pytest.approx(51 / 255)
    assert intensity["brightness_p"] == 1.0
    assert intensity["brightness_max"] == pytest.approx(1 + 10 / 255)
    assert intensity["contrast_p"] == intensity["gaussian_noise_p"] == 0.0


def test_json_path_accepted_by_load_training_config(shared_data, tmp_path):
    path = shared_data / ASSETS / "legacy_sleap_json_configs/bottomup_training_config.json"
    cfg = load_training_config(path)
    assert model_type(cfg) == "bottomup"
    assert cfg.model_config.head_configs.bottomup.pafs.output_stride == 4
    assert cfg.filename == str(path)

    bad = json.loads(path.read_text())
    bad["model"]["heads"]["multi_instance"]["pafs"]["sigma"] = -1
    bad_path = tmp_path / "bad_config.json"
    bad_path.write_text(json.dumps(bad))
    with pytest.raises(ConfigError, match=r"bad_config\.json.*pafs\.sigma"):
        load_training_config(bad_path)


def test_cli_writes_a_loadable_yaml(shared_data, tmp_path, capsys):
    folder = shared_data / ASSETS / "legacy_models/min_tracks_2node.UNet.topdown_multiclass"
    out = tmp_path / "converted" / "topdown.yaml"
    assert cli_main(["convert-legacy-config", str(folder / "training_config.json"), str(out)]) == 0
    assert str(out) in capsys.readouterr().out
    from_yaml = load_training_config(out)
    from_json = load_training_config(folder / "training_config.json")
    assert from_yaml == from_json
    assert yaml.safe_load(out.read_text())["trainer_config"]["max_epochs"] == 200
    assert not [p for p in out.parent.iterdir() if p.name != out.name]  # no temp file left

    assert cli_main(["convert-legacy-config", str(tmp_path / "missing.json"), str(out)]) == 1
    assert "missing.json" in capsys.readouterr().err


def test_unsupported_backbone_is_a_clear_error(shared_data):
    legacy = _robot_json(shared_data)
    legacy["model"]["backbone"]["unet"] = None
    legacy["model"]["backbone"]["resnet"] = {"version": "ResNet50", "pretrained": True}
    with pytest.raises(ConfigError, match=r"model\.backbone\.resnet: only UNet"):
        convert_legacy_config(legacy)


def test_unknown_keys_and_bad_values_are_reported_with_their_legacy_path(shared_data, tmp_path):
    legacy = _robot_json(shared_data)
    legacy["optimization"]["epochz"] = 5
    legacy["optimization"]["optimizer"] = "rmsprop"
    legacy["model"]["heads"]["centroid"] = {"sigma": 2.0}
    path = tmp_path / "typo.json"
    path.write_text(json.dumps(legacy))
    with pytest.raises(ConfigError) as info:
        convert_legacy_config(path)
    message = str(info.value)
    assert "typo.json" in message
    assert "optimization.epochz: unknown SLEAP config key" in message
    assert "did you mean 'epochs'" in message
    assert "optimization.optimizer: only 'adam'" in message
    assert "model.heads: exactly one of" in message

    path.write_text("{not json")
    with pytest.raises(ConfigError, match="not valid JSON"):
        convert_legacy_config(path)
    with pytest.raises(ConfigError, match="not a SLEAP"):
        convert_legacy_config({"data_config": {}})


# --------------------------------------------------------------------------- Keras weights


def _expected_activations(folder: Path) -> tuple[dict[str, np.ndarray], dict]:
    with h5py.File(folder / "dummy_activations.h5", "r") as f:
        metadata = json.loads(f["metadata"][()])
        outputs = {name: f[name][()] for name in f if name != "metadata"}
    return outputs, metadata


@pytest.mark.parametrize("name", MODELS_WITH_WEIGHTS)
def test_keras_weights_reproduce_sleap_activations(shared_data, name):
    folder = shared_data / ASSETS / "legacy_models" / name
    config, model, report = load_legacy_model(folder)
    load_training_config(config)
    expected, metadata = _expected_activations(folder)
    assert sum(p.numel() for p in model.parameters()) == metadata["total_params"]
    assert not report["ignored"] and not report["notes"]

    # SLEAP ran the Keras model on zeros of this NHWC shape (see the file's metadata).
    n, h, w, c = metadata["input_shape"]
    model.eval()
    with torch.no_grad():
        outputs = model(torch.zeros(n, c, h, w))
    for keras_name, want in expected.items():
        kind = re.sub(r"_\d+$", "", keras_name)
        got = outputs[HEAD_KINDS[kind]]
        if kind == "ClassVectorsHead":  # SLEAP's softmax is part of the layer; ours gives logits
            got = torch.softmax(got, dim=-1)
        else:
            got = got.permute(0, 2, 3, 1)  # channels last, like Keras
        got = got.numpy()
        assert got.shape == want.shape, keras_name
        # TF's own float32 convolutions carry ~1e-5 noise here (a zero input gives a constant
        # interior in exact arithmetic, SLEAP's output is not); 1e-3 of the output's range is
        # far below any mapping error, which changes outputs at the percent level.
        tolerance = 1e-3 * float(np.abs(want).max()) + 1e-7
        diff = float(np.abs(got - want).max())
        assert diff <= tolerance, f"{name} {keras_name}: max abs diff {diff:.3g} > {tolerance:.3g}"


def test_part_loads_only_backbone_or_only_heads(shared_data):
    folder = shared_data / ASSETS / "legacy_models/minimal_robot.UNet.single_instance"
    config, _, _ = load_legacy_model(folder)
    model = build_model(config["model_config"], n_nodes=2, in_channels=3)
    head_before = model.heads["confmaps"].conv.weight.detach().clone()
    report = load_keras_weights(model, folder / "best_model.h5", part="backbone")
    assert report["ignored"] == ["SingleInstanceConfmapsHead_0"]
    assert torch.equal(model.heads["confmaps"].conv.weight, head_before)
    assert all(name.startswith("backbone.") for name in report["loaded"])

    fresh = build_model(config["model_config"], n_nodes=2, in_channels=3)
    first_conv = fresh.backbone.stack_modules[0].encoder[0][0].weight.detach().clone()
    report = load_keras_weights(fresh, folder / "best_model.h5", part="head")
    assert list(report["loaded"]) == ["heads.confmaps.conv"]
    assert torch.equal(fresh.backbone.stack_modules[0].encoder[0][0].weight, first_conv)
    with pytest.raises(ValueError, match="part must be one of"):
        load_keras_weights(fresh, folder / "best_model.h5", part="decoder")


def test_mismatched_model_is_refused_without_changes(shared_data):
    folder = shared_data / ASSETS / "legacy_models/minimal_robot.UNet.single_instance"
    assert keras_input_channels(folder / "best_model.h5") == 3
    config, _, _ = load_legacy_model(folder)
    gray = build_model(config["model_config"], n_nodes=2, in_channels=1)
    before = {k: v.clone() for k, v in gray.state_dict().items()}
    with pytest.raises(ValueError, match=r"stack0_enc0_conv0/kernel.*in_channels="):
        load_keras_weights(gray, folder / "best_model.h5")
    assert all(torch.equal(before[k], v) for k, v in gray.state_dict().items())

    unnamed = copy.deepcopy(config["model_config"])
    unnamed["head_configs"]["single_instance"]["confmaps"]["part_names"] = None
    three_parts = build_model(unnamed, n_nodes=3, in_channels=3)
    with pytest.raises(ValueError, match="SingleInstanceConfmapsHead_0/kernel"):
        load_keras_weights(three_parts, folder / "best_model.h5")


# --------------------------------------------------------------------------- synthetic checks
# A NumPy version of the Keras layers SLEAP uses (NHWC, one image), to test what a zero input
# cannot: the first layer's kernel orientation, transposed convs and the Flatten order.


def _conv_same(x: np.ndarray, kernel: np.ndarray, bias: np.ndarray) -> np.ndarray:
    kh, kw = kernel.shape[:2]
    pad = ((kh - 1) // 2, kh // 2), ((kw - 1) // 2, kw // 2), (0, 0)
    xp = np.pad(x, pad)
    h, w = x.shape[:2]
    out = np.zeros((h, w, kernel.shape[3]))
    for dy in range(kh):
        for dx in range(kw):
            out += xp[dy : dy + h, dx : dx + w] @ kernel[dy, dx]
    return out + bias


def _relu(x: np.ndarray) -> np.ndarray:
    return np.maximum(x, 0.0)


def _max_pool(x: np.ndarray) -> np.ndarray:
    h, w, c = x.shape
    return x.reshape(h // 2, 2, w // 2, 2, c).max(axis=(1, 3))


def _upsample_bilinear(x: np.ndarray) -> np.ndarray:
    """TF bilinear resize x2 with half-pixel centres (Keras UpSampling2D)."""
    for axis in (0, 1):
        n = x.shape[axis]
        src = (np.arange(2 * n) + 0.5) / 2 - 0.5
        low = np.floor(src).astype(int)
        frac = (src - low).reshape([-1 if a == axis else 1 for a in range(3)])
        lo = np.take(x, np.clip(low, 0, n - 1), axis=axis)
        hi = np.take(x, np.clip(low + 1, 0, n - 1), axis=axis)
        x = lo + (hi - lo) * frac
    return x


def _transposed_same(x: np.ndarray, kernel: np.ndarray, bias: np.ndarray) -> np.ndarray:
    """Keras Conv2DTranspose(kernel 3, strides 2, padding='same'); kernel is (3, 3, out, in)."""
    h, w = x.shape[:2]
    out = np.zeros((2 * h + 1, 2 * w + 1, kernel.shape[2]))
    for dy in range(3):
        for dx in range(3):
            out[dy : dy + 2 * h : 2, dx : dx + 2 * w : 2] += x @ kernel[dy, dx].T
    return out[: 2 * h, : 2 * w] + bias


def _write_keras_h5(path: Path, layers: dict[str, dict[str, np.ndarray]]) -> None:
    """A file laid out like Keras 2's model.save: model_weights/<layer>/<layer>/kernel:0."""
    with h5py.File(path, "w") as f:
        root = f.create_group("model_weights")
        root.attrs["layer_names"] = [name.encode() for name in layers]
        for name, weights in layers.items():
            group = root.create_group(name)
            group.attrs["weight_names"] = [f"{name}/{key}:0".encode() for key in weights]
            for key, value in weights.items():
                group.create_dataset(f"{name}/{key}:0", data=value.astype(np.float32))


def _random_conv(rng: np.random.Generator, k: int, c_in: int, c_out: int) -> dict:
    return {"kernel": rng.normal(0, 0.3, (k, k, c_in, c_out)), "bias": rng.normal(0, 0.1, c_out)}


def _tiny_config(up_interpolate: bool, head: str = "single_instance") -> dict:
    """max_stride 4, output_stride 1, filters 4 x 2**level, 2 input channels."""
    heads = {
        "single_instance": {"confmaps": {"sigma": 2.0, "output_stride": 1}},
        "multi_class_topdown": {
            "confmaps": {"sigma": 2.0, "output_stride": 1},
            "class_vectors": {
                "num_fc_layers": 1,
                "num_fc_units": 5,
                "global_pool": False,
                "output_stride": 4,
            },
        },
    }
    unet = {"in_channels": 2, "filters": 4, "filters_rate": 2.0, "max_stride": 4}
    unet.update(output_stride=1, up_interpolate=up_interpolate, middle_block=True)
    return {"backbone_config": {"unet": unet}, "head_configs": {head: heads[head]}}


def test_synthetic_unet_matches_keras_layers_on_a_random_image(tmp_path):
    rng = np.random.default_rng(0)
    layers = {
        "stack0_enc0_conv0": _random_conv(rng, 3, 2, 4),
        "stack0_enc0_conv1": _random_conv(rng, 3, 4, 4),
        "stack0_enc1_conv0": _random_conv(rng, 3, 4, 8),
        "stack0_enc1_conv1": _random_conv(rng, 3, 8, 8),
        "stack0_enc3_middle_expand_conv0": _random_conv(rng, 3, 8, 16),
        "stack0_enc4_middle_contract_conv0": _random_conv(rng, 3, 16, 16),
        "stack0_dec0_s4_to_s2_refine_conv0": _random_conv(rng, 3, 8 + 16, 8),
        "stack0_dec0_s4_to_s2_refine_conv1": _random_conv(rng, 3, 8, 8),
        "stack0_dec1_s2_to_s1_refine_conv0": _random_conv(rng, 3, 4 + 8, 4),
        "stack0_dec1_s2_to_s1_refine_conv1": _random_conv(rng, 3, 4, 4),
        "SingleInstanceConfmapsHead_0": _random_conv(rng, 1, 4, 3),
        "OffsetRefinementHead_0": _random_conv(rng, 1, 4, 6),
    }
    _write_keras_h5(tmp_path / "best_model.h5", layers)
    model = build_model(_tiny_config(up_interpolate=True), n_nodes=3)
    report = load_keras_weights(model, tmp_path / "best_model.h5")
    assert report["ignored"] == ["OffsetRefinementHead_0"]

    image = rng.random((12, 16, 2))

    def conv(x, name):
        return _relu(_conv_same(x, layers[name]["kernel"], layers[name]["bias"]))

    s1 = conv(conv(image, "stack0_enc0_conv0"), "stack0_enc0_conv1")
    s2 = conv(conv(_max_pool(s1), "stack0_enc1_conv0"), "stack0_enc1_conv1")
    x = conv(_max_pool(s2), "stack0_enc3_middle_expand_conv0")
    x = conv(x, "stack0_enc4_middle_contract_conv0")
    x = np.concatenate([s2, _upsample_bilinear(x)], axis=-1)
    x = conv(conv(x, "stack0_dec0_s4_to_s2_refine_conv0"), "stack0_dec0_s4_to_s2_refine_conv1")
    x = np.concatenate([s1, _upsample_bilinear(x)], axis=-1)
    x = conv(conv(x, "stack0_dec1_s2_to_s1_refine_conv0"), "stack0_dec1_s2_to_s1_refine_conv1")
    head = layers["SingleInstanceConfmapsHead_0"]
    want = _conv_same(x, head["kernel"], head["bias"])

    model.eval()
    with torch.no_grad():
        got = model(torch.from_numpy(image.transpose(2, 0, 1)[None]).float())["confmaps"]
    np.testing.assert_allclose(got[0].permute(1, 2, 0).numpy(), want, atol=1e-4, rtol=1e-4)

    # A layer a SLEAP UNet does not have (batch norm) is refused, not skipped.
    bn = {"gamma": np.ones(4), "beta": np.zeros(4)}
    _write_keras_h5(tmp_path / "bn.h5", {**layers, "stack0_enc0_conv0_bn": bn})
    with pytest.raises(ValueError, match="stack0_enc0_conv0_bn: not a layer of a SLEAP UNet"):
        load_keras_weights(model, tmp_path / "bn.h5")


def test_transposed_conv_layout_and_the_one_pixel_offset(tmp_path):
    rng = np.random.default_rng(1)
    layers = {
        "stack0_enc0_conv0": _random_conv(rng, 3, 2, 4),
        "stack0_enc0_conv1": _random_conv(rng, 3, 4, 4),
        "stack0_enc1_conv0": _random_conv(rng, 3, 4, 8),
        "stack0_enc1_conv1": _random_conv(rng, 3, 8, 8),
        "stack0_enc3_middle_expand_conv0": _random_conv(rng, 3, 8, 16),
        "stack0_enc4_middle_contract_conv0": _random_conv(rng, 3, 16, 16),
        # Conv2DTranspose kernels are (H, W, out, in).
        "stack0_dec0_s4_to_s2_trans_conv": {
            "kernel": rng.normal(0, 0.3, (3, 3, 8, 16)),
            "bias": rng.normal(0, 0.1, 8),
        },
        "stack0_dec0_s4_to_s2_refine_conv0": _random_conv(rng, 3, 8 + 8, 8),
        "stack0_dec0_s4_to_s2_refine_conv1": _random_conv(rng, 3, 8, 8),
        "stack0_dec1_s2_to_s1_trans_conv": {
            "kernel": rng.normal(0, 0.3, (3, 3, 4, 8)),
            "bias": rng.normal(0, 0.1, 4),
        },
        "stack0_dec1_s2_to_s1_refine_conv0": _random_conv(rng, 3, 4 + 4, 4),
        "stack0_dec1_s2_to_s1_refine_conv1": _random_conv(rng, 3, 4, 4),
        "SingleInstanceConfmapsHead_0": _random_conv(rng, 1, 4, 3),
    }
    _write_keras_h5(tmp_path / "best_model.h5", layers)
    model = build_model(_tiny_config(up_interpolate=False), n_nodes=3)
    report = load_keras_weights(model, tmp_path / "best_model.h5")
    assert any("one pixel" in note for note in report["notes"])

    up = model.backbone.stack_modules[0].decoder[0].upsample[0]
    assert report["loaded"][_module_name(model, up)] == "stack0_dec0_s4_to_s2_trans_conv"
    z = rng.random((3, 5, 16))
    trans = layers["stack0_dec0_s4_to_s2_trans_conv"]
    want = _transposed_same(z, trans["kernel"], trans["bias"])
    z_t = torch.from_numpy(z.transpose(2, 0, 1)[None]).float()
    with torch.no_grad():
        # The loaded weights with Keras' 'same' placement: no padding, crop to 2x the input.
        exact = F.conv_transpose2d(z_t, up.weight, up.bias, stride=2)[..., :6, :10]
        np.testing.assert_allclose(exact[0].permute(1, 2, 0).numpy(), want, atol=1e-5)
        if up.padding == (1, 1) and up.output_padding == (1, 1):
            # The module as built is that output moved one pixel up-left.
            shifted = up(z_t)[0].permute(1, 2, 0).numpy()
            np.testing.assert_allclose(shifted[:-1, :-1], want[1:, 1:], atol=1e-5)


def _module_name(model: torch.nn.Module, module: torch.nn.Module) -> str:
    return next(name for name, m in model.named_modules() if m is module)


def test_class_vectors_without_global_pool_reorder_the_flatten(tmp_path):
    rng = np.random.default_rng(2)
    layers = {
        "stack0_enc0_conv0": _random_conv(rng, 3, 2, 4),
        "stack0_enc0_conv1": _random_conv(rng, 3, 4, 4),
        "stack0_enc1_conv0": _random_conv(rng, 3, 4, 8),
        "stack0_enc1_conv1": _random_conv(rng, 3, 8, 8),
        "stack0_enc3_middle_expand_conv0": _random_conv(rng, 3, 8, 16),
        "stack0_enc4_middle_contract_conv0": _random_conv(rng, 3, 16, 16),
        "stack0_dec0_s4_to_s2_refine_conv0": _random_conv(rng, 3, 8 + 16, 8),
        "stack0_dec0_s4_to_s2_refine_conv1": _random_conv(rng, 3, 8, 8),
        "stack0_dec1_s2_to_s1_refine_conv0": _random_conv(rng, 3, 4 + 8, 4),
        "stack0_dec1_s2_to_s1_refine_conv1": _random_conv(rng, 3, 4, 4),
        "CenteredInstanceConfmapsHead": _random_conv(rng, 1, 4, 3),
        # 8 x 12 crop -> 2 x 3 bottleneck of 16 channels, flattened by Keras in (h, w, C) order.
        "pre_classification0_fc": {
            "kernel": rng.normal(0, 0.3, (2 * 3 * 16, 5)),
            "bias": rng.normal(0, 0.1, 5),
        },
        "ClassVectorsHead": {"kernel": rng.normal(0, 0.3, (5, 2)), "bias": rng.normal(0, 0.1, 2)},
    }
    _write_keras_h5(tmp_path / "best_model.h5", layers)
    config = _tiny_config(up_interpolate=True, head="multi_class_topdown")
    model = build_model(config, n_nodes=3, n_classes=2, input_hw=(8, 12))
    load_keras_weights(model, tmp_path / "best_model.h5")

    bottleneck = rng.random((1, 16, 2, 3))
    flat = bottleneck[0].transpose(1, 2, 0).reshape(-1)  # Keras Flatten of (h, w, C)
    fc = layers["pre_classification0_fc"]
    hidden = _relu(flat @ fc["kernel"] + fc["bias"])
    want = hidden @ layers["ClassVectorsHead"]["kernel"] + layers["ClassVectorsHead"]["bias"]
    with torch.no_grad():
        got = model.heads["class_vectors"](torch.from_numpy(bottleneck).float())
    np.testing.assert_allclose(got[0].numpy(), want, atol=1e-5)

    wrong_size = build_model(copy.deepcopy(config), n_nodes=3, n_classes=2, input_hw=(8, 8))
    with pytest.raises(ValueError, match=r"pre_classification0_fc: takes 96 inputs"):
        load_keras_weights(wrong_size, tmp_path / "best_model.h5")
