# Helpers only (no rules): the resolved plan of videos and models, paths, per-job inputs and
# params, and the wildcard constraints. The checks behind them live in
# pipeline_lib/workflow_support.py, where they are unit-tested without Snakemake.

import os
import re
import types

import pipeline_lib
from pipeline_lib.workflow_resources import SCALE_INPUT, resolve_resources, selected_share, snakemake_resources
from pipeline_lib.batch import video_batches
from pipeline_lib.workflow_support import TRACKER_RUN_DIR, WorkflowConfigError, build_plan, code_version, eval_splits
from snakemake.exceptions import WorkflowError

PACKAGE_ROOT = f"{workflow.basedir}/pipeline_lib"
N_EXAMPLE_FRAMES = 4


def _demo_ids():
    """Demo video ids, known before make_demo has written anything."""
    if not config["demo"]["enabled"]:
        return []
    from pipeline_lib.data.demo import demo_video_ids

    return list(demo_video_ids(config["demo"]["n_videos"]))


try:
    PLAN = build_plan(config, demo_ids=_demo_ids())
    RESOURCES = resolve_resources(config.get("resources"))
except WorkflowConfigError as exc:
    raise WorkflowError(f"Invalid pipeline config: {exc}") from None


# videos.per_job > 1: batches of videos predicted by one job each (rule predict_batch).
PER_JOB = config["videos"]["per_job"]
BATCHES = video_batches(PLAN.videos, PER_JOB) if PER_JOB > 1 else {}


def _alternation(names):
    """Regex matching exactly one of ``names`` (never matching when there are none)."""
    names = sorted(names)
    return "|".join(re.escape(n) for n in names) if names else "(?!)"


wildcard_constraints:
    dataset=_alternation(config["datasets"]),
    model=_alternation(config["models"]),
    video=_alternation(PLAN.videos),
    split="val|test",


def code(entry):
    """Package version + hash of the pipeline_lib sources ``entry`` imports (rerun trigger)."""
    try:
        return code_version(entry, PACKAGE_ROOT, pipeline_lib.__version__)
    except WorkflowConfigError as exc:
        raise WorkflowError(f"pipeline_lib is incomplete: {exc}") from None


def rule_threads(rule_name):
    """The rule's threads from config ``resources`` (on SLURM also its --cpus-per-task)."""
    return RESOURCES[rule_name].threads


def job_threads(rule_name):
    """Threads each job of this rule really gets. Snakemake caps them at --cores locally;
    cluster runs have no --cores (``workflow.cores`` raises there), so the config's count holds."""
    cores = workflow.resource_settings.cores
    return min(rule_threads(rule_name), cores) if isinstance(cores, int) else rule_threads(rule_name)


def rule_resources(rule_name):
    """The rule's mem_mb, runtime and gpu from config ``resources``; for predict_video and
    track_video, functions of the size of the input they scale with (for predict_video, of
    the share of it a manifest frame range selects)."""
    return snakemake_resources(
        RESOURCES[rule_name], SCALE_INPUT.get(rule_name), INPUT_SHARE.get(rule_name)
    )


def _predicted_share(wildcards, input):
    """The share of its video a predict_video job reads (a manifest frame range)."""
    return selected_share(video_frames(wildcards), input.video)


INPUT_SHARE = {"predict_video": _predicted_share}


# videos.per_job > 1 (batch.smk): the files of one video's tracks, staged and final.
STAGED_TRACKS = {"slp": "tracked.slp", "csv": "tracked.csv", "analysis_h5": "tracked.analysis.h5"}


def apply_family_resources(made, family):
    """Profile ``set-resources`` (or ``--set-resources``) given for a family of rules made in a
    loop (``predict_batch``: each ``predict_batch_{batch}``) apply to each of them, as they
    would to a rule of that name (Snakemake itself matches them by exact rule name only)."""
    overrides = workflow.resource_settings._parsed_overwrite_resources.get(family)
    if overrides:
        made.resources.update(overrides)


def batch_tracking(video):
    """What a track_batch job needs to know of one of its videos."""
    return {
        "predictions": f"results/predictions/{video}.predictions.slp",
        "options": tracking_options(types.SimpleNamespace(video=video)),
        "staged": {k: f"results/tracks/staged/{video}.{s}" for k, s in STAGED_TRACKS.items()},
        "outputs": {k: f"results/tracks/{video}.{s}" for k, s in STAGED_TRACKS.items()},
    }


