"""Plain-Python helpers behind the Snakefile: video lists and ids, config checks, code hashes.

The Snakefile only orchestrates; everything that can go wrong while turning ``config.yaml`` into
a job graph lives here so it is testable without Snakemake and fails at parse time (even on
``snakemake -n``) with a message that names the config key, manifest row or file at fault,
instead of as a missing-input error deep inside the DAG. Nothing here imports Snakemake or
torch, and sleap-io only reads the skeletons in the headers of labels files that already exist:
parsing a config must stay fast for a workflow with hundreds of videos.
"""

from __future__ import annotations

import ast
import csv
import functools
import glob
import hashlib
import os
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

VIDEO_EXTENSIONS = (".mp4", ".avi", ".mov", ".mkv")
ID_PATTERN = r"[A-Za-z0-9_.-]+"
SPLITS_EVALUATED = ("val", "test")
RESULTS_DIR = "results"  # every output of the workflow, in its working directory
DEMO_DIR = "results/demo"
MANIFEST_COLUMNS = ("path", "id", "max_tracks", "ground_truth", "frames")

_ID_RE = re.compile(rf"^{ID_PATTERN}$")
_FRAME_PART = re.compile(r"^(\d+)(?:\s*-\s*(\d+))?$")
_BAD_ID_CHARS = re.compile(r"[^A-Za-z0-9_.-]+")


class WorkflowConfigError(ValueError):
    """A pipeline config that cannot be turned into jobs; the message says where and why."""


@dataclass(frozen=True)
class VideoEntry:
    """One video to predict and track.

    ``source`` says where the video was listed (config key, glob, manifest row) so a collision
    or a missing file can be traced back to the line the user has to fix.
    """

    id: str
    path: str
    source: str
    max_tracks: int | None = None
    ground_truth: str | None = None
    frames: str | None = None  # frame selection such as "0-999" or "0-99,150"; None = all


#: Where rule ``train_tracker`` writes the tracking transformer it trains.
TRACKER_RUN_DIR = "results/tracker/gtr"


@dataclass(frozen=True)
class Plan:
    """Everything the rules need, resolved once from the validated config."""

    videos: dict[str, VideoEntry]
    predictor: list[str]
    eval_model: str
    eval_splits: list[str]
    produced: frozenset[str] = field(default_factory=frozenset)
    demo_models: list[str] = field(default_factory=list)
    demo_videos: list[str] = field(default_factory=list)
    identities_from_model: bool = False  # multi-class predictor: tracking keeps its identities
    tracker_model: str | None = None  # run dir of the tracking transformer (method gtr)
    tracker_training: TrackerTraining | None = None  # set when the DAG trains that model
    given_models: dict[str, Any] = field(default_factory=dict)  # name -> given_models.ModelFolder


@dataclass(frozen=True)
class TrackerTraining:
    """What rule ``train_tracker`` trains the tracking transformer from."""

    config: str
    train_labels: list[str]
    val_labels: list[str]
    seed: int


# --------------------------------------------------------------------------- ids


def sanitize_id(name: str) -> str:
    """Turn a file stem into a wildcard-safe id: runs of other characters become ``_``.

    A leading dot is replaced too, so an id never names a hidden file. Empty results are an
    error because they could not be told apart.
    """
    cleaned = _BAD_ID_CHARS.sub("_", name)
    if cleaned.startswith("."):
        cleaned = "_" + cleaned[1:]
    if not cleaned or not cleaned.strip("_"):
        raise WorkflowConfigError(f"Cannot make a video id from the name {name!r}")
    return cleaned


def is_valid_id(value: str) -> bool:
    """True when ``value`` can be used as a wildcard value as it is."""
    return bool(_ID_RE.match(value)) and not value.startswith(".")


def video_id_for(path: str) -> str:
    """Default id of a video: its file stem (name without the last suffix), sanitised."""
    return sanitize_id(Path(path).stem)


# --------------------------------------------------------------------------- video listing


def _exists(path: str, base_dir: Path) -> bool:
    return (base_dir / path).exists()


def _is_video_file(path: Path) -> bool:
    return (
        path.is_file() and path.suffix.lower() in VIDEO_EXTENSIONS and not path.name.startswith(".")
    )


