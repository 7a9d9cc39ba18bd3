"""Augmentation cost per sample: ours batched on the device against sleap-nn's per sample.

Ours augments a whole batch after collation (``augment_batch``); sleap-nn augments one sample at
a time inside its Dataset (``apply_intensity_augmentation`` + ``apply_geometric_augmentation``).
Both run the same augmentation config on the same uint8-derived float images and keypoints, on
the CPU, with the same thread count; the peer runs in its own venv (``--peer-python``).

    .venv/bin/python bench/augmentation_speed.py --peer-python bench/.peer-venv/bin/python
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import time

import torch

from pipeline_lib.data.augmentation import augment_batch

AUG = {
    "intensity": {
        "uniform_noise_min": 0.0,
        "uniform_noise_max": 0.04,
        "uniform_noise_p": 0.5,
        "gaussian_noise_mean": 0.0,
        "gaussian_noise_std": 0.02,
        "gaussian_noise_p": 0.5,
        "contrast_min": 0.9,
        "contrast_max": 1.1,
        "contrast_p": 0.5,
        "brightness_min": 0.9,
        "brightness_max": 1.1,
        "brightness_p": 0.5,
    },
    "geometric": {
        "rotation_min": -15.0,
        "rotation_max": 15.0,
        "scale_min": 0.9,
        "scale_max": 1.1,
        "translate_width": 0.05,
        "translate_height": 0.05,
        "affine_p": 1.0,
        "erase_scale_min": 0.0001,
        "erase_scale_max": 0.01,
        "erase_ratio_min": 1.0,
        "erase_ratio_max": 1.0,
        "erase_p": 0.5,
        "mixup_lambda_min": 0.01,
        "mixup_lambda_max": 0.05,
        "mixup_p": 0.0,
    },
}

# Runs in the peer's venv: times sleap-nn's own per-sample augmentation functions.
PEER_SNIPPET = """
import json, sys, time, torch
from sleap_nn.data.augmentation import apply_intensity_augmentation, apply_geometric_augmentation
aug, batch, size, nodes, reps, threads = json.loads(sys.argv[1])
torch.set_num_threads(threads)
g = torch.Generator().manual_seed(0)
images = torch.rand(batch, 1, size, size, generator=g)
points = torch.rand(batch, 1, nodes, 2, generator=g) * size
times = []
for _ in range(reps):
    t = time.perf_counter()
    for i in range(batch):
        img, pts = apply_intensity_augmentation(images[i:i+1], points[i:i+1], **aug["intensity"])
        geo = {k: v for k, v in aug["geometric"].items() if not k.startswith("mixup")}
        img, pts = apply_geometric_augmentation(img, pts, **geo)
    times.append((time.perf_counter() - t) / batch)
print(json.dumps(times))
"""


def ours(batch: int, size: int, nodes: int, reps: int) -> list[float]:
    """Seconds per sample of one batched call, ``reps`` times."""
    g = torch.Generator().manual_seed(0)
    images = torch.rand(batch, 1, size, size, generator=g)
    points = torch.rand(batch, 1, nodes, 2, generator=g) * size
    times = []
    for _ in range(reps):
        t = time.perf_counter()
        augment_batch(images, points, AUG, g)
        times.append((time.perf_counter() - t) / batch)
    return times


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--peer-python", required=True)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--size", type=int, default=512)
    ap.add_argument("--nodes", type=int, default=13)
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    payload = json.dumps([AUG, args.batch, args.size, args.nodes, args.reps, args.threads])
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads)}
    results: dict[str, list[float]] = {"ours": [], "sleap-nn": []}
    for _ in range(args.rounds):  # alternate the two so machine noise hits both alike
        results["ours"] += ours(args.batch, args.size, args.nodes, args.reps)
        out = subprocess.run(
            [args.peer_python, "-c", PEER_SNIPPET, payload],
            capture_output=True,
            text=True,
            env=env,
            check=True,
        )
        results["sleap-nn"] += json.loads(out.stdout.strip().splitlines()[-1])
    med = {k: statistics.median(v) * 1e3 for k, v in results.items()}
    print(
        json.dumps(
            {
                "image": f"{args.size}x{args.size}x1",
                "batch": args.batch,
                "ms_per_sample": med,
                "ratio": med["sleap-nn"] / med["ours"],
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
