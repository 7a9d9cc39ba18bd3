"""Tests of the sleap-nn training-config schema: real files load unchanged, bad input is named."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import SHARED_DATA

from pipeline_lib.config import (
    HEAD_NAMES,
    BottomUpConfig,
    ConfigError,
    UNetConfig,
    active_backbone,
    active_head,
    backbone_type,
    config_to_dict,
    load_training_config,
    model_type,
    save_training_config,
)

ASSETS = SHARED_DATA / "sleap_nn_assets"


def _real_config_files() -> list[Path]:
    """Every non-segmentation sleap-nn config in the shared data (empty where it is absent)."""
    samples = [
        p
        for p in sorted((ASSETS / "sample_configs").glob("*.yaml"))
        if "segmentation" not in p.name
    ]
    generated = sorted((ASSETS / "generated_configs").glob("*.yaml"))
    run_dirs = sorted((ASSETS / "model_ckpts").glob("*/*_config.yaml"))
    return samples + generated + run_dirs


REAL_FILES = _real_config_files()
FILE_IDS = [str(p.relative_to(ASSETS)) for p in REAL_FILES]

MINIMAL = {
    "model_config": {
        "backbone_config": {"unet": {}},
        "head_configs": {"single_instance": {}},
    }
}


def _with(patch: dict[str, Any]) -> dict[str, Any]:
    """MINIMAL merged with ``patch`` (nested dicts merged, other values replaced)."""

    def merge(base: dict, extra: dict) -> dict:
        for key, value in extra.items():
            if isinstance(value, dict) and isinstance(base.get(key), dict):
                merge(base[key], value)
            else:
                base[key] = value
        return base

    return merge(copy.deepcopy(MINIMAL), copy.deepcopy(patch))


def _error(source: Any) -> str:
    with pytest.raises(ConfigError) as info:
        load_training_config(source)
    return str(info.value)


def _assert_values_kept(raw: Any, loaded: Any, path: str) -> None:
    """Every value written in the YAML comes back unchanged (after documented normalisation)."""
    if isinstance(raw, dict):
        assert isinstance(loaded, dict), path
        for key, value in raw.items():
            _assert_values_kept(value, loaded[key], f"{path}.{key}")
    elif raw is None and isinstance(loaded, dict | list):
        return  # a null section takes its defaults; a null train_labels_path means []
    else:
        assert loaded == raw, f"{path}: file has {raw!r}, loaded {loaded!r}"


# --------------------------------------------------------------------------- real files


def test_real_config_files_are_found(shared_data: Path) -> None:
    names = {p.parent.name for p in REAL_FILES}
    assert {"sample_configs", "generated_configs"} <= names
    assert sum(p.parent.parent.name == "model_ckpts" for p in REAL_FILES) >= 10
    assert len(REAL_FILES) >= 30


@pytest.mark.parametrize("path", REAL_FILES, ids=FILE_IDS)
def test_real_config_loads_unchanged(path: Path, shared_data: Path) -> None:
    raw = yaml.safe_load(path.read_text())
    cfg = load_training_config(path)
    _assert_values_kept(raw, config_to_dict(cfg), path.name)
    heads = raw["model_config"]["head_configs"]
    assert [h for h in HEAD_NAMES if heads.get(h) is not None] == [model_type(cfg)]
    assert raw["model_config"]["backbone_config"][backbone_type(cfg)] is not None


@pytest.mark.parametrize("path", REAL_FILES, ids=FILE_IDS)
def test_round_trip(path: Path, shared_data: Path, tmp_path: Path) -> None:
    cfg = load_training_config(path)
    out = save_training_config(cfg, tmp_path / "training_config.yaml")
    assert load_training_config(out) == cfg
    saved = yaml.safe_load(out.read_text())
    assert list(saved) == [
        "data_config",
        "model_config",
        "trainer_config",
        "name",
        "description",
        "sleap_nn_version",
        "filename",
    ]
    assert set(saved["model_config"]["head_configs"]) == set(HEAD_NAMES)


def test_segmentation_configs_rejected_clearly(shared_data: Path) -> None:
    seg = sorted((ASSETS / "sample_configs").glob("*segmentation*.yaml"))
    assert len(seg) >= 3
    for path in seg:
        message = _error(path)
        assert "not supported" in message and path.name in message
        assert "unknown key" not in message
    pretrained = _error(ASSETS / "sample_configs" / "config_bottomup_segmentation_pretrained.yaml")
    assert "model_config.backbone_config.pretrained" in pretrained


def test_null_segmentation_keys_are_accepted() -> None:
    cfg = load_training_config(
        _with(
            {
                "model_config": {
                    "backbone_config": {"pretrained": None},
                    "head_configs": {"semantic_segmentation": None, "bottomup_segmentation": None},
                }
            }
        )
    )
    assert model_type(cfg) == "single_instance"


# --------------------------------------------------------------------------- errors


def _guide_block(guide: str, title: str) -> str:
    """The YAML example that follows ``title`` in the guide, up to the next blank-line gap."""
    start = guide.index(title) + len(title)
    lines = []
    for line in guide[start:].lstrip("\n").splitlines():
        if not line.strip():
            break
        lines.append(line)
    return "\n".join(lines) + "\n"


def test_guide_typo_roration_max_names_key_and_suggestion(
    shared_reference: Path, tmp_path: Path
) -> None:
    guide = (shared_reference / "sleap-nn-config-guide.txt").read_text()
    block = _guide_block(guide, "Only geometric augmentations:")
    assert "roration_max" in block
    path = tmp_path / "geometric_only.yaml"
    path.write_text(block)
    message = _error(path)
    assert "data_config.augmentation_config.geometric.roration_max" in message
    assert "did you mean 'rotation_max'" in message
    assert str(path) in message


def test_wrong_type_names_path_expected_and_found(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(_with({"data_config": {"preprocessing": {"scale": "big"}}})))
    message = _error(path)
    assert "data_config.preprocessing.scale: expected float, got str 'big'" in message
    assert str(path) in message

    message = _error(_with({"trainer_config": {"max_epochs": True, "seed": 1.5}}))
    assert "trainer_config.max_epochs: expected int, got bool True" in message
    assert "trainer_config.seed: expected int or null, got float 1.5" in message


def test_all_problems_reported_at_once() -> None:
    error = pytest.raises(
        ConfigError,
        load_training_config,
        _with({"trainer_config": {"max_epochs": "ten", "optimizer": {"lrr": 1}}, "nme": "x"}),
    ).value
    assert len(error.problems) == 3
    assert "did you mean 'lr'" in str(error) and "did you mean 'name'" in str(error)


def test_unknown_key_without_close_match_lists_valid_keys() -> None:
    message = _error(_with({"trainer_config": {"zzz": 1}}))
    assert "trainer_config.zzz: unknown key; valid keys here:" in message
    assert "max_epochs" in message


def test_enumerated_values_list_allowed_and_suggest() -> None:
    message = _error(_with({"trainer_config": {"optimizer_name": "adam"}}))
    assert "'Adam', 'AdamW'" in message and "did you mean 'Adam'" in message
    message = _error(_with({"data_config": {"data_pipeline_fw": "torch"}}))
    assert "data_config.data_pipeline_fw" in message and "torch_dataset_cache_img_disk" in message
    message = _error(
        _with(
            {
                "model_config": {
                    "backbone_config": {"unet": None, "convnext": {"model_type": "huge"}}
                }
            }
        )
    )
    assert "model_config.backbone_config.convnext.model_type" in message and "'large'" in message


def test_missing_head_and_two_heads() -> None:
    no_head = _with({})
    no_head["model_config"]["head_configs"] = {"single_instance": None, "centroid": None}
    message = _error(no_head)
    assert "model_config.head_configs" in message and "none is set" in message

    message = _error(_with({"model_config": {"head_configs": {"centroid": {}}}}))
    assert "2 are set (single_instance, centroid)" in message

    message = _error(_with({"model_config": {"backbone_config": {"swint": {}}}}))
    assert "model_config.backbone_config" in message and "(unet, swint)" in message


@pytest.mark.parametrize(
    ("patch", "expected"),
    [
        (
            {"data_config": {"preprocessing": {"ensure_rgb": True, "ensure_grayscale": True}}},
            "ensure_rgb and ensure_grayscale cannot both be true",
        ),
        (
            {"data_config": {"augmentation_config": {"geometric": {"affine_p": 1.5}}}},
            "data_config.augmentation_config.geometric.affine_p: must be <= 1.0, got 1.5",
        ),
        (
            {"data_config": {"augmentation_config": {"intensity": {"contrast_min": 2.0}}}},
            "contrast_min (2.0) must be <= data_config.augmentation_config.intensity.contrast_max",
        ),
        (
            {"model_config": {"backbone_config": {"unet": {"output_stride": 32}}}},
            "unet.output_stride: (32) must not exceed max_stride (16)",
        ),
        (
            {"model_config": {"backbone_config": {"unet": {"output_stride": 3}}}},
            "unet.output_stride: must be a positive power of two",
        ),
        (
            {"model_config": {"head_configs": {"single_instance": {"confmaps": {"sigma": 0}}}}},
            "single_instance.confmaps.sigma: must be > 0.0, got 0.0",
        ),
        (
            {"trainer_config": {"lr_scheduler": {"step_lr": {}, "reduce_lr_on_plateau": {}}}},
            "at most one scheduler may be set",
        ),
        (
            {"trainer_config": {"trainer_devices": "gpus"}},
            "trainer_config.trainer_devices: 'gpus' is not one of: 'auto'",
        ),
        (
            {"trainer_config": {"trainer_devices": 0}},
            "trainer_config.trainer_devices: must be > 0, got 0",
        ),
        (
            {
                "model_config": {
                    "head_configs": {
                        "single_instance": None,
                        "bottomup": {"pafs": {"edges": [["a", "b", "c"]]}},
                    }
                }
            },
            "bottomup.pafs.edges[0]: expected a [source, destination] pair",
        ),
        (
            {"trainer_config": {"lr_scheduler": {"reduce_lr_on_plateau": {"min_lr": -1.0}}}},
            "reduce_lr_on_plateau.min_lr: must be >= 0.0, got -1.0",
        ),
    ],
)
def test_semantic_and_range_checks(patch: dict, expected: str) -> None:
    assert expected in _error(_with(patch))


def test_duplicate_yaml_key_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "dup.yaml"
    path.write_text("trainer_config:\n  max_epochs: 5\n  max_epochs: 50\n")
    message = _error(path)
    assert "duplicate key 'max_epochs'" in message and str(path) in message


def test_unusable_files(tmp_path: Path) -> None:
    empty = tmp_path / "empty.yaml"
    empty.write_text("")
    assert "empty" in _error(empty)
    listing = tmp_path / "list.yaml"
    listing.write_text("- a\n- b\n")
    assert "expected a mapping of sections at the top level" in _error(listing)
    with pytest.raises(FileNotFoundError, match="missing.yaml"):
        load_training_config(tmp_path / "missing.yaml")


# --------------------------------------------------------------------------- defaults & coercion


def test_defaults_filled_for_omitted_keys() -> None:
    cfg = load_training_config(MINIMAL)
    unet = cfg.model_config.backbone_config.unet
    assert (unet.filters, unet.filters_rate, unet.max_stride, unet.output_stride) == (
        32,
        1.5,
        16,
        1,
    )
    assert unet.stem_stride is None and unet.middle_block and unet.up_interpolate
    assert cfg.model_config.head_configs.single_instance.confmaps.sigma == 5.0
    trainer = cfg.trainer_config
    assert trainer.max_epochs == 10 and trainer.optimizer.lr == 1e-3
    assert trainer.optimizer_name == "Adam" and trainer.trainer_accelerator == "auto"
    assert trainer.early_stopping.patience == 1 and trainer.early_stopping.min_delta == 0.0
    assert not trainer.early_stopping.stop_training_on_plateau
    assert (
        trainer.train_data_loader.batch_size == 1 and trainer.zmq.controller_polling_timeout == 10
    )
    assert trainer.online_hard_keypoint_mining.loss_scale == 5.0
    data = cfg.data_config
    assert data.train_labels_path == [] and data.val_labels_path is None
    assert data.validation_fraction == 0.1 and data.preprocessing.min_crop_size == 100
    assert data.augmentation_config is None and not data.use_augmentations_train


def test_partial_subsections_get_defaults_for_the_rest() -> None:
    cfg = load_training_config(
        _with(
            {
                "data_config": {"augmentation_config": {"geometric": {"rotation_max": 90.0}}},
                "trainer_config": {"lr_scheduler": {"reduce_lr_on_plateau": {"patience": 3}}},
                "model_config": {"head_configs": {"single_instance": None, "bottomup": {}}},
            }
        )
    )
    geo = cfg.data_config.augmentation_config.geometric
    assert (geo.rotation_min, geo.rotation_max, geo.scale_min, geo.erase_p) == (
        -15.0,
        90.0,
        0.9,
        0.0,
    )
    assert cfg.data_config.augmentation_config.intensity is None
    plateau = cfg.trainer_config.lr_scheduler.reduce_lr_on_plateau
    assert (plateau.patience, plateau.threshold, plateau.threshold_mode) == (3, 1e-4, "rel")
    assert (plateau.cooldown, plateau.factor, plateau.min_lr) == (0, 0.1, 0.0)
    head = active_head(cfg)
    assert isinstance(head, BottomUpConfig)
    assert (head.confmaps.sigma, head.pafs.sigma, head.pafs.edges) == (5.0, 15.0, None)
    assert isinstance(active_backbone(cfg), UNetConfig)


def test_float_text_and_union_fields_are_coerced(tmp_path: Path) -> None:
    path = tmp_path / "coerce.yaml"
    path.write_text(
        yaml.safe_dump(_with({})) + "trainer_config:\n"
        "  trainer_devices: auto\n"
        "  lr_scheduler:\n"
        "    reduce_lr_on_plateau:\n"
        "      threshold: 1e-6\n"
        "      min_lr: [1e-8, 0]\n"
        "data_config:\n"
        "  train_labels_path: train.slp\n"
        "  preprocessing:\n"
        "    scale: 1\n"
    )
    cfg = load_training_config(path)
    plateau = cfg.trainer_config.lr_scheduler.reduce_lr_on_plateau
    assert plateau.threshold == 1e-6 and isinstance(plateau.threshold, float)
    assert plateau.min_lr == [1e-8, 0.0]
    assert cfg.trainer_config.trainer_devices == "auto"
    assert cfg.data_config.train_labels_path == ["train.slp"]
    assert cfg.data_config.preprocessing.scale == 1.0
    assert isinstance(cfg.data_config.preprocessing.scale, float)
    assert (
        load_training_config(
            _with({"trainer_config": {"trainer_devices": 2}})
        ).trainer_config.trainer_devices
        == 2
    )


def test_edges_as_names_or_indices() -> None:
    patch = {"model_config": {"head_configs": {"single_instance": None, "bottomup": {}}}}
    for edges in ([["head", "thorax"]], [[0, 1], [1, 2]]):
        patch["model_config"]["head_configs"]["bottomup"] = {"pafs": {"edges": edges}}
        assert (
            load_training_config(_with(patch)).model_config.head_configs.bottomup.pafs.edges
            == edges
        )


def test_input_mapping_not_modified() -> None:
    source = _with({"data_config": {"train_labels_path": "a.slp"}})
    before = copy.deepcopy(source)
    load_training_config(source)
    assert source == before


def test_save_masks_wandb_api_key_and_refuses_invalid(tmp_path: Path) -> None:
    cfg = load_training_config(_with({"trainer_config": {"wandb": {"api_key": "secret"}}}))
    out = save_training_config(cfg, tmp_path / "run" / "training_config.yaml")
    assert "secret" not in out.read_text()
    assert load_training_config(out).trainer_config.wandb.api_key is None

    cfg.model_config.head_configs.single_instance = None
    with pytest.raises(ConfigError, match="not written"):
        save_training_config(cfg, tmp_path / "bad.yaml")
    assert not (tmp_path / "bad.yaml").exists()


def test_model_type_requires_exactly_one_head() -> None:
    cfg = load_training_config(MINIMAL)
    assert model_type(cfg) == "single_instance" and backbone_type(cfg) == "unet"
    cfg.model_config.head_configs.single_instance = None
    with pytest.raises(ConfigError, match="none is set"):
        model_type(cfg)