def expand_video_pattern(pattern: str, base_dir: str | os.PathLike = ".") -> list[str]:
    """Video files named by a glob pattern or a folder, sorted, relative like the pattern.

    A folder means every ``.mp4/.avi/.mov/.mkv`` directly inside it; a pattern keeps only files
    with those extensions (so ``videos/*`` does not pick up labels or notes). ``**`` recurses.
    Matching nothing is an error: a typo must not silently drop all of a user's videos.
    """
    base = Path(base_dir)
    if (base / pattern).is_dir():
        folder = base / pattern
        found = sorted(os.path.join(pattern, p.name) for p in folder.iterdir() if _is_video_file(p))
        if not found:
            raise WorkflowConfigError(
                f"config videos.globs: folder {pattern!r} holds no video files "
                f"({', '.join(VIDEO_EXTENSIONS)})"
            )
        return found
    matches = glob.glob(pattern, root_dir=None if os.path.isabs(pattern) else base, recursive=True)
    found = sorted(m for m in matches if _is_video_file(base / m))
    if not found:
        raise WorkflowConfigError(
            f"config videos.globs: pattern {pattern!r} matched no video files "
            f"({', '.join(VIDEO_EXTENSIONS)})"
        )
    return found


def _parse_max_tracks(value: str, where: str) -> int | None:
    value = value.strip()
    if not value:
        return None
    try:
        number = int(value)
    except ValueError:
        number = 0
    if number < 1:
        raise WorkflowConfigError(f"{where}: max_tracks must be a positive integer, got {value!r}")
    return number


def parse_frames_column(value: str, where: str) -> str | None:
    """Check a frame selection (``"0-999"``, ``"0-99,150"``) and return it without spaces.

    Only the syntax can be checked here, when the workflow is parsed; ``predict_video`` checks
    the frames against the video's length and names the video when one is out of range.
    """
    value = value.strip()
    if not value:
        return None
    parts = []
    for part in (p.strip() for p in value.split(",")):
        match = _FRAME_PART.match(part)
        if not match:
            raise WorkflowConfigError(
                f"{where}: frames {value!r}: cannot read {part!r}; use inclusive ranges and "
                "single frames separated by commas, e.g. 0-999 or 0-99,150"
            )
        start, end = int(match.group(1)), int(match.group(2) or match.group(1))
        if start > end:
            raise WorkflowConfigError(f"{where}: frames {value!r}: range {part!r} runs backwards")
        parts.append(str(start) if match.group(2) is None else f"{start}-{end}")
    return ",".join(parts)


def read_manifest(path: str, base_dir: str | os.PathLike = ".") -> list[VideoEntry]:
    """Read a CSV manifest with a header: ``path`` and optionally ``id``, ``max_tracks``,
    ``ground_truth``, ``frames``.

    Relative paths inside the manifest are relative to the manifest's own folder, so a manifest
    can sit beside its videos and be moved with them. Explicit ids are used as given (they
    must already be wildcard-safe); rows without one get the sanitised file stem. ``frames``
    restricts prediction to a selection of the video's frames; the same video may be listed
    on several rows with different ids and frames, e.g. to split a long recording into jobs.
    """
    base = Path(base_dir)
    manifest = base / path
    if not manifest.is_file():
        raise WorkflowConfigError(f"config videos.manifest: file not found: {path}")
    folder = os.path.dirname(path)
    entries: list[VideoEntry] = []
    with open(manifest, newline="", encoding="utf-8-sig") as fh:
        reader = csv.DictReader(fh)
        header = [h.strip() for h in (reader.fieldnames or [])]
        if "path" not in header:
            raise WorkflowConfigError(
                f"Manifest {path}: the first line must be a header with a 'path' column "
                f"(optional columns: {', '.join(MANIFEST_COLUMNS[1:])}); got {header}"
            )
        unknown = [h for h in header if h not in MANIFEST_COLUMNS]
        if unknown:
            raise WorkflowConfigError(
                f"Manifest {path}: unknown column(s) {unknown}; allowed: {', '.join(MANIFEST_COLUMNS)}"
            )
        for line_no, raw in enumerate(reader, start=2):
            if None in raw:
                raise WorkflowConfigError(
                    f"Manifest {path} line {line_no}: more fields than columns"
                )
            row = {k.strip(): (v or "").strip() for k, v in raw.items() if k is not None}
            if not any(row.values()):
                continue  # blank line
            where = f"Manifest {path} line {line_no}"
            video = row.get("path", "")
            if not video:
                raise WorkflowConfigError(f"{where}: empty 'path'")
            video = _relative_to(folder, video)
            if not _exists(video, base):
                raise WorkflowConfigError(f"{where}: video file not found: {video}")
            vid = row.get("id", "")
            if vid and not is_valid_id(vid):
                raise WorkflowConfigError(
                    f"{where}: id {vid!r} may only use letters, digits, '_', '.', '-' "
                    "and must not start with '.'"
                )
            gt = row.get("ground_truth", "") or None
            if gt is not None:
                gt = _relative_to(folder, gt)
                if not _exists(gt, base):
                    raise WorkflowConfigError(f"{where}: ground_truth file not found: {gt}")
            entries.append(
                VideoEntry(
                    id=vid or video_id_for(video),
                    path=video,
                    source=where,
                    max_tracks=_parse_max_tracks(row.get("max_tracks", ""), where),
                    ground_truth=gt,
                    frames=parse_frames_column(row.get("frames", ""), where),
                )
            )
    if not entries:
        raise WorkflowConfigError(f"Manifest {path} lists no videos")
    return entries


