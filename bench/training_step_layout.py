"""Time of one training step (forward, backward, Adam) by memory layout and precision.

Decides the trainer's defaults: channels-last on the CPU (PoseModule.on_fit_start), fp32
unless the pipeline config asks for bf16. The model is the sleap-nn single-instance UNet
medium-RF sample config (13 fly nodes), on a batch of 4 grayscale 512x512 images (single_fly at
scale 0.5). Variants run in alternation, ``--reps`` times each; the median is reported, with the
first step's loss, to show the layouts compute the same thing.

    .venv/bin/python bench/training_step_layout.py --threads 2 --reps 5
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from contextlib import nullcontext
from pathlib import Path

import torch
import yaml

from pipeline_lib.training.module import PoseModule

PROJECT_ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("PIPELINE_SHARED_DIR", PROJECT_ROOT.parent / "shared"))
SAMPLE = SHARED / "data/sleap_nn_assets/sample_configs/config_single_instance_unet_medium_rf.yaml"
VARIANTS = {
    "fp32 contiguous": (False, False),
    "fp32 channels_last": (True, False),
    "bf16 contiguous": (False, True),
    "bf16 channels_last": (True, True),
}


def make_module(model_config: dict) -> PoseModule:
    torch.manual_seed(0)
    return PoseModule(
        model_config=model_config,
        head="single_instance",
        n_nodes=13,
        in_channels=1,
        augmentation=None,
        optimizer={"name": "Adam", "lr": 1e-3},
        lr_scheduler={},
        ohkm=None,
        seed=0,
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--size", type=int, default=512)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    model_config = yaml.safe_load(SAMPLE.read_text())["model_config"]
    confmaps = model_config["head_configs"]["single_instance"]["confmaps"]
    confmaps["part_names"] = [f"n{i}" for i in range(13)]
    g = torch.Generator().manual_seed(1)
    batch = {
        "image": (torch.rand(4, 1, args.size, args.size, generator=g) * 255).to(torch.uint8),
        "points": torch.rand(4, 1, 13, 2, generator=g) * (args.size * 0.8) + args.size * 0.1,
        "class_ids": torch.zeros(4, 1, dtype=torch.long),
    }
    runs = {}
    for name, (channels_last, bf16) in VARIANTS.items():
        module = make_module(model_config)
        if channels_last:
            module.model.to(memory_format=torch.channels_last)
        runs[name] = (module, torch.optim.Adam(module.parameters(), 1e-3), channels_last, bf16)
    times: dict[str, list[float]] = {name: [] for name in VARIANTS}
    first_loss: dict[str, float] = {}
    for _ in range(args.reps + 1):  # the first round warms up and is not timed
        for name, (module, opt, channels_last, bf16) in runs.items():
            images, targets = module._prepare(batch, augment=False)
            if channels_last:
                images = images.contiguous(memory_format=torch.channels_last)
            start = time.perf_counter()
            opt.zero_grad()
            autocast = torch.autocast("cpu", dtype=torch.bfloat16) if bf16 else nullcontext()
            with autocast:
                preds = module.model(images)
            loss, _ = module._loss(preds, targets, mine=False)
            loss.backward()
            opt.step()
            elapsed = time.perf_counter() - start
            if name not in first_loss:
                first_loss[name] = float(loss.detach())
            else:
                times[name].append(elapsed)
    base = statistics.median(times["fp32 contiguous"])
    report = {
        name: {
            "median_s": round(statistics.median(t), 3),
            "speedup": round(base / statistics.median(t), 2),
            "first_loss": first_loss[name],
        }
        for name, t in times.items()
    }
    print(json.dumps({"threads": args.threads, "size": args.size, "variants": report}, indent=2))


if __name__ == "__main__":
    main()
