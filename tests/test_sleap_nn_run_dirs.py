"""sleap-nn run directories predict here unchanged: same config format, checkpoint tensors
matched by position and shape. The run directories in the shared data were trained by sleap-nn
on the one frame of ``minimal_instance.pkg.slp``, so their predictions must land on its labels."""

from __future__ import annotations

import numpy as np
import pytest
import sleap_io as sio
from helpers import SLEAP_NN_RUN_DIRS

from pipeline_lib.inference.predict import predict_labels
from pipeline_lib.training.run_dir import load_trained_model

RUN_DIRS = "sleap_nn_assets/model_ckpts"
FRAME = "sleap_nn_assets/datasets/minimal_instance.pkg.slp"


def _predicted_points(shared_data, tmp_path, models: list[str]) -> tuple[np.ndarray, list]:
    out = tmp_path / "pred.slp"
    # fp32, as sleap-nn predicts: these barely trained models sit close to decision
    # boundaries (bf16 backbone features regroup the multi-class bottom-up's animals).
    models_dirs = [shared_data / RUN_DIRS / m for m in models]
    predict_labels(models_dirs, shared_data / FRAME, out, {"precision": "32"})
    (lf,) = sio.load_slp(str(out)).labeled_frames
    tracks = [inst.track.name if inst.track else None for inst in lf.instances]
    return np.stack([inst.numpy() for inst in lf.instances]), tracks


def _truth(shared_data) -> np.ndarray:
    (lf,) = sio.load_slp(str(shared_data / FRAME)).labeled_frames
    return np.stack([inst.numpy() for inst in lf.user_instances])


def _errors(pred: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """Per-node error of each true instance to its closest prediction."""
    per_pair = np.linalg.norm(pred[:, None] - truth[None], axis=-1).mean(-1)
    return np.stack(
        [np.linalg.norm(pred[per_pair[:, t].argmin()] - truth[t], axis=-1) for t in range(2)]
    )


@pytest.mark.parametrize(
    "models",
    [
        ["minimal_instance_centroid", "minimal_instance_centered_instance"],
        ["minimal_instance_bottomup"],
        ["minimal_instance_multiclass_bottomup"],
    ],
    ids=["topdown", "bottomup", "multiclass_bottomup"],
)
def test_sleap_nn_models_find_the_labelled_animals(shared_data, tmp_path, models):
    pred, tracks = _predicted_points(shared_data, tmp_path, models)
    assert len(pred) == 2
    # sleap-nn's own prediction of this frame with the multi-class run dir is 4.1 px off on one
    # node (the model is barely trained); the others are within 2 px.
    assert _errors(pred, _truth(shared_data)).max() < 5.0
    if "multiclass" in models[0]:
        assert sorted(tracks) == ["female", "male"]


def test_every_sleap_nn_run_dir_loads_with_its_weights(shared_data):
    import torch

    from pipeline_lib.models.pretrained import read_checkpoint_state

    for name in SLEAP_NN_RUN_DIRS:
        run_dir = shared_data / RUN_DIRS / name
        trained = load_trained_model(run_dir)
        theirs = read_checkpoint_state(run_dir / "best.ckpt")
        ours = trained.model.state_dict()
        # every tensor of the checkpoint is in the model, none left at its initial value
        assert len(theirs) == len(ours)
        assert sum(float(v.float().abs().sum()) for v in ours.values()) == pytest.approx(
            sum(float(v.float().abs().sum()) for v in theirs.values()), rel=1e-6
        )
        assert all(isinstance(v, torch.Tensor) for v in ours.values())


def test_a_colour_model_runs_on_a_grey_video(shared_data, tmp_path):
    """The single-instance run dir takes RGB input; the frame is grey and is converted."""
    trained = load_trained_model(shared_data / RUN_DIRS / "minimal_instance_single_instance")
    assert trained.config["model_config"]["backbone_config"]["unet"]["in_channels"] == 3
    pred, _ = _predicted_points(shared_data, tmp_path, ["minimal_instance_single_instance"])
    assert pred.shape == (1, 2, 2)


def _copy_run_dir(shared_data, tmp_path, edit) -> object:
    import shutil

    import yaml

    run_dir = tmp_path / "run"
    shutil.copytree(shared_data / RUN_DIRS / "minimal_instance_centroid", run_dir)
    cfg_path = run_dir / "training_config.yaml"
    cfg = yaml.safe_load(cfg_path.read_text())
    edit(cfg)
    cfg_path.write_text(yaml.safe_dump(cfg))
    return run_dir


def _as_sleap_nn_0_3_5_writes_it(cfg: dict) -> None:
    """Keys sleap-nn 0.3.5 adds to a resolved config (seen in its own run directories)."""
    mc = cfg["model_config"]
    mc["backbone_config"]["pretrained"] = None
    mc["head_configs"].update({"bottomup_segmentation": None, "bbox_centernet": None})
    mc["head_configs"]["centroid"]["confmaps"].update(
        {"centroid_method": None, "use_sigmoid_activation": False, "focal_loss_alpha": 0.0}
    )


def test_run_dirs_of_newer_sleap_nn_load(shared_data, tmp_path):
    run_dir = _copy_run_dir(shared_data, tmp_path, _as_sleap_nn_0_3_5_writes_it)
    assert load_trained_model(run_dir).head == "centroid"


def test_an_option_that_changes_the_outputs_is_refused(shared_data, tmp_path):
    def sigmoid(cfg):
        _as_sleap_nn_0_3_5_writes_it(cfg)
        cfg["model_config"]["head_configs"]["centroid"]["confmaps"]["use_sigmoid_activation"] = 1

    run_dir = _copy_run_dir(shared_data, tmp_path, sigmoid)
    with pytest.raises(ValueError, match="confmaps.use_sigmoid_activation"):
        load_trained_model(run_dir)


def test_an_unknown_backbone_that_is_set_is_still_an_error(shared_data, tmp_path):
    def other(cfg):
        cfg["model_config"]["backbone_config"]["hrnet"] = {"filters": 8}

    with pytest.raises(ValueError, match="hrnet"):
        load_trained_model(_copy_run_dir(shared_data, tmp_path, other))