def _relative_to(folder: str, path: str) -> str:
    """``path`` as seen from the working directory when it was written relative to ``folder``."""
    if os.path.isabs(path) or not folder:
        return os.path.normpath(path)
    return os.path.normpath(os.path.join(folder, path))


def collect_videos(
    videos_cfg: Mapping[str, Any],
    base_dir: str | os.PathLike = ".",
    extra: Sequence[VideoEntry] = (),
) -> list[VideoEntry]:
    """All videos of the config (``paths``, ``globs``, ``manifest``) plus ``extra`` (demo).

    The same file listed twice (say by a path and a glob) is kept once. Two different files
    with the same id is an error naming both, since their outputs would overwrite each other.
    """
    base = Path(base_dir)
    entries: list[VideoEntry] = list(extra)
    for i, path in enumerate(videos_cfg.get("paths") or []):
        where = f"config videos.paths[{i}]"
        if (base / path).is_dir():
            raise WorkflowConfigError(
                f"{where}: {path} is a folder; list folders under videos.globs"
            )
        if not _exists(path, base):
            raise WorkflowConfigError(f"{where}: video file not found: {path}")
        entries.append(VideoEntry(id=video_id_for(path), path=os.path.normpath(path), source=where))
    for i, pattern in enumerate(videos_cfg.get("globs") or []):
        for path in expand_video_pattern(pattern, base):
            where = f"config videos.globs[{i}] ({pattern!r})"
            entries.append(
                VideoEntry(id=video_id_for(path), path=os.path.normpath(path), source=where)
            )
    if videos_cfg.get("manifest"):
        entries.extend(read_manifest(videos_cfg["manifest"], base))
    return _dedupe(entries, base)


def _dedupe(entries: Iterable[VideoEntry], base: Path) -> list[VideoEntry]:
    by_id: dict[str, VideoEntry] = {}
    for entry in entries:
        other = by_id.get(entry.id)
        if other is None:
            by_id[entry.id] = entry
            continue
        if _same_file(other.path, entry.path, base):
            if other.frames and entry.frames and other.frames != entry.frames:
                raise WorkflowConfigError(
                    f"Two entries give the id {entry.id!r} to {entry.path} with different "
                    f"frames: {other.frames!r} (from {other.source}) and {entry.frames!r} "
                    f"(from {entry.source}). Give each selection its own 'id'."
                )
            if (
                entry.max_tracks is not None
                or entry.ground_truth is not None
                or entry.frames is not None
            ):
                by_id[entry.id] = replace(
                    other,
                    max_tracks=entry.max_tracks
                    if entry.max_tracks is not None
                    else other.max_tracks,
                    ground_truth=entry.ground_truth or other.ground_truth,
                    frames=entry.frames or other.frames,
                )
            continue
        raise WorkflowConfigError(
            f"Two videos get the id {entry.id!r}: {other.path} (from {other.source}) and "
            f"{entry.path} (from {entry.source}). Rename one, or list them in a manifest with "
            "an explicit 'id' column."
        )
    return list(by_id.values())


def _same_file(a: str, b: str, base: Path) -> bool:
    pa, pb = base / a, base / b
    if pa.exists() and pb.exists():
        return os.path.samefile(pa, pb)
    return os.path.normpath(a) == os.path.normpath(b)


