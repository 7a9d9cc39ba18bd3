"""Prediction figures during training: files per epoch, keep_viz, wandb upload, peak placement."""

from __future__ import annotations

from types import SimpleNamespace

import cv2
import lightning as L
import matplotlib.pyplot as plt
import numpy as np
import pytest
import torch
from helpers import tiny_model_config
from lightning.pytorch.loggers import WandbLogger
from lightning.pytorch.trainer.states import RunningStage
from torch.utils.data import DataLoader

from pipeline_lib.data.confmaps import make_confmaps, make_multi_instance_confmaps
from pipeline_lib.training.module import PoseModule
from pipeline_lib.training.visualize import (
    DPI,
    PANEL_INCHES,
    PredictionVisualizer,
    VizData,
    predict_sample,
    predicted_peaks,
    remove_viz_dir,
    render_figure,
    upsample_map,
)

SIZE, N_NODES = 64, 3
HEADS = ("single_instance", "centroid", "centered_instance", "bottomup")
TWO_EPOCHS = ["train.0000.png", "train.0001.png", "validation.0000.png", "validation.0001.png"]


@pytest.fixture(autouse=True)
def _one_thread():
    """The machine is shared: one intra-op thread is plenty for these tiny models."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _module(head: str = "single_instance", crop_size: int | None = None) -> PoseModule:
    """A tiny real PoseModule: UNet with 8 filters, max stride 8, confmaps at stride 2."""
    torch.manual_seed(0)
    extra = {"pafs": {"sigma": 4.0, "output_stride": 4}} if head == "bottomup" else None
    config = tiny_model_config({"filters": 8, "filters_rate": 1.5}, head=head, extra=extra)
    return PoseModule(
        model_config=config,
        head=head,
        n_nodes=1 if head == "centroid" else N_NODES,
        in_channels=1,
        augmentation=None,
        optimizer={"name": "Adam", "lr": 1e-3},
        lr_scheduler={},
        ohkm=None,
        crop_size=crop_size,
        edges=[(0, 1), (1, 2)] if head == "bottomup" else None,
    )


def _sample(seed: int, size: int = SIZE, n_inst: int = 1, n_nodes: int = N_NODES) -> dict:
    """A dark frame with bright dots at the labelled points, as the dataset returns it."""
    rng = np.random.default_rng(seed)
    points = rng.uniform(8, size - 8, (n_inst, n_nodes, 2)).astype(np.float32)
    image = np.zeros((size, size), np.uint8)
    for x, y in points.reshape(-1, 2):
        cv2.circle(image, (round(float(x)), round(float(y))), 3, 255, -1)
    return {
        "image": torch.from_numpy(image[None]),
        "points": torch.from_numpy(points),
        "class_ids": torch.full((n_inst,), -1, dtype=torch.int64),
    }


def _samples(n: int, **kw) -> list[dict]:
    return [_sample(i, **kw) for i in range(n)]


def _fit(tmp_path, module: PoseModule, callbacks: list[L.Callback], **sample_kw) -> None:
    """2 epochs x 2 steps on CPU with the callbacks, no logger or checkpoints."""
    loader = DataLoader(_samples(4, **sample_kw), batch_size=2)
    val_loader = DataLoader(_samples(2, **sample_kw), batch_size=2)
    trainer = L.Trainer(
        accelerator="cpu",
        devices=1,
        max_epochs=2,
        limit_train_batches=2,
        limit_val_batches=1,
        num_sanity_val_steps=1,  # sanity validation must not write figures
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=tmp_path,
        callbacks=callbacks,
    )
    trainer.fit(module, loader, val_loader)


def _png_hw(path) -> tuple[int, int]:
    image = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    assert image is not None, f"{path} does not decode"
    return image.shape[:2]


def _panel_px(n_panels: int) -> tuple[int, int]:
    return round((PANEL_INCHES + 0.3) * DPI), round(PANEL_INCHES * n_panels * DPI)


# ---- the callback inside a real fit ------------------------------------------------------------
def test_figures_every_epoch_kept_with_keep_viz(tmp_path):
    viz = tmp_path / "viz"
    callback = PredictionVisualizer(viz, [_sample(10)], [_sample(11)], keep=True)
    _fit(tmp_path, _module(), [callback])
    names = sorted(p.name for p in viz.iterdir())
    assert names == TWO_EPOCHS
    for name in names:
        assert _png_hw(viz / name) == _panel_px(2)  # input + confidence maps
    assert plt.get_fignums() == []  # nothing left open in pyplot's registry


def test_bottomup_figures_have_a_paf_panel_and_are_removed_without_keep_viz(tmp_path):
    viz = tmp_path / "viz"
    seen: list[tuple[str, tuple[int, int]]] = []

    class Spy(L.Callback):
        """Looks at the figures before the visualiser removes them at the end of fit."""

        def on_train_end(self, trainer, pl_module):
            seen.extend((p.name, _png_hw(p)) for p in sorted(viz.iterdir()))

    callback = PredictionVisualizer(
        viz, [_sample(10, n_inst=2)], [_sample(11, n_inst=2)], keep=False
    )
    _fit(tmp_path, _module("bottomup"), [callback, Spy()], n_inst=2)
    assert [name for name, _ in seen] == TWO_EPOCHS
    assert all(hw == _panel_px(3) for _, hw in seen)  # input + confmaps + PAF magnitude
    assert not viz.exists()


# ---- the hook on its own -----------------------------------------------------------------------
def _bare_trainer(**kw) -> L.Trainer:
    return L.Trainer(
        accelerator="cpu", logger=False, enable_checkpointing=False, enable_progress_bar=False, **kw
    )


def test_hook_leaves_modes_weights_and_grads_alone(tmp_path):
    module = _module()
    module.train()
    module.model.backbone.eval()  # a deliberately frozen part must stay in eval mode
    modes = {name: m.training for name, m in module.named_modules()}
    state = {k: v.clone() for k, v in module.state_dict().items()}
    seen: list[tuple[bool, bool]] = []  # (grad enabled, training) at each forward
    module.model.register_forward_hook(
        lambda m, i, o: seen.append((torch.is_grad_enabled(), m.training))
    )
    callback = PredictionVisualizer(tmp_path / "viz", [_sample(1)], [_sample(2)], keep=True)
    callback.on_validation_epoch_end(_bare_trainer(), module)
    assert seen == [(False, False), (False, False)]  # eval mode, no autograd graph
    assert sorted(p.name for p in (tmp_path / "viz").iterdir()) == [
        "train.0000.png",
        "validation.0000.png",
    ]
    assert {name: m.training for name, m in module.named_modules()} == modes
    after = module.state_dict()
    assert all(torch.equal(state[k], after[k]) for k in state)
    assert all(p.grad is None for p in module.parameters())


def test_hook_writes_nothing_in_sanity_check_or_off_rank_zero(tmp_path):
    module = _module()
    callback = PredictionVisualizer(tmp_path / "viz", [_sample(1)], [_sample(2)], keep=True)
    trainer = _bare_trainer()
    trainer.state.stage = RunningStage.SANITY_CHECKING
    callback.on_validation_epoch_end(trainer, module)
    other_rank = SimpleNamespace(sanity_checking=False, is_global_zero=False)
    callback.on_validation_epoch_end(other_rank, module)  # type: ignore[arg-type]
    callback.on_fit_end(other_rank, module)  # type: ignore[arg-type]
    assert not (tmp_path / "viz").exists()


def test_extra_samples_get_numbered_names(tmp_path):
    callback = PredictionVisualizer(tmp_path, _samples(2), [], keep=True)
    callback.on_validation_epoch_end(_bare_trainer(), _module())
    assert sorted(p.name for p in tmp_path.iterdir()) == ["train.0000.png", "train_1.0000.png"]


class _FakeWandb(WandbLogger):
    """Records log_image calls; the real one needs wandb and a run."""

    def __init__(self) -> None:
        self.calls: list[dict] = []

    def log_image(self, key, images, step=None, **kwargs):
        self.calls.append({"key": key, "images": images, "step": step})


def test_upload_to_wandb_logs_each_figure(tmp_path):
    fake = _FakeWandb()
    trainer = _bare_trainer()
    trainer.loggers = [fake]
    callback = PredictionVisualizer(
        tmp_path, [_sample(1)], [_sample(2)], keep=True, upload_to_wandb=True
    )
    callback.on_validation_epoch_end(trainer, _module())
    assert [c["key"] for c in fake.calls] == ["viz/train", "viz/validation"]
    assert [c["images"] for c in fake.calls] == [
        [str(tmp_path / "train.0000.png")],
        [str(tmp_path / "validation.0000.png")],
    ]

    fake.calls.clear()
    PredictionVisualizer(tmp_path, [_sample(1)], [], keep=True).on_validation_epoch_end(
        trainer, _module()
    )
    assert fake.calls == []  # upload_to_wandb off


def test_upload_without_wandb_logger_only_writes_files(tmp_path, caplog):
    callback = PredictionVisualizer(
        tmp_path, [_sample(1)], [_sample(2)], keep=True, upload_to_wandb=True
    )
    with caplog.at_level("DEBUG", logger="pipeline_lib.training.visualize"):
        callback.on_validation_epoch_end(_bare_trainer(), _module())
    assert (tmp_path / "validation.0000.png").is_file()
    assert "no WandbLogger" in caplog.text


def test_remove_viz_dir_spares_other_files(tmp_path):
    for name in ("train.0000.png", "validation.0012.png", "train_1.0003.png"):
        (tmp_path / name).write_bytes(b"png")
    (tmp_path / ".train.0004.abcd1234.tmp.png").write_bytes(b"half")
    (tmp_path / "best.ckpt").write_bytes(b"model")
    remove_viz_dir(tmp_path)
    assert [p.name for p in tmp_path.iterdir()] == ["best.ckpt"]
    (tmp_path / "best.ckpt").unlink()
    remove_viz_dir(tmp_path)
    assert not tmp_path.exists()


# ---- where the markers and maps go -------------------------------------------------------------
def test_global_peaks_are_in_model_pixels():
    stride = 4
    truth = torch.tensor([[[20.0, 12.0], [33.0, 41.0], [8.0, 8.0]]])  # model-input pixels
    cms = make_confmaps(truth, (16, 16), stride, sigma=3.0)
    cms[0, 2] *= 0.1  # a node below the threshold is not drawn
    (peaks,) = predicted_peaks(cms, "single_instance", stride, threshold=0.2)
    assert peaks.shape == (2, 2)
    np.testing.assert_allclose(peaks[0], [20.0, 12.0], atol=1e-4)  # cell-aligned: exact
    np.testing.assert_allclose(peaks[1], [33.0, 41.0], atol=0.25)


def test_local_peaks_per_sample_for_multi_instance_heads():
    stride = 2
    points = torch.tensor(
        [[[[10.0, 20.0]], [[40.0, 30.0]]], [[[24.0, 6.0]], [[float("nan")] * 2]]]
    )  # (B=2, I=2, N=1, 2): two animals, then one
    cms = make_multi_instance_confmaps(points, (32, 32), stride, sigma=2.0)
    first, second = predicted_peaks(cms, "centroid", stride)
    np.testing.assert_allclose(first, [[10.0, 20.0], [40.0, 30.0]], atol=1e-4)
    np.testing.assert_allclose(second, [[24.0, 6.0]], atol=1e-4)
    with pytest.raises(ValueError, match="Unknown model type"):
        predicted_peaks(cms, "nonsense", stride)


def test_upsampled_map_peak_sits_under_the_peak_pixel():
    grid = np.zeros((8, 8), np.float32)
    grid[3, 5] = 1.0
    image = upsample_map(grid, stride=4, hw=(32, 32))
    assert image.shape == (32, 32)
    assert np.unravel_index(image.argmax(), image.shape) == (12, 20)  # row 3*4, col 5*4
    assert image[12, 20] == pytest.approx(1.0)


def test_predict_sample_matches_the_model_output():
    module = _module().eval()
    module.augmentation = {"geometric": {"affine_p": 1.0, "rotation_min": 90, "rotation_max": 90}}
    sample = _sample(3)
    with torch.no_grad():
        data = predict_sample(module, sample)
        cms = module.model(sample["image"][None].float() / 255.0)["confmaps"]
    (expected,) = predicted_peaks(cms, "single_instance", 2)
    np.testing.assert_array_equal(data.pred_points, expected)
    np.testing.assert_allclose(data.gt_points, sample["points"][0].numpy())
    np.testing.assert_allclose(data.image[..., 0], sample["image"][0].numpy() / 255.0)
    assert data.confmap.shape == (SIZE, SIZE) and data.pafs is None


def test_predict_sample_crops_like_validation_and_shifts_the_labels():
    module = _module("centered_instance", crop_size=48).eval()
    sample = _sample(4, size=64)  # a training crop with an 8 px augmentation margin
    with torch.no_grad():
        data = predict_sample(module, sample)
    assert data.image.shape == (48, 48, 1)
    np.testing.assert_allclose(data.image[..., 0], sample["image"][0, 8:56, 8:56].numpy() / 255.0)
    np.testing.assert_allclose(data.gt_points, sample["points"][0].numpy() - 8)


def test_figure_draws_the_given_points():
    pred = np.array([[5.0, 7.0], [20.0, 3.0]])
    truth = np.array([[6.0, 6.0]])
    data = VizData(
        image=np.zeros((32, 32, 3)),
        gt_points=truth,
        pred_points=pred,
        confmap=np.zeros((32, 32)),
        pafs=np.zeros((32, 32)),
    )
    fig = render_figure(data, "t")
    axes = fig.axes
    assert len(axes) == 3
    offsets = [np.asarray(c.get_offsets()) for c in axes[0].collections]
    np.testing.assert_allclose(offsets[0], truth)
    np.testing.assert_allclose(offsets[1], pred)
    assert axes[0].get_xlim() == (-0.5, 31.5)