def batch_video(video):
    """What a predict_batch job needs to know of one of its videos."""
    entry = PLAN.videos[video]
    return {
        "path": entry.path,
        "frames": entry.frames,
        "staged": f"results/predictions/staged/{video}.predictions.slp",
        "output": f"results/predictions/{video}.predictions.slp",
    }


def log_path(rule_name, name="run"):
    return f"results/logs/{rule_name}/{name}.log"


def bench_path(rule_name, name="run"):
    return f"results/benchmarks/{rule_name}/{name}.tsv"


# ----------------------------------------------------------------------------- datasets, models


def dataset_of(model):
    return config["models"][model]["dataset"]


# Models given as trained folders (models.<name>.run_dir) are inputs, never trained.
GIVEN = PLAN.given_models
TRAINED_MODELS = [m for m in config["models"] if m not in GIVEN]


def eval_labels(model, split):
    """The labelled frames a model is evaluated on: its dataset's split, or for a given model
    the labels its ``evaluate_on`` names."""
    if model in GIVEN:
        return GIVEN[model].evaluate_on
    return split_path(dataset_of(model), split)


def model_config_file(model):
    """The training config a model was (or will be) trained from."""
    return GIVEN[model].config_file if model in GIVEN else config["models"][model]["config"]


def split_path(dataset, split):
    return f"results/splits/{dataset}/{split}.slp"


def cache_dir(dataset):
    return f"results/cache/{dataset}"


def model_dir(model):
    """The folder inference reads: the run directory a model trains into, or the given one."""
    return GIVEN[model].path if model in GIVEN else f"results/models/{model}"


def model_files(models):
    """Files that mark a trained model (its run directory is what inference reads)."""
    files = []
    for m in models:
        names = ("best.ckpt", "training_config.yaml")
        files += GIVEN[m].files if m in GIVEN else [f"{model_dir(m)}/{name}" for name in names]
    return files


def model_chain(model):
    """Models that run together when ``model`` is evaluated: the whole predictor for its last
    model (so a top-down pair is evaluated end to end), otherwise the model alone."""
    return list(PLAN.predictor) if model == PLAN.eval_model else [model]


# ----------------------------------------------------------------------------- videos


def video_path(wildcards):
    return PLAN.videos[wildcards.video].path


def video_frames(wildcards):
    """The video's frame selection from the manifest (e.g. "0-999"); "" means every frame."""
    return PLAN.videos[wildcards.video].frames or ""


def ground_truth_path(wildcards):
    gt = PLAN.videos[wildcards.video].ground_truth
    if gt is None:
        raise WorkflowError(f"Video {wildcards.video} has no ground truth to evaluate tracking against")
    return gt


def tracking_options(wildcards):
    """Tracker options for one video: config ``tracking`` with the manifest's max_tracks.

    A multi-class predictor already names every animal, so its identities are kept as they are.
    """
    max_tracks = PLAN.videos[wildcards.video].max_tracks
    if PLAN.tracker_model is not None and not PLAN.identities_from_model:
        gtr = config["tracking"]["gtr"]
        options = {"method": "gtr", "model": PLAN.tracker_model, **gtr["options"]}
        if max_tracks is not None:
            options["max_tracks"] = max_tracks
        return options
    options = {k: v for k, v in config["tracking"].items() if k not in ("enabled", "gtr")}
    if PLAN.identities_from_model:
        options["method"] = "identity"
    if max_tracks is not None:
        options["max_tracks"] = max_tracks
    return options


def tracker_model_files(wildcards):
    """The trained tracking transformer track_video reads, when the DAG trains it."""
    if PLAN.tracker_training is None or PLAN.identities_from_model:
        return []
    return [f"{PLAN.tracker_model}/best.ckpt", f"{PLAN.tracker_model}/tracker_config.yaml"]


def final_pose_file(video):
    """The per-video end product: tracked if tracking is on, else the raw predictions."""
    if config["tracking"]["enabled"]:
        return f"results/tracks/{video}.tracked.slp"
    return f"results/predictions/{video}.predictions.slp"


def gt_videos():
    """Videos whose tracking can be scored (needs ground truth and tracking switched on)."""
    if not config["tracking"]["enabled"]:
        return []
    return [v.id for v in PLAN.videos.values() if v.ground_truth]