def attach_ground_truth(
    videos: Sequence[VideoEntry],
    mapping: Mapping[str, str] | None,
    base_dir: str | os.PathLike = ".",
    produced: Iterable[str] = (),
) -> list[VideoEntry]:
    """Apply ``config ground_truth`` (video id -> tracked .slp with true identities)."""
    mapping = dict(mapping or {})
    base = Path(base_dir)
    produced = set(produced)
    ids = {v.id for v in videos}
    for vid, path in mapping.items():
        if vid not in ids:
            raise WorkflowConfigError(
                f"config ground_truth.{vid}: no video has the id {vid!r} "
                f"(known ids: {', '.join(sorted(ids)) or 'none'})"
            )
        if os.path.normpath(path) not in produced and not _exists(path, base):
            raise WorkflowConfigError(f"config ground_truth.{vid}: file not found: {path}")
    return [replace(v, ground_truth=mapping[v.id]) if v.id in mapping else v for v in videos]


# --------------------------------------------------------------------------- demo


def demo_outputs(demo_ids: Sequence[str], demo_dir: str = DEMO_DIR) -> dict[str, Any]:
    """Paths the ``make_demo`` rule writes, known before it runs."""
    return {
        "labels": f"{demo_dir}/labels.slp",
        "videos": [f"{demo_dir}/videos/{i}.mp4" for i in demo_ids],
        "ground_truth": [f"{demo_dir}/ground_truth/{i}.slp" for i in demo_ids],
    }


def demo_video_entries(demo_ids: Sequence[str], demo_dir: str = DEMO_DIR) -> list[VideoEntry]:
    """The demo videos as video entries, each with its ground-truth tracks."""
    out = demo_outputs(demo_ids, demo_dir)
    return [
        VideoEntry(id=vid, path=path, source="demo (config demo.enabled)", ground_truth=gt)
        for vid, path, gt in zip(demo_ids, out["videos"], out["ground_truth"], strict=True)
    ]


# --------------------------------------------------------------------------- config checks


def check_config_schema(config: Mapping[str, Any], schema_path: str | os.PathLike) -> None:
    """Check the config against the workflow's JSON schema, reporting every problem at once.

    Snakemake's own ``validate`` stops at the first problem and words it for schema authors
    ("Additional properties are not allowed"); this names each key as written in the YAML,
    suggests the key or value probably meant (like the training-config loader) and says what
    type was expected and what was found. ``validate`` still runs afterwards to fill defaults.
    """
    import jsonschema

    from pipeline_lib.config.yaml_io import load_yaml

    schema = load_yaml(schema_path)
    validator = jsonschema.Draft202012Validator(schema)
    problems: list[str] = []
    for error in validator.iter_errors(config):
        problems.extend(_schema_problem(error))
    if problems:
        problems = sorted(dict.fromkeys(problems))
        if len(problems) == 1:
            raise WorkflowConfigError(problems[0])
        raise WorkflowConfigError(
            f"{len(problems)} problems:\n" + "\n".join(f"  - {p}" for p in problems)
        )


def _config_key(path: Iterable[Any]) -> str:
    """``tracking.gtr.seed`` / ``videos.paths[0]``: a schema error's place as written in YAML."""
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


_JSON_TYPES = {
    dict: "a mapping",
    list: "a list",
    str: "a string",
    bool: "true/false",
    int: "an integer",
    float: "a number",
    type(None): "null",
}


_SCHEMA_TYPES = {
    "object": "a mapping",
    "array": "a list",
    "string": "a string",
    "boolean": "true/false",
    "integer": "an integer",
    "number": "a number",
    "null": "null",
}


def _schema_problem(error: Any) -> list[str]:
    """One jsonschema error as messages naming the config key (several for unknown keys)."""
    from pipeline_lib.config.loader import did_you_mean

    key = _config_key(error.absolute_path)
    where = f"config {key}" if key else "config"
    kind = _JSON_TYPES.get(type(error.instance), type(error.instance).__name__)
    found = f"{error.instance!r} ({kind})"
    if error.validator == "additionalProperties" and isinstance(error.instance, Mapping):
        allowed = list(error.schema.get("properties") or {})
        out = []
        for extra in sorted(k for k in error.instance if k not in allowed):
            hint = did_you_mean(extra, allowed)
            tail = hint if hint else f"; valid keys here: {', '.join(allowed)}"
            out.append(f"config {key + '.' if key else ''}{extra}: unknown key{tail}")
        return out or [f"{where}: {error.message}"]
    if error.validator == "type":
        expected = error.validator_value
        expected = expected if isinstance(expected, list) else [expected]
        expected = " or ".join(_SCHEMA_TYPES.get(t, t) for t in expected)
        return [f"{where}: expected {expected}, got {found}"]
    if error.validator == "enum":
        allowed = [str(v) for v in error.validator_value]
        hint = did_you_mean(error.instance, allowed) if isinstance(error.instance, str) else ""
        return [f"{where}: {error.instance!r} is not one of {', '.join(allowed)}{hint}"]
    if error.validator == "required":
        return [f"{where}: {error.message}"]
    return [f"{where}: {error.message} (got {found})"]


