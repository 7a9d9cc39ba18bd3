"""LightningModule for confidence-map models (single instance, centroid, centered instance).

Batches arrive as uint8 images and keypoints; augmentation, the final centre crop of top-down
samples and the confidence-map targets are made here, batched on the training device.
"""

from __future__ import annotations

from typing import Any

import lightning as L
import torch

from pipeline_lib.data.augmentation import augment_batch
from pipeline_lib.data.confmaps import make_confmaps, make_multi_instance_confmaps
from pipeline_lib.models.model import build_model
from pipeline_lib.training.losses import confmap_loss, ohkm_loss


class ConfmapModule(L.LightningModule):
    """Trains a :class:`PoseModel` whose one head outputs confidence maps."""

    def __init__(
        self,
        model_config: dict,
        head: str,
        n_nodes: int,
        in_channels: int,
        sigma: float,
        output_stride: int,
        augmentation: dict | None,
        optimizer: dict,
        lr_scheduler: dict,
        ohkm: dict | None,
        crop_size: int | None = None,
        crop_margin: int = 0,
        seed: int | None = None,
    ) -> None:
        super().__init__()
        self.model = build_model(model_config, n_nodes=n_nodes, in_channels=in_channels)
        self.head = head
        self.sigma = float(sigma)
        self.output_stride = int(output_stride)
        self.augmentation = augmentation
        self.optimizer_cfg = optimizer
        self.lr_scheduler_cfg = lr_scheduler or {}
        self.ohkm = ohkm if ohkm and ohkm.get("online_mining") else None
        self.crop_size = crop_size
        self.crop_margin = int(crop_margin)
        self._aug_seed = seed
        self._generator: torch.Generator | None = None

    # ---- batches -> (inputs, targets) -------------------------------------------------------
    def _generator_for(self, device: torch.device) -> torch.Generator | None:
        """A seeded generator on the batch's device so augmentation is reproducible."""
        if self._aug_seed is None:
            return None
        if self._generator is None or self._generator.device != device:
            self._generator = torch.Generator(device=device)
            self._generator.manual_seed(int(self._aug_seed) + self.global_step)
        return self._generator

    def _prepare(
        self, batch: dict[str, torch.Tensor], augment: bool
    ) -> tuple[torch.Tensor, torch.Tensor]:
        images = batch["image"].float() / 255.0
        points = batch["points"].float()
        if augment and self.augmentation is not None:
            images, points = augment_batch(
                images, points, self.augmentation, self._generator_for(images.device)
            )
        if self.crop_size is not None and images.shape[-1] > int(self.crop_size):
            # Training crops carry a margin for augmentation; validation crops come exact.
            size = int(self.crop_size)
            m = (images.shape[-1] - size) // 2
            images = images[..., m : m + size, m : m + size]
            points = points - m
        grid_hw = (images.shape[-2] // self.output_stride, images.shape[-1] // self.output_stride)
        if self.head == "centroid":
            targets = make_multi_instance_confmaps(points, grid_hw, self.output_stride, self.sigma)
        else:
            targets = make_confmaps(points[:, 0], grid_hw, self.output_stride, self.sigma)
        return images, targets

    def _loss(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        loss = confmap_loss(pred, target)
        if self.ohkm is not None:
            loss = loss + ohkm_loss(
                pred,
                target,
                hard_to_easy_ratio=self.ohkm["hard_to_easy_ratio"],
                min_hard_keypoints=self.ohkm["min_hard_keypoints"],
                max_hard_keypoints=self.ohkm["max_hard_keypoints"],
                loss_scale=self.ohkm["loss_scale"],
            )
        return loss

    # ---- Lightning hooks ----------------------------------------------------------------------
    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        images, targets = self._prepare(batch, augment=True)
        loss = self._loss(self.model(images)["confmaps"], targets)
        self.log(
            "train_loss", loss, on_step=False, on_epoch=True, prog_bar=True, batch_size=len(images)
        )
        return loss

    def validation_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        images, targets = self._prepare(batch, augment=False)
        loss = confmap_loss(self.model(images)["confmaps"], targets)
        self.log(
            "val_loss", loss, on_step=False, on_epoch=True, prog_bar=True, batch_size=len(images)
        )
        return loss

    def configure_optimizers(self) -> Any:
        name = self.optimizer_cfg.get("name", "Adam")
        opt_cls = {"Adam": torch.optim.Adam, "AdamW": torch.optim.AdamW}[name]
        optimizer = opt_cls(
            self.parameters(),
            lr=float(self.optimizer_cfg["lr"]),
            amsgrad=bool(self.optimizer_cfg.get("amsgrad", False)),
        )
        step_lr = self.lr_scheduler_cfg.get("step_lr")
        plateau = self.lr_scheduler_cfg.get("reduce_lr_on_plateau")
        if step_lr:
            scheduler = torch.optim.lr_scheduler.StepLR(
                optimizer, step_size=int(step_lr["step_size"]), gamma=float(step_lr["gamma"])
            )
            return {
                "optimizer": optimizer,
                "lr_scheduler": {"scheduler": scheduler, "interval": "epoch"},
            }
        if plateau:
            scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(
                optimizer,
                mode="min",
                threshold=float(plateau["threshold"]),
                threshold_mode=plateau["threshold_mode"],
                cooldown=int(plateau["cooldown"]),
                patience=int(plateau["patience"]),
                factor=float(plateau["factor"]),
                min_lr=plateau["min_lr"],
            )
            return {
                "optimizer": optimizer,
                "lr_scheduler": {
                    "scheduler": scheduler,
                    "monitor": "val_loss",
                    "interval": "epoch",
                },
            }
        return optimizer
