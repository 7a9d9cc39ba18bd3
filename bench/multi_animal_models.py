"""Bottom-up and multi-class models on the two-fly data for a fixed step budget.

Trains each model type from its sleap-nn sample config (UNet filters and input scale reduced so a
CPU run takes minutes), on a seeded split of ``two_flies.slp``, then evaluates the held-out test
frames: OKS mAP/mAR and, for multi-class models, identity accuracy (fraction of matched flies
given the right name, F or M).

    .venv/bin/python bench/multi_animal_models.py --steps 600 --scale 0.25 --confmap-sigma 2.5 \
        --out-dir results/bench/multi_animal
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import yaml

from pipeline_lib.data.cache import build_image_cache
from pipeline_lib.data.split import split_labels
from pipeline_lib.evaluation.evaluate import evaluate_model
from pipeline_lib.training.train import train_model

PROJECT_ROOT = Path(__file__).resolve().parents[1]
SAMPLES = Path("sleap_nn_assets/sample_configs")
PREDICTORS = {
    "bottomup": ["config_bottomup_unet_medium_rf.yaml"],
    "multi_class_bottomup": ["config_multi_class_bottomup_unet.yaml"],
    "multi_class_topdown": [
        "config_centroid_unet.yaml",
        "config_topdown_multi_class_centered_instance_unet.yaml",
    ],
}


def _config(
    src: Path, dst: Path, steps: int, scale: float, filters: int, lr: float, cm_sigma: float | None
) -> Path:
    cfg = yaml.safe_load(src.read_text())
    cfg["data_config"]["preprocessing"]["scale"] = scale
    cfg["model_config"]["backbone_config"]["unet"]["filters"] = filters
    # PAF and class-map sigmas in the samples (50-75 px) are meant for full-resolution frames;
    # keep the same spread relative to the animals when the input is downscaled. Part
    # confidence-map sigmas stay as they are.
    for head in cfg["model_config"]["head_configs"].values():
        for section in ("pafs", "class_maps"):
            if head and head.get(section):
                head[section]["sigma"] = float(head[section]["sigma"]) * scale
        if head and cm_sigma is not None:
            head["confmaps"]["sigma"] = cm_sigma
    tc = cfg["trainer_config"]
    epochs = 10
    tc.update(
        {
            "max_epochs": epochs,
            "train_steps_per_epoch": max(steps // epochs, 1),
            "enable_progress_bar": False,
            "seed": 0,
            "zmq": {
                "publish_port": None,
                "controller_port": None,
                "controller_polling_timeout": 10,
            },
        }
    )
    tc["early_stopping"]["stop_training_on_plateau"] = False
    tc["optimizer"]["lr"] = lr  # the samples' 1e-4 is tuned for long GPU runs, not a step budget
    dst.write_text(yaml.safe_dump(cfg))
    return dst


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data-root", default=str(PROJECT_ROOT.parent / "shared" / "data"))
    p.add_argument("--out-dir", required=True)
    p.add_argument("--steps", type=int, default=300)
    p.add_argument("--scale", type=float, default=0.25)
    p.add_argument("--filters", type=int, default=16)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument(
        "--confmap-sigma", type=float, help="override every confidence-map sigma (model px)"
    )
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--only", nargs="*", choices=list(PREDICTORS), help="model types to run")
    a = p.parse_args()
    data, out = Path(a.data_root), Path(a.out_dir)
    splits = {k: out / f"splits/{k}.slp" for k in ("train", "val", "test")}
    split_labels(
        [data / "dreem_assets/sleap/two_flies.slp"], *splits.values(), 0.1, 0.2, None, 0, True
    )
    build_image_cache({k: str(v) for k, v in splits.items()}, out / "cache", a.threads)
    rows = []
    for kind in a.only or PREDICTORS:
        runs, seconds = [], 0.0
        for name in PREDICTORS[kind]:
            run = out / "models" / name.removesuffix(".yaml")
            if not (run / "best.ckpt").exists():
                cfg = _config(
                    data / SAMPLES / name,
                    out / name,
                    a.steps,
                    a.scale,
                    a.filters,
                    a.lr,
                    a.confmap_sigma,
                )
                t0 = time.time()
                train_model(cfg, splits["train"], splits["val"], out / "cache", run, a.threads)
                seconds += time.time() - t0
            runs.append(run)
        m = evaluate_model(
            runs,
            splits["test"],
            out / f"{kind}.json",
            out / f"{kind}.npz",
            out / f"{kind}.slp",
            a.threads,
        )
        rows.append(
            {
                "model": kind,
                "mAP": m["oks_voc"]["mAP"],
                "mAR": m["oks_voc"]["mAR"],
                "mOKS": m["mOKS"],
                "dist_p50": m["distance"]["p50"],
                "identity_accuracy": (m.get("identity") or {}).get("identity_accuracy"),
                "train_s": round(seconds, 1),
            }
        )
        print(json.dumps(rows[-1]), flush=True)
    print("| model | test mAP | mAR | mOKS | dist p50 (px) | identity accuracy | train s |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        ident = "n/a" if r["identity_accuracy"] is None else f"{r['identity_accuracy']:.3f}"
        print(
            f"| {r['model']} | {r['mAP']:.3f} | {r['mAR']:.3f} | {r['mOKS']:.3f} | "
            f"{r['dist_p50']:.2f} | {ident} | {r['train_s']} |"
        )


if __name__ == "__main__":
    main()