def check_datasets(
    datasets: Mapping[str, Mapping[str, Any]],
    base_dir: str | os.PathLike = ".",
    produced: Iterable[str] = (),
) -> None:
    """Every labels file exists (or is made by the workflow) and the fractions leave a train set."""
    base = Path(base_dir)
    produced = {os.path.normpath(p) for p in produced}
    if not datasets:
        return  # nothing to train (models given by run_dir); check_models names a missing one
    for name, ds in datasets.items():
        labels = ds.get("labels") or []
        if not labels:
            raise WorkflowConfigError(
                f"config datasets.{name}.labels: list at least one labels file"
            )
        paths = [(f"config datasets.{name}.labels[{i}]", p) for i, p in enumerate(labels)]
        if ds.get("test_labels"):
            paths.append((f"config datasets.{name}.test_labels", ds["test_labels"]))
        for where, path in paths:
            if os.path.normpath(path) in produced or _exists(path, base):
                continue
            hint = ""
            if os.path.normpath(path).startswith(os.path.normpath(DEMO_DIR)):
                hint = f" ({DEMO_DIR}/ is only made when demo.enabled is true)"
            raise WorkflowConfigError(f"{where}: labels file not found: {path}{hint}")
        val = float(ds.get("validation_fraction", 0.0))
        test = 0.0 if ds.get("test_labels") else float(ds.get("test_fraction", 0.0))
        if val + test >= 1.0:
            raise WorkflowConfigError(
                f"config datasets.{name}: validation_fraction + test_fraction = {val + test:g} "
                "leaves no frames to train on; keep the sum below 1"
            )


def check_labels_skeletons(
    datasets: Mapping[str, Mapping[str, Any]],
    models: Mapping[str, Mapping[str, Any]],
    base_dir: str | os.PathLike = ".",
    produced: Iterable[str] = (),
) -> None:
    """The labels files of each dataset share one skeleton, and every model's training config
    names only nodes of it (``part_names``, ``anchor_part``, bottom-up ``edges``).

    Read from the headers of the labels files that exist now, so a mismatch fails on
    ``snakemake -n`` rather than in ``train_model`` after the split and the image cache were
    made. Files the workflow makes (the demo labels) are checked when ``split_labels`` reads
    them. Also turns an unreadable labels file (truncated, not HDF5) into a parse-time error.
    """
    from pipeline_lib.config import ConfigError, load_training_config
    from pipeline_lib.config.skeleton_fit import skeleton_problems
    from pipeline_lib.io.labels import LabelsError, read_skeleton_nodes

    base = Path(base_dir)
    produced = {os.path.normpath(p) for p in produced}
    skeleton_of: dict[str, tuple[str, list[str]]] = {}
    for name, ds in datasets.items():
        files = [(f"config datasets.{name}.labels[{i}]", p) for i, p in enumerate(ds["labels"])]
        if ds.get("test_labels"):
            files.append((f"config datasets.{name}.test_labels", ds["test_labels"]))
        first: tuple[str, str, list[str]] | None = None
        for where, path in files:
            if os.path.normpath(path) in produced:
                continue
            try:
                nodes = read_skeleton_nodes(base / path)
            except LabelsError as exc:
                raise WorkflowConfigError(f"{where}: {exc}") from None
            if first is None:
                first = (where, path, nodes)
            elif nodes != first[2]:
                raise WorkflowConfigError(
                    f"config datasets.{name}: the skeleton of {path} ({where}, nodes {nodes}) "
                    f"differs from that of {first[1]} ({first[0]}, nodes {first[2]}); the labels "
                    "files of a dataset must share one skeleton"
                )
        if first is not None:
            skeleton_of[name] = (first[1], first[2])
    for name, model in models.items():
        known = skeleton_of.get(model.get("dataset"))
        if known is None:
            continue
        try:
            cfg = load_training_config(base / model["config"])
        except ConfigError:
            continue  # reported by check_models, with the model's key
        problems = skeleton_problems(cfg, known[1])
        if problems:
            raise WorkflowConfigError(
                f"config models.{name}.config ({model['config']}): "
                + "; ".join(problems)
                + f" (skeleton of {known[0]}, dataset {model['dataset']})"
            )


