"""LightningModule for every model type: targets per head, weighted multi-head loss.

Batches arrive as uint8 images, keypoints and class ids; augmentation, the final centre crop of
top-down samples and the targets of each head (confidence maps, part affinity fields, class
maps, class vectors) are made here, batched on the training device.
"""

from __future__ import annotations

import logging
from typing import Any

import lightning as L
import torch
import torch.nn.functional as F

from pipeline_lib.data.augmentation import augment_batch
from pipeline_lib.data.confmaps import make_confmaps, make_multi_instance_confmaps
from pipeline_lib.models.model import build_model
from pipeline_lib.models.pretrained import load_pretrained
from pipeline_lib.training.losses import confmap_loss, ohkm_loss

log = logging.getLogger(__name__)

MULTI_INSTANCE_CONFMAPS = ("bottomup", "multi_class_bottomup")
#: Checkpoint key of the augmentation generator's state (restored when training resumes).
AUGMENTATION_RNG_KEY = "augmentation_rng_state"


class PoseModule(L.LightningModule):
    """Trains a :class:`PoseModel`; ``head_configs`` is the active head's config section."""

    def __init__(
        self,
        model_config: dict,
        head: str,
        n_nodes: int,
        in_channels: int,
        augmentation: dict | None,
        optimizer: dict,
        lr_scheduler: dict,
        ohkm: dict | None,
        crop_size: int | None = None,
        seed: int | None = None,
        edges: list[tuple[int, int]] | None = None,
        n_classes: int | None = None,
    ) -> None:
        super().__init__()
        self.head = head
        self.head_cfg = model_config["head_configs"][head]
        self.edges = [tuple(e) for e in (edges or [])]
        self.n_classes = n_classes
        self.model = build_model(
            model_config,
            n_nodes=n_nodes,
            in_channels=in_channels,
            n_edges=len(self.edges) if head == "bottomup" else None,
            n_classes=n_classes,
            input_hw=(int(crop_size), int(crop_size)) if crop_size else None,
        )
        self.pretrained_summary = load_pretrained(
            self.model,
            model_config.get("pretrained_backbone_weights"),
            model_config.get("pretrained_head_weights"),
        )
        if self.pretrained_summary:
            log.info("Initialised from pretrained weights: %s", self.pretrained_summary)
        self.augmentation = _without_mixup(augmentation) if n_classes else augmentation
        self.optimizer_cfg = optimizer
        self.lr_scheduler_cfg = lr_scheduler or {}
        self.ohkm = ohkm if ohkm and ohkm.get("online_mining") else None
        self.crop_size = crop_size
        self._aug_seed = seed
        self._generator: torch.Generator | None = None
        self._restored_rng: dict | None = None
        self._channels_last = False

    def on_fit_start(self) -> None:
        """Train in channels-last memory layout on the CPU.

        Measured here (bench/RESULTS.md): a UNet training step (forward, backward, Adam) on a
        batch of four 512x512 images took about 25-30 % less time channels-last than in the
        default layout, with the same loss to float rounding. GPUs keep the default layout:
        not measured here.
        """
        self._channels_last = self.device.type == "cpu"
        if self._channels_last:
            self.model.to(memory_format=torch.channels_last)

    # ---- batches -> (inputs, targets) -------------------------------------------------------
    def _generator_for(self, device: torch.device) -> torch.Generator | None:
        """A seeded generator on the batch's device so augmentation is reproducible.

        After a resume it continues from the state saved in the checkpoint (see
        :meth:`on_save_checkpoint`), so a killed and rerun job draws the same augmentations as
        one that never stopped.
        """
        if self._aug_seed is None:
            return None
        if self._generator is None or self._generator.device != device:
            self._generator = torch.Generator(device=device)
            restored, self._restored_rng = self._restored_rng, None
            if restored is not None and restored["device"] == device.type:
                self._generator.set_state(restored["state"])
            else:
                self._generator.manual_seed(int(self._aug_seed) + self.global_step)
        return self._generator

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Store the augmentation generator's state with the weights.

        Reseeding on resume instead (from the seed and the step) gave the resumed epochs other
        augmentations than an uninterrupted run, and so other final weights and metrics.
        """
        if self._generator is not None:
            checkpoint[AUGMENTATION_RNG_KEY] = {
                "device": self._generator.device.type,
                "state": self._generator.get_state(),
            }

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Keep the saved generator state for the first augmented batch (older checkpoints
        have none; those reseed as before)."""
        self._generator = None
        self._restored_rng = checkpoint.get(AUGMENTATION_RNG_KEY)

    def _prepare(self, batch: dict[str, torch.Tensor], augment: bool) -> tuple[torch.Tensor, dict]:
        images = batch["image"].float() / 255.0
        points = batch["points"].float()
        class_ids = batch["class_ids"]
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
        if self._channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        return images, self._targets(images.shape[-2:], points, class_ids)

    def _targets(self, hw: torch.Size, points: torch.Tensor, class_ids: torch.Tensor) -> dict:
        """Target of every head of this model type."""
        out: dict[str, torch.Tensor] = {}
        cm = self.head_cfg["confmaps"]
        stride = int(cm["output_stride"])
        grid = (hw[0] // stride, hw[1] // stride)
        if self.head == "centroid" or self.head in MULTI_INSTANCE_CONFMAPS:
            out["confmaps"] = make_multi_instance_confmaps(points, grid, stride, cm["sigma"])
        else:
            out["confmaps"] = make_confmaps(points[:, 0], grid, stride, cm["sigma"])
        if self.head == "bottomup":
            from pipeline_lib.data.pafs import make_pafs

            pafs = self.head_cfg["pafs"]
            ps = int(pafs["output_stride"])
            edges = torch.as_tensor(self.edges, dtype=torch.long, device=points.device)
            out["pafs"] = make_pafs(points, edges, (hw[0] // ps, hw[1] // ps), ps, pafs["sigma"])
        elif self.head == "multi_class_bottomup":
            from pipeline_lib.data.class_targets import make_class_maps

            cmaps = self.head_cfg["class_maps"]
            cs = int(cmaps["output_stride"])
            out["class_maps"] = make_class_maps(
                points, class_ids, self.n_classes, (hw[0] // cs, hw[1] // cs), cs, cmaps["sigma"]
            )
        elif self.head == "multi_class_topdown":
            out["class_ids"] = class_ids[:, 0]
        return out

    def _loss(self, preds: dict, targets: dict, mine: bool) -> tuple[torch.Tensor, dict]:
        """Weighted sum over heads (``loss_weight`` null counts as 1) and the parts."""
        parts: dict[str, torch.Tensor] = {}
        confmaps = preds["confmaps"].float()
        parts["confmaps"] = confmap_loss(confmaps, targets["confmaps"])
        if mine and self.ohkm is not None:
            parts["confmaps"] = parts["confmaps"] + ohkm_loss(
                confmaps,
                targets["confmaps"],
                hard_to_easy_ratio=self.ohkm["hard_to_easy_ratio"],
                min_hard_keypoints=self.ohkm["min_hard_keypoints"],
                max_hard_keypoints=self.ohkm["max_hard_keypoints"],
                loss_scale=self.ohkm["loss_scale"],
            )
        if "pafs" in targets:
            parts["pafs"] = confmap_loss(preds["pafs"].float(), targets["pafs"])
        if "class_maps" in targets:
            parts["class_maps"] = confmap_loss(preds["class_maps"].float(), targets["class_maps"])
        if "class_ids" in targets:
            labels = targets["class_ids"]
            logits = preds["class_vectors"].float()
            valid = labels >= 0
            parts["class_vectors"] = (
                F.cross_entropy(logits[valid], labels[valid]) if valid.any() else logits.sum() * 0
            )
        total = torch.zeros((), device=confmaps.device)
        for name, value in parts.items():  # each part is named after its config section
            sec = self.head_cfg.get(name) or {}
            w = sec.get("loss_weight")
            total = total + (1.0 if w is None else float(w)) * value
        return total, parts

    # ---- Lightning hooks ----------------------------------------------------------------------
    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        images, targets = self._prepare(batch, augment=True)
        loss, parts = self._loss(self.model(images), targets, mine=True)
        n = len(images)
        self.log("train_loss", loss, on_step=False, on_epoch=True, prog_bar=True, batch_size=n)
        if len(parts) > 1:
            for name, value in parts.items():
                self.log(f"train_{name}_loss", value, on_step=False, on_epoch=True, batch_size=n)
        return loss

    def validation_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        images, targets = self._prepare(batch, augment=False)
        loss, _ = self._loss(self.model(images), targets, mine=False)
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


def _without_mixup(augmentation: dict | None) -> dict | None:
    """Mixup blends two animals' images but not their identities: off for class heads."""
    if not augmentation:
        return augmentation
    geo = augmentation.get("geometric") or {}
    if geo.get("mixup_p", 0.0) > 0:
        log.warning("mixup is not applied to multi-class models: it would blend two identities")
        return {**augmentation, "geometric": {**geo, "mixup_p": 0.0}}
    return augmentation