# ----------------------------------------------------------------------------- report inputs


def pose_metrics_files():
    """``{"model/split": metrics json}``: the predictor end to end (under its last model) and,
    for a top-down pair, the centroid model on its own when it is trained here (a given model's
    ``evaluate_on`` applies to the last model only)."""
    m = PLAN.eval_model
    files = {f"{m}/{s}": f"results/models/{m}/metrics.{s}.json" for s in PLAN.eval_splits}
    for first in PLAN.predictor[:-1]:
        if first not in GIVEN:
            splits = eval_splits(config["datasets"][config["models"][first]["dataset"]])
            files.update({f"{first}/{s}": f"results/models/{first}/metrics.{s}.json" for s in splits})
    return files


def training_log_files():
    return {m: f"{model_dir(m)}/training_log.csv" for m in TRAINED_MODELS}


def pose_files():
    return {v: final_pose_file(v) for v in PLAN.videos}


def tracking_metric_files():
    return {v: f"results/tracks/{v}.tracking_metrics.json" for v in gt_videos()}


REPORT_OUTPUTS = {
    "summary_md": "results/report/summary.md",
    "summary_json": "results/report/summary.json",
    "pose_table": "results/report/pose_metrics.csv",
    "tracking_table": "results/report/tracking_metrics.csv",
    "video_table": "results/report/videos.csv",
    "training_curves": "results/report/training_curves",
    "example_frames": "results/report/example_frames",
}


def expected_animals():
    """Video id -> number of animals when known: the video's max_tracks, the tracking
    max_tracks, or the demo's n_animals for demo videos."""
    out = {}
    for vid, entry in PLAN.videos.items():
        n = entry.max_tracks if entry.max_tracks is not None else config["tracking"]["max_tracks"]
        if n is None and vid in PLAN.demo_videos:
            n = config["demo"]["n_animals"]
        out[vid] = n
    return out


def pose_npz_files():
    """``{"model/split": metrics npz}``: the raw matches behind each metrics file."""
    return {k: p[: -len(".json")] + ".npz" for k, p in pose_metrics_files().items()}


def all_targets():
    """Everything `snakemake` builds by default."""
    targets = list(pose_files().values())
    if config["tracking"]["enabled"]:
        targets += [f"results/tracks/{v}.tracked.csv" for v in PLAN.videos]
    targets += list(pose_metrics_files().values())
    targets += model_files(config["models"])
    targets += list(tracking_metric_files().values())
    targets += [REPORT_OUTPUTS["summary_md"], REPORT_OUTPUTS["summary_json"]]
    targets += clip_files()
    return targets


def clip_files():
    """Labelled clips (report.clips, off by default): a rendering of results, not a result."""
    if not config["report"]["clips"]:
        return []
    return [f"results/report/clips/{v}.mp4" for v in PLAN.videos]


# ----------------------------------------------------------------------------- provenance

PROVENANCE_JSON = "results/provenance.json"


def provenance_config_files():
    """Label -> every config file this run reads (pipeline config(s), model configs, tracker
    config, video manifest)."""
    files = {}
    for i, path in enumerate(dict.fromkeys(str(p) for p in workflow.configfiles)):
        files["pipeline_config" if i == 0 else f"pipeline_config_{i}"] = path
    for model in config["models"]:
        files[f"model_config:{model}"] = model_config_file(model)
    if PLAN.tracker_training is not None and not PLAN.identities_from_model:
        files["tracker_config"] = PLAN.tracker_training.config
    if config["videos"].get("manifest"):
        files["video_manifest"] = config["videos"]["manifest"]
    return files


def provenance_results():
    """Every final result (everything `snakemake` builds except the report itself)."""
    report_files = {REPORT_OUTPUTS["summary_md"], REPORT_OUTPUTS["summary_json"], *clip_files()}
    return [t for t in all_targets() if t not in report_files]


def provenance_seeds():
    """Seeds set in the pipeline config; the models' seeds are read from their configs by the job."""
    seeds = {"seed": config["seed"]}
    if config["demo"]["enabled"]:
        seeds["demo.seed"] = config["demo"]["seed"]
    if PLAN.tracker_training is not None and not PLAN.identities_from_model:
        seeds["tracker"] = PLAN.tracker_training.seed
    return seeds