def check_models(
    models: Mapping[str, Mapping[str, Any]],
    datasets: Mapping[str, Any],
    predictor: Sequence[str],
    base_dir: str | os.PathLike = ".",
    given: Mapping[str, Any] | None = None,
) -> list[str]:
    """Models name existing datasets and config files; the predictor names existing models.
    ``given`` holds the checked ``run_dir`` models (:mod:`pipeline_lib.given_models`).

    Returns the model types of the predictor's models.
    """
    base = Path(base_dir)
    given = given or {}
    model_types: dict[str, str] = {n: g.model_type for n, g in given.items()}
    if not models:
        raise WorkflowConfigError("config models: no model defined")
    for name, model in models.items():
        if not is_valid_id(name):
            raise WorkflowConfigError(
                f"config models.{name}: model names may only use letters, digits, '_', '.', '-'"
            )
        if name in given:
            continue
        if model.get("dataset") not in datasets:
            raise WorkflowConfigError(
                f"config models.{name}.dataset: unknown dataset {model.get('dataset')!r} "
                f"(defined: {', '.join(datasets) or 'none'})"
            )
        cfg = model.get("config")
        if not cfg or not _exists(cfg, base):
            raise WorkflowConfigError(
                f"config models.{name}.config: training config not found: {cfg}"
            )
        model_types[name] = _training_config_model_type(name, base / cfg, base)
    if not predictor:
        raise WorkflowConfigError("config predictor.models: list one or two models")
    for i, name in enumerate(predictor):
        if name not in models:
            raise WorkflowConfigError(
                f"config predictor.models[{i}]: unknown model {name!r} "
                f"(defined: {', '.join(models)})"
            )
    if len(set(predictor)) != len(predictor):
        raise WorkflowConfigError(
            f"config predictor.models: a model is listed twice: {list(predictor)}"
        )
    types = [model_types[name] for name in predictor]
    if types not in PREDICTOR_KINDS:
        kinds = "; ".join(" + ".join(k) for k in PREDICTOR_KINDS)
        raise WorkflowConfigError(
            f"config predictor.models: {list(predictor)} are of types {types}; a predictor is "
            f"one of: {kinds}"
        )
    return types


# Model-type sequences that make a predictor, and those whose output already carries identities.
PREDICTOR_KINDS = (
    ["single_instance"],
    ["centroid", "centered_instance"],
    ["bottomup"],
    ["multi_class_bottomup"],
    ["centroid", "multi_class_topdown"],
)
IDENTITY_HEADS = ("multi_class_bottomup", "multi_class_topdown")


def _training_config_model_type(name: str, path: Path, base: Path = Path(".")) -> str:
    """Load a model's training config strictly (so typos fail at parse time) and check the
    weights files it starts from exist; return its type."""
    from pipeline_lib.config import ConfigError, load_training_config, model_type

    try:
        cfg = load_training_config(path)
        kind = model_type(cfg)
    except ConfigError as exc:
        raise WorkflowConfigError(f"config models.{name}.config: {exc}") from None
    for part in ("backbone", "head"):
        weights = getattr(cfg.model_config, f"pretrained_{part}_weights")
        if weights and not (base / Path(weights).expanduser()).is_file():
            raise WorkflowConfigError(
                f"config models.{name}.config ({path}): model_config.pretrained_{part}_weights: "
                f"no weights file at {weights}"
            )
    return kind


def given_eval_splits(folder: Any) -> list[str]:
    """A given model is evaluated (as split ``test``) only on the labels ``evaluate_on`` names."""
    return ["test"] if folder.evaluate_on else []


def check_output_folders(
    folders: Iterable[str] = (RESULTS_DIR,), base_dir: str | os.PathLike = "."
) -> None:
    """Fail at parse time, naming the folder and the reason, when an output folder cannot be
    written: otherwise the first job to finish would fail after its work was done."""
    from pipeline_lib.io.atomic import check_writable_folder

    for folder in folders:
        try:
            check_writable_folder(Path(base_dir) / folder)
        except OSError as exc:
            raise WorkflowConfigError(str(exc)) from None


def eval_splits(dataset: Mapping[str, Any]) -> list[str]:
    """Splits worth evaluating: ``val`` always, ``test`` only when it can hold frames."""
    has_test = bool(dataset.get("test_labels")) or float(dataset.get("test_fraction", 0)) > 0
    return [s for s in SPLITS_EVALUATED if s != "test" or has_test]


def build_plan(
    config: Mapping[str, Any],
    demo_ids: Sequence[str] = (),
    base_dir: str | os.PathLike = ".",
) -> Plan:
    """Check a schema-validated config and resolve videos, predictor and evaluation targets.

    ``demo_ids`` are the demo video ids (``demo.enabled``); their files are produced by the
    workflow, so they are not required to exist yet.
    """
    base = Path(base_dir)
    demo_cfg = config.get("demo") or {}
    demo_on = bool(demo_cfg.get("enabled"))
    demo_ids = list(demo_ids) if demo_on else []
    outs = demo_outputs(demo_ids)
    produced = frozenset(
        os.path.normpath(p)
        for p in ([outs["labels"]] if demo_on else []) + outs["videos"] + outs["ground_truth"]
    )
    datasets = config.get("datasets") or {}
    models = config.get("models") or {}
    predictor = list((config.get("predictor") or {}).get("models") or [])
    check_datasets(datasets, base, produced)
    from pipeline_lib.given_models import (
        check_evaluate_on,
        check_topdown_pair,
        check_video_channels,
        describe_trained_model,
        inspect_given_models,
    )

    given = inspect_given_models(models, base)
    predictor_types = check_models(models, datasets, predictor, base, given)
    if given:  # a given model with one trained here: compare what the trained one will be
        trained = {
            n: describe_trained_model(models[n], datasets, base, produced)
            for n in predictor
            if n in models and n not in given
        }
        check_topdown_pair(predictor, {**{n: t for n, t in trained.items() if t}, **given})
    check_evaluate_on(given, predictor)
    check_labels_skeletons(datasets, models, base, produced)

    videos_cfg = config.get("videos") or {}
    extra = (
        demo_video_entries(demo_ids) if demo_ids and videos_cfg.get("include_demo", True) else []
    )
    videos = collect_videos(videos_cfg, base, extra)
    videos = attach_ground_truth(videos, config.get("ground_truth"), base, produced)
    check_video_channels(given, predictor, {v.id: v.path for v in videos if v.path not in produced})

    eval_model = predictor[-1]
    demo_labels = os.path.normpath(outs["labels"])
    demo_models = [
        name
        for name, m in models.items()
        if demo_on
        and name not in given
        and any(os.path.normpath(p) == demo_labels for p in datasets[m["dataset"]]["labels"])
    ]
    tracker_model, tracker_training = check_tracker_model(
        config.get("tracking") or {}, datasets, base, produced
    )
    return Plan(
        videos={v.id: v for v in videos},
        predictor=predictor,
        eval_model=eval_model,
        eval_splits=given_eval_splits(given[eval_model])
        if eval_model in given
        else eval_splits(datasets[models[eval_model]["dataset"]]),
        produced=produced,
        demo_models=[m for m in demo_models if m == eval_model],
        demo_videos=[v.id for v in extra],
        identities_from_model=predictor_types[-1] in IDENTITY_HEADS,
        tracker_model=tracker_model,
        tracker_training=tracker_training,
        given_models=given,
    )


def check_tracker_model(
    tracking: Mapping[str, Any],
    datasets: Mapping[str, Any],
    base: Path,
    produced: frozenset[str] = frozenset(),
) -> tuple[str | None, TrackerTraining | None]:
    """The tracking transformer's run directory and, when the DAG trains it, how.

    ``tracking.gtr.model`` names a trained run directory; ``tracking.gtr.config`` a training
    config that rule ``train_tracker`` trains into ``TRACKER_RUN_DIR`` on ``train_labels``
    (default: the labels of every dataset, which must carry tracks). Exactly one of the two.
    """
    if tracking.get("method") != "gtr":
        return None, None
    gtr = tracking.get("gtr") or {}
    model, cfg = gtr.get("model"), gtr.get("config")
    if bool(model) == bool(cfg):
        raise WorkflowConfigError(
            "tracking.method gtr needs exactly one of tracking.gtr.model (a trained tracker run "
            "directory) and tracking.gtr.config (a training config for rule train_tracker)"
        )
    if model:
        for name in ("best.ckpt", "tracker_config.yaml"):
            if not (base / model / name).exists():
                raise WorkflowConfigError(
                    f"tracking.gtr.model: {model} has no {name}; is it a trained tracker run "
                    "directory (pipeline-lib train-tracker)?"
                )
        return model, None
    if not (base / cfg).is_file():
        raise WorkflowConfigError(f"tracking.gtr.config: no file at {cfg}")
    train = list(gtr.get("train_labels") or [])
    if not train:
        train = list(dict.fromkeys(p for d in datasets.values() for p in d.get("labels") or []))
    val = list(gtr.get("val_labels") or [])
    for key, paths in (("train_labels", train), ("val_labels", val)):
        for path in paths:
            if os.path.normpath(path) not in produced and not (base / path).exists():
                raise WorkflowConfigError(f"tracking.gtr.{key}: file not found: {path}")
    return TRACKER_RUN_DIR, TrackerTraining(cfg, train, val, int(gtr.get("seed") or 0))


# --------------------------------------------------------------------------- code version


def _module_file(module: str, package_root: Path) -> Path | None:
    """Source file of ``module`` (dotted, starting with the package name) under package_root."""
    parts = module.split(".")
    if parts[0] != package_root.name:
        return None
    rel = Path(*parts[1:]) if len(parts) > 1 else Path()
    as_package = package_root / rel / "__init__.py"
    as_module = package_root / rel.with_suffix(".py") if len(parts) > 1 else None
    if as_module is not None and as_module.is_file():
        return as_module
    if as_package.is_file():
        return as_package
    return None


def _imported_modules(path: Path, module: str, is_package: bool) -> frozenset[str]:
    """Dotted names a module imports (absolute and resolved relative), plus ``a.b`` for
    ``from a import b`` since ``b`` may be a submodule.

    Every rule's ``code`` param walks the package, mostly through the same modules, so the
    parse is remembered per file version (parsing was 60 % of a no-op rerun's time).
    """
    stat = path.stat()
    return _parsed_imports(path, stat.st_mtime_ns, stat.st_size, module, is_package)


@functools.lru_cache(maxsize=4096)
def _parsed_imports(
    path: Path, mtime_ns: int, size: int, module: str, is_package: bool
) -> frozenset[str]:
    """:func:`_imported_modules` for one version (mtime, size) of the file."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    package = module if is_package else module.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                anchor = package.split(".")
                anchor = anchor[: len(anchor) - (node.level - 1)]
                target = ".".join(anchor + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            found.add(target)
            found.update(f"{target}.{alias.name}" for alias in node.names if alias.name != "*")
    return frozenset(found)


def module_closure(entry: str, package_root: str | os.PathLike) -> list[Path]:
    """Source files of ``entry`` and of every module of the package it imports, transitively.

    Parent ``__init__.py`` files are included because importing a submodule runs them. Imports
    made by string at run time (``importlib``) are not seen.
    """
    root = Path(package_root)
    files: set[Path] = set()
    todo = [entry]
    seen: set[str] = set()
    while todo:
        module = todo.pop()
        if module in seen:
            continue
        seen.add(module)
        path = _module_file(module, root)
        if path is None:
            if module == entry:
                raise WorkflowConfigError(f"Module {entry} not found under {root}")
            continue
        files.add(path)
        parts = module.split(".")
        todo.extend(".".join(parts[:i]) for i in range(1, len(parts)))
        is_package = path.name == "__init__.py"
        todo.extend(
            m for m in _imported_modules(path, module, is_package) if m.split(".")[0] == root.name
        )
    return sorted(files)


def code_version(entry: str, package_root: str, version: str) -> str:
    """``{version}+{hash}``: the package version plus a 12-hex hash of the source files
    ``entry`` depends on.

    Passed as a rule param, it reruns a stage when (and only when) code it runs has changed,
    so editing the report builder does not retrain models.
    """
    root = Path(package_root)
    digest = hashlib.sha256()
    for path in module_closure(entry, root):
        digest.update(path.relative_to(root.parent).as_posix().encode())
        digest.update(b"\0")
        digest.update(path.read_bytes())
        digest.update(b"\0")
    return f"{version}+{digest.hexdigest()[:12]}"
