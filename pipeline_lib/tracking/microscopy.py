"""Readers for microscopy tracking ground truth, as a DREEM-style tracker's dataset sections name it.

Why: microscopy tracking data arrives as raw frames plus ground truth in one of several community
formats -- Cell Tracking Challenge label masks (``CellTrackingDataset``: ``raw_images``,
``gt_images``, ``gt_list``), ISBI 2012 particle-tracking XML, TrackMate CSV/XML and icy track XML
(``MicroscopyDataset``: ``videos``, ``tracks``, ``source``). Every reader here returns the same
thing, so trackers, metrics and the rest of the pipeline never see the format:

* a :class:`sleap_io.Labels` with a one-node skeleton (node ``"centroid"``);
* one :class:`sleap_io.Track` per ground-truth track, named by its id as a string (ISBI particles
  have no id: they are named by their 0-based order in the file);
* one user :class:`sleap_io.Instance` (ground truth, not a prediction) per detection, with its
  track set, in one :class:`sleap_io.LabeledFrame` per frame index that has detections.

Conventions (shared by all readers):

* Frame indices are 0-based. Where a format counts from 1 (ImageJ's "Slice n°" in the
  Manual-Tracking style table that DREEM's TrackMate example uses) the reader subtracts 1.
* Coordinates are pixels, ``x`` = column and ``y`` = row, pixel centres at integers (the CTC
  centroid of a label is the mean column/row index of its pixels). TrackMate XML positions are
  calibrated (e.g. microns) and are divided by the file's own pixel size; CSV exports carry no
  calibration and are taken as they are.
* The labels are 2D. A ``z`` coordinate, where the format has one, is dropped after its range is
  recorded in ``labels.provenance["z_range"]`` (a warning is logged when it is not constant).
* With images, frame ``i`` of the labels is image ``i`` of the sequence (frame order from the
  number in each file name, see :func:`image_sequence`), so the sequence is expected to start at
  the track file's frame 0. Detections in frames past the last image are dropped by default
  (``outside_video="drop"``; counted in ``provenance["dropped_outside_video"]``) -- the shared ISBI
  assets, for example, ship 9 frames of a 100-frame ground truth -- or rejected with
  ``outside_video="error"``.
* Without images the labels still need a video: sleap-io 0.9.5 lets a ``LabeledFrame`` be built
  with ``video=None`` but ``save_slp`` then fails (``None is not in list``), so a placeholder
  ``sio.Video(filename=<the track file>, backend=None, open_backend=False)`` stands in.
* Two detections of one track in one frame (a track that restarts, a TrackMate split) are kept
  as two instances and listed in ``provenance["duplicate_track_frames"]`` as ``[track, frame]``.

Errors name the file and the offending line, element or column: a missing file raises
:class:`FileNotFoundError`, anything malformed or inconsistent :class:`ValueError`.
"""

from __future__ import annotations

import csv
import io
import logging
import math
import os
import re
import xml.etree.ElementTree as ET
from collections import Counter
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import sleap_io as sio
from PIL import Image

log = logging.getLogger(__name__)

PathLike = str | os.PathLike[str]
ImagesArg = PathLike | Sequence[PathLike] | None

__all__ = [
    "CENTROID_NODE",
    "SOURCES",
    "image_sequence",
    "read_cell_tracking_challenge",
    "read_icy_xml",
    "read_isbi_xml",
    "read_microscopy_tracks",
    "read_trackmate",
]

CENTROID_NODE = "centroid"
SOURCES = ("trackmate", "isbi", "icy", "ctc")
IMAGE_SUFFIXES = frozenset({".tif", ".tiff", ".png", ".jpg", ".jpeg", ".bmp"})
_OUTSIDE_VIDEO = ("drop", "error")

# A "t<digits>" token standing on its own (ISBI "... t004 z0.tif", CTC "t004.tif").
_T_TOKEN = re.compile(r"(?<![A-Za-z0-9])[tT](\d+)(?![0-9])")
_DIGITS = re.compile(r"\d+")


# --------------------------------------------------------------------------------------------
# Image sequences
# --------------------------------------------------------------------------------------------


def image_sequence(
    folder_or_paths: PathLike | Sequence[PathLike], pattern_hint: str | None = None
) -> list[Path]:
    """Frame files in frame order, the order taken from the number in each file name.

    Why: directory listings (and globs) come back in arbitrary or lexicographic order, so
    ``frame_10.tif`` may precede ``frame_2.tif``; the frame number in the name is the only
    reliable order.

    ``folder_or_paths`` is a folder (its image files -- ``.tif``, ``.tiff``, ``.png``, ``.jpg``,
    ``.jpeg``, ``.bmp``, hidden files excepted -- are used; other files such as an XML ground
    truth are ignored) or a list of files. The frame number is, by default, the number of a
    free-standing ``t<digits>`` token when every name has one (ISBI ``... t004 z0.tif`` -> 4, CTC
    ``t004.tif`` -> 4), else the last run of digits in the name without its suffix
    (``frame_0003.tif`` -> 3). ``pattern_hint`` overrides this: a regular expression searched in
    the file name whose group named ``frame`` (or else its first group) is the number, e.g.
    ``r"frame_(\\d+)"``.

    Raises FileNotFoundError for a missing folder or file, and ValueError (naming the files) for
    a name without a frame number, two files with one number, or a gap in the numbers.
    """
    return [path for _, path in _numbered_images(folder_or_paths, pattern_hint)]


def _numbered_images(
    folder_or_paths: PathLike | Sequence[PathLike], pattern_hint: str | None = None
) -> list[tuple[int, Path]]:
    """``(frame number, path)`` pairs sorted by number, checked for duplicates and gaps."""
    paths = _list_images(folder_or_paths)
    numbers = _frame_numbers(paths, pattern_hint)
    pairs = sorted(zip(numbers, paths, strict=True), key=lambda pair: pair[0])
    by_number: dict[int, list[Path]] = {}
    for number, path in pairs:
        by_number.setdefault(number, []).append(path)
    duplicated = {n: ps for n, ps in by_number.items() if len(ps) > 1}
    if duplicated:
        number, clash = min(duplicated.items())
        raise ValueError(
            f"frame number {number} is shared by {len(clash)} files: "
            + ", ".join(str(p) for p in clash)
        )
    for (n0, p0), (n1, p1) in zip(pairs, pairs[1:], strict=False):
        if n1 != n0 + 1:
            missing = f"{n0 + 1}" if n1 == n0 + 2 else f"{n0 + 1}-{n1 - 1}"
            raise ValueError(
                f"gap in the image sequence: frame {missing} missing between {p0} (frame {n0}) "
                f"and {p1} (frame {n1})"
            )
    return pairs


def _list_images(folder_or_paths: PathLike | Sequence[PathLike]) -> list[Path]:
    if isinstance(folder_or_paths, str | os.PathLike):
        folder = Path(folder_or_paths)
        if not folder.exists():
            raise FileNotFoundError(f"image folder or file not found: {folder}")
        if folder.is_file():
            return [folder]
        paths = [
            p
            for p in folder.iterdir()
            if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith(".")
        ]
        if not paths:
            raise ValueError(
                f"no image files ({', '.join(sorted(IMAGE_SUFFIXES))}) in folder {folder}"
            )
        return paths
    paths = [Path(p) for p in folder_or_paths]
    if not paths:
        raise ValueError("empty list of image files")
    for path in paths:
        if not path.is_file():
            raise FileNotFoundError(f"image file not found: {path}")
    return paths


def _frame_numbers(paths: Sequence[Path], pattern_hint: str | None) -> list[int]:
    if pattern_hint is not None:
        pattern = re.compile(pattern_hint)
        if pattern.groups == 0:
            raise ValueError(f"pattern_hint {pattern_hint!r} has no capturing group")
        group: str | int = "frame" if "frame" in pattern.groupindex else 1
        numbers = []
        for path in paths:
            match = pattern.search(path.name)
            if match is None or match.group(group) is None:
                raise ValueError(f"pattern_hint {pattern_hint!r} does not match file {path}")
            try:
                numbers.append(int(match.group(group)))
            except ValueError:
                raise ValueError(
                    f"pattern_hint {pattern_hint!r} captures {match.group(group)!r} in file "
                    f"{path}, not a frame number"
                ) from None
        return numbers
    t_tokens = [_T_TOKEN.findall(path.stem) for path in paths]
    if all(t_tokens):
        return [int(tokens[-1]) for tokens in t_tokens]
    numbers = []
    for path in paths:
        runs = _DIGITS.findall(path.stem)
        if not runs:
            raise ValueError(f"no frame number in file name {path}")
        numbers.append(int(runs[-1]))
    return numbers


def _load_video(images: PathLike | Sequence[PathLike]) -> sio.Video:
    """A video over ``images``: a folder or list of frame files, or one multi-page tif stack."""
    if isinstance(images, str | os.PathLike) and Path(images).is_file():
        path = Path(images)
        stack = _tif_stack_shape(path)
        if stack is not None:
            return _stack_video(path, stack)
    paths = image_sequence(images)
    return sio.load_video([str(p) for p in paths])


def _tif_stack_shape(path: Path) -> tuple[int, int, int, int] | None:
    """``(frames, height, width, channels)`` of a multi-page tif, or None for anything else."""
    if path.suffix.lower() not in {".tif", ".tiff"}:
        return None
    try:
        with Image.open(path) as image:
            n_frames = getattr(image, "n_frames", 1)
            if n_frames < 2:
                return None
            first = np.asarray(image)
    except OSError as exc:
        raise ValueError(f"cannot read image file {path}: {exc}") from exc
    channels = 1 if first.ndim == 2 else first.shape[2]
    return (n_frames, first.shape[0], first.shape[1], channels)


def _stack_video(path: Path, shape: tuple[int, int, int, int]) -> sio.Video:
    """A multi-page tif as a video.

    sleap-io 0.9.5 mis-detects multi-page tifs when imageio reads them through tifffile (its
    page test ``imread(index=1)`` fails, so the stack is taken for one frame and the shape is
    transposed); the layout and shape are therefore given explicitly. sleap-io re-detects them
    when the labels are loaded back from ``.slp``, so save image sequences rather than stacks.
    """
    from sleap_io.io.video_reading import TiffVideo

    backend = TiffVideo(str(path), format="THW", cached_shape=shape)
    return sio.Video(filename=str(path), backend=backend)


# --------------------------------------------------------------------------------------------
# The common output
# --------------------------------------------------------------------------------------------


def _build_labels(
    *,
    track_names: Sequence[str],
    frames: Sequence[int],
    xs: Sequence[float],
    ys: Sequence[float],
    zs: Sequence[float] | None,
    source: Path,
    source_format: str,
    video: sio.Video | None,
    outside_video: str = "drop",
    provenance: dict[str, Any] | None = None,
) -> sio.Labels:
    """Labels from one row per detection (track name, 0-based frame, x, y and optional z)."""
    if outside_video not in _OUTSIDE_VIDEO:
        raise ValueError(f"outside_video must be one of {_OUTSIDE_VIDEO}, not {outside_video!r}")
    names = list(track_names)
    frame_arr = np.asarray(frames, dtype=np.int64).reshape(-1)
    xy = np.column_stack(
        [np.asarray(xs, dtype=np.float64).reshape(-1), np.asarray(ys, dtype=np.float64)]
    ).reshape(-1, 2)
    prov: dict[str, Any] = {"source_file": str(source), "source_format": source_format}
    if zs is not None:
        z = np.asarray(zs, dtype=np.float64)
        z = z[np.isfinite(z)]
        if z.size:
            prov["z_range"] = [float(z.min()), float(z.max())]
            if z.min() != z.max():
                log.warning(
                    "%s: z varies from %g to %g; the labels are 2D and keep x, y only",
                    source,
                    z.min(),
                    z.max(),
                )
    if video is None:
        video = sio.Video(filename=str(source), backend=None, open_backend=False)
    else:
        n_images = len(video)
        outside = frame_arr >= n_images
        if outside.any():
            first = int(np.flatnonzero(outside)[0])
            message = (
                f"{source}: {int(outside.sum())} detections lie in frames past the "
                f"{n_images} images given (first: track {names[first]}, frame "
                f"{int(frame_arr[first])})"
            )
            if outside_video == "error":
                raise ValueError(message)
            log.warning("%s; dropped", message)
            prov["dropped_outside_video"] = int(outside.sum())
            keep = ~outside
            frame_arr, xy = frame_arr[keep], xy[keep]
            names = [name for name, k in zip(names, keep.tolist(), strict=True) if k]

    tracks: dict[str, sio.Track] = {}
    for name in names:
        if name not in tracks:
            tracks[name] = sio.Track(name=name)
    pair_counts = Counter(zip(names, frame_arr.tolist(), strict=True))
    duplicates = sorted(
        ([name, frame] for (name, frame), count in pair_counts.items() if count > 1),
        key=lambda pair: (pair[1], pair[0]),
    )
    if duplicates:
        log.warning(
            "%s: %d (track, frame) pairs hold more than one detection, e.g. track %s frame %d",
            source,
            len(duplicates),
            duplicates[0][0],
            duplicates[0][1],
        )
        prov["duplicate_track_frames"] = duplicates
    if provenance:
        prov.update(provenance)

    skeleton = sio.Skeleton([CENTROID_NODE])
    order = np.argsort(frame_arr, kind="stable")
    sorted_frames = frame_arr[order]
    if len(order):
        starts = np.flatnonzero(np.r_[True, sorted_frames[1:] != sorted_frames[:-1]])
    else:  # every detection fell past the images
        starts = np.zeros(0, dtype=np.int64)
    ends = np.r_[starts[1:], len(order)][: len(starts)]
    labeled_frames = []
    for start, end in zip(starts.tolist(), ends.tolist(), strict=True):
        rows = order[start:end].tolist()
        instances = [
            sio.Instance.from_numpy(xy[row : row + 1], skeleton=skeleton, track=tracks[names[row]])
            for row in rows
        ]
        labeled_frames.append(
            sio.LabeledFrame(video=video, frame_idx=int(sorted_frames[start]), instances=instances)
        )
    labels = sio.Labels(
        labeled_frames=labeled_frames,
        videos=[video],
        skeletons=[skeleton],
        tracks=list(tracks.values()),
    )
    labels.provenance.update(prov)
    return labels


def _existing_file(path: PathLike, what: str) -> Path:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{what} not found: {path}")
    return path


def _number(text: str | None, where: str) -> float:
    """A finite float from ``text``; ValueError naming ``where`` otherwise."""
    if text is None:
        raise ValueError(f"{where}: missing")
    try:
        value = float(text.strip())
    except ValueError:
        raise ValueError(f"{where}: {text!r} is not a number") from None
    if not math.isfinite(value):
        raise ValueError(f"{where}: {text!r} is not a finite number")
    return value


def _frame_number(text: str | None, where: str, base: int = 0) -> int:
    """A 0-based frame index from ``text`` counted from ``base``."""
    value = _number(text, where)
    if not value.is_integer():
        raise ValueError(f"{where}: {text!r} is not a whole frame number")
    frame = int(value) - base
    if frame < 0:
        raise ValueError(f"{where}: frame {int(value)} is before the first frame ({base})")
    return frame


def _id_text(text: str | None, where: str) -> str:
    """A track id as a string: integers lose leading zeros and a ``.0`` (``"07.0"`` -> ``"7"``)."""
    if text is None or not text.strip():
        raise ValueError(f"{where}: empty track id")
    text = text.strip()
    try:
        value = float(text)
    except ValueError:
        return text
    return str(int(value)) if value.is_integer() else text


# --------------------------------------------------------------------------------------------
# Cell Tracking Challenge
# --------------------------------------------------------------------------------------------


def read_cell_tracking_challenge(
    raw_images: PathLike | Sequence[PathLike] | None,
    gt_images: PathLike | Sequence[PathLike],
    gt_list: PathLike | None = None,
) -> sio.Labels:
    """Cell Tracking Challenge ground truth: one centroid per label per mask frame.

    Why: CTC (DREEM's ``CellTrackingDataset``) stores tracks as label masks -- pixel value =
    track id, 0 = background -- so a tracker that works on points needs each label's centroid.

    ``gt_images`` are the label masks (a folder such as ``..._GT/TRA`` or a list of files;
    ordered by :func:`image_sequence`), ``raw_images`` the matching raw frames (same count and
    size) or None for labels with a placeholder video. Labels frame ``i`` is mask ``i``.

    ``gt_list`` is the challenge's ``man_track.txt`` ("track_id start_frame end_frame parent_id"
    per line, frames numbered as in the mask file names, parent 0 = none). When given, every
    frame a label appears in must lie within one of its listed spans, every frame of every span
    must show the label, and ``labels.provenance["parents"]`` maps each track name to its
    parent's name (or None); ``provenance["man_track_spans"]`` keeps the spans. A track may be
    listed on several lines (the shared asset does this for tracks with gaps) as long as the
    lines agree on the parent. Inconsistencies raise ValueError naming the file, track and frame.
    """
    masks = _numbered_images(gt_images)
    video = _load_video(raw_images) if raw_images is not None else None
    if video is not None and len(video) != len(masks):
        raise ValueError(
            f"{len(video)} raw images but {len(masks)} ground-truth masks (first mask "
            f"{masks[0][1]}); CTC needs one mask per raw frame"
        )
    frame_shape = tuple(video.shape[1:3]) if video is not None else None

    names: list[str] = []
    frames: list[int] = []
    xs: list[np.ndarray] = []
    ys: list[np.ndarray] = []
    present: dict[int, set[int]] = {}  # label -> file numbers of the masks showing it
    for position, (number, path) in enumerate(masks):
        mask = _read_label_mask(path)
        if frame_shape is not None and mask.shape != frame_shape:
            raise ValueError(
                f"mask {path} is {mask.shape[0]}x{mask.shape[1]} (rows x columns) but the raw "
                f"images are {frame_shape[0]}x{frame_shape[1]}"
            )
        ids, cx, cy = _label_centroids(mask)
        for label in ids.tolist():
            present.setdefault(label, set()).add(number)
        names.extend(str(label) for label in ids.tolist())
        frames.extend([position] * len(ids))
        xs.append(cx)
        ys.append(cy)

    mask_dir = masks[0][1].parent
    provenance: dict[str, Any] = {
        "gt_images": str(mask_dir) if all(p.parent == mask_dir for _, p in masks) else None,
        "first_frame_number": masks[0][0],
    }
    if gt_list is not None:
        gt_path = _existing_file(gt_list, "man_track.txt")
        spans, parents = _read_man_track(gt_path)
        _check_man_track(gt_path, spans, present, {n: p for n, p in masks})
        provenance["gt_list"] = str(gt_path)
        provenance["parents"] = {
            str(track): (str(parents[track]) if parents[track] else None) for track in sorted(spans)
        }
        provenance["man_track_spans"] = {
            str(track): [[start, end] for start, end, _ in spans[track]] for track in sorted(spans)
        }
    source = Path(gt_list) if gt_list is not None else mask_dir
    return _build_labels(
        track_names=names,
        frames=frames,
        xs=np.concatenate(xs) if xs else [],
        ys=np.concatenate(ys) if ys else [],
        zs=None,
        source=source,
        source_format="ctc",
        video=video,
        provenance=provenance,
    )


def _read_label_mask(path: Path) -> np.ndarray:
    """A 2D integer label image; ValueError naming the file for anything else."""
    try:
        with Image.open(path) as image:
            if getattr(image, "n_frames", 1) > 1:
                raise ValueError(
                    f"label mask {path} has {image.n_frames} pages; only 2D masks are supported"
                )
            mask = np.asarray(image)
    except OSError as exc:
        raise ValueError(f"cannot read label mask {path}: {exc}") from exc
    if mask.ndim != 2:
        raise ValueError(f"label mask {path} has shape {mask.shape}; a 2D label image is needed")
    if mask.dtype.kind not in "iub":
        raise ValueError(f"label mask {path} has {mask.dtype} pixels; integer labels are needed")
    if mask.dtype.kind == "i" and mask.min() < 0:
        raise ValueError(f"label mask {path} has negative labels")
    return mask


def _label_centroids(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Nonzero label ids and the mean column (x) and row (y) of each label's pixels."""
    ids, inverse, counts = np.unique(mask.ravel(), return_inverse=True, return_counts=True)
    height, width = mask.shape
    rows = np.repeat(np.arange(height, dtype=np.float64), width)
    cols = np.tile(np.arange(width, dtype=np.float64), height)
    cx = np.bincount(inverse, weights=cols, minlength=len(ids)) / counts
    cy = np.bincount(inverse, weights=rows, minlength=len(ids)) / counts
    foreground = ids != 0
    return ids[foreground].astype(np.int64), cx[foreground], cy[foreground]


def _read_man_track(
    path: Path,
) -> tuple[dict[int, list[tuple[int, int, int]]], dict[int, int]]:
    """``{track: [(start, end, line), ...]}`` and ``{track: parent}`` (0 = none)."""
    spans: dict[int, list[tuple[int, int, int]]] = {}
    parents: dict[int, int] = {}
    parent_lines: dict[int, int] = {}
    text = path.read_text(encoding="utf-8-sig", errors="strict")
    for line_no, line in enumerate(text.splitlines(), start=1):
        fields = line.split()
        if not fields:
            continue
        values = [int(f) for f in fields if re.fullmatch(r"[+-]?\d+", f)]
        if len(fields) != 4 or len(values) != 4:
            values = [0, 0, -1, 0]  # reported as malformed just below
        track, start, end, parent = values
        if track <= 0 or start < 0 or end < start or parent < 0:
            raise ValueError(
                f"{path}, line {line_no}: {line.strip()!r} is not 'track_id start end parent' "
                "(positive id, 0 <= start <= end, parent >= 0)"
            )
        if track in parents and parents[track] != parent:
            raise ValueError(
                f"{path}, line {line_no}: track {track} has parent {parent} here but "
                f"{parents[track]} on line {parent_lines[track]}"
            )
        spans.setdefault(track, []).append((start, end, line_no))
        parents.setdefault(track, parent)
        parent_lines.setdefault(track, line_no)
    if not spans:
        raise ValueError(f"{path}: no tracks listed")
    for track, parent in parents.items():
        if parent == track or (parent and parent not in spans):
            raise ValueError(
                f"{path}, line {parent_lines[track]}: track {track} names parent {parent}, "
                "which is not another listed track"
            )
    return spans, parents


def _check_man_track(
    path: Path,
    spans: dict[int, list[tuple[int, int, int]]],
    present: dict[int, set[int]],
    mask_files: dict[int, Path],
) -> None:
    """Masks and man_track.txt agree: labels appear exactly in the frames listed for them."""
    for track in sorted(present):
        if track not in spans:
            first = min(present[track])
            raise ValueError(
                f"{path}: track {track} appears in frame {first} ({mask_files[first]}) but is "
                "not listed"
            )
        for frame in sorted(present[track]):
            if not any(start <= frame <= end for start, end, _ in spans[track]):
                listed = ", ".join(f"{s}-{e}" for s, e, _ in spans[track])
                raise ValueError(
                    f"{path}: track {track} appears in frame {frame} ({mask_files[frame]}), "
                    f"outside its listed frames {listed}"
                )
    for track in sorted(spans):
        shown = present.get(track, set())
        for start, end, line_no in spans[track]:
            for frame in range(start, end + 1):
                if frame not in shown:
                    where = mask_files.get(frame, "no mask file for that frame")
                    raise ValueError(
                        f"{path}, line {line_no}: track {track} is listed for frames "
                        f"{start}-{end} but is absent from frame {frame} ({where})"
                    )


# --------------------------------------------------------------------------------------------
# XML formats: ISBI 2012, icy, TrackMate
# --------------------------------------------------------------------------------------------


def _parse_xml(path: Path) -> ET.Element:
    try:
        return ET.parse(path).getroot()
    except ET.ParseError as exc:
        raise ValueError(f"{path}: not well-formed XML ({exc})") from None


def _describe(element: ET.Element) -> str:
    attrs = " ".join(f'{k}="{v}"' for k, v in element.attrib.items())
    return f"<{element.tag}{' ' + attrs if attrs else ''}>"


def _detections(
    path: Path, container: ET.Element, where: str
) -> Iterable[tuple[int, float, float, float]]:
    """``(t, x, y, z)`` of each ``<detection>`` child (ISBI and icy share this element)."""
    for index, det in enumerate(container.findall("detection")):
        try:
            t = _frame_number(det.get("t"), "attribute t")
            x = _number(det.get("x"), "attribute x")
            y = _number(det.get("y"), "attribute y")
            z = _number(det.get("z"), "attribute z") if det.get("z") is not None else math.nan
        except ValueError as exc:
            raise ValueError(
                f"{path}: {where}, detection #{index} {_describe(det)}, {exc}"
            ) from None
        yield t, x, y, z


def read_isbi_xml(
    path: PathLike, images: ImagesArg = None, *, outside_video: str = "drop"
) -> sio.Labels:
    """ISBI 2012 particle-tracking challenge ground truth.

    Why: the challenge's scenarios (receptors, microtubules, vesicles, viruses) are standard
    point-tracking benchmarks with exact ground truth; DREEM reads them as ``source="isbi"``.

    Layout: ``<root><TrackContestISBI2012 ...><particle><detection t= x= y= z=/>...``. Each
    ``<particle>`` is a track named by its 0-based position in the file; ``t`` is the 0-based
    frame; ``z`` is recorded in ``provenance["z_range"]`` only. The contest element's attributes
    (scenario, SNR, density, ...) go to ``provenance["isbi"]``. ``images`` (a folder, a list of
    frame files -- ``... t000 z0.tif`` -- or a tif stack) attach a video; see the module notes for
    frames past the last image.
    """
    path = _existing_file(path, "ISBI XML file")
    root = _parse_xml(path)
    contest = root if root.tag == "TrackContestISBI2012" else root.find(".//TrackContestISBI2012")
    if contest is None:
        raise ValueError(
            f"{path}: no <TrackContestISBI2012> element; not an ISBI 2012 tracking file"
        )
    names: list[str] = []
    rows: list[tuple[int, float, float, float]] = []
    empty = 0
    for index, particle in enumerate(contest.findall("particle")):
        found = list(_detections(path, particle, f"particle #{index}"))
        if not found:
            empty += 1
        names.extend([str(index)] * len(found))
        rows.extend(found)
    if not rows:
        raise ValueError(f"{path}: no <particle><detection> elements")
    provenance: dict[str, Any] = {"isbi": dict(contest.attrib)}
    if empty:
        provenance["empty_tracks"] = empty
    return _labels_from_rows(
        names, rows, path, "isbi", images, outside_video=outside_video, provenance=provenance
    )


def read_icy_xml(
    path: PathLike, images: ImagesArg = None, *, outside_video: str = "drop"
) -> sio.Labels:
    """icy (Track Manager) track XML.

    Why: icy's tracking plugins and its ground-truth generators save tracks in this form.

    Layout: ``<root><trackfile version=/><trackgroup description=><track id=><detection t= x= y=
    z= type= .../>...</track></trackgroup><linklist>...</linklist></root>``. Each ``<track>`` is a
    track named by its ``id`` (ids must be unique across track groups); ``t`` is the 0-based
    frame. ``provenance`` records the track-group descriptions (``icy_trackgroups``), the count
    of each detection ``type`` (``icy_detection_types``; icy marks real detections 1 and
    interpolated ones otherwise -- all are kept), and the raw attributes of any ``<linklist>``
    children (``icy_links``), whose linking semantics are not interpreted here.
    """
    path = _existing_file(path, "icy XML file")
    root = _parse_xml(path)
    groups = [root] if root.tag == "trackgroup" else root.findall(".//trackgroup")
    if not groups:
        raise ValueError(f"{path}: no <trackgroup> element; not an icy track file")
    names: list[str] = []
    rows: list[tuple[int, float, float, float]] = []
    types: Counter[str] = Counter()
    seen: dict[str, str] = {}
    for g_index, group in enumerate(groups):
        for t_index, track in enumerate(group.findall("track")):
            where = f"trackgroup #{g_index}, track #{t_index} {_describe(track)}"
            name = _id_text(track.get("id"), f"{path}: {where}, attribute id")
            if name in seen:
                raise ValueError(f"{path}: {where} repeats the id of {seen[name]}")
            seen[name] = where
            found = list(_detections(path, track, where))
            names.extend([name] * len(found))
            rows.extend(found)
            types.update(det.get("type", "") for det in track.findall("detection"))
    if not rows:
        raise ValueError(f"{path}: no <track><detection> elements")
    linklist = root.find(".//linklist")
    provenance: dict[str, Any] = {
        "icy_trackgroups": [g.get("description", "") for g in groups],
        "icy_detection_types": dict(types),
        "icy_links": [dict(link.attrib) for link in linklist] if linklist is not None else [],
    }
    return _labels_from_rows(
        names, rows, path, "icy", images, outside_video=outside_video, provenance=provenance
    )


def _labels_from_rows(
    names: list[str],
    rows: list[tuple[int, float, float, float]],
    path: Path,
    source_format: str,
    images: ImagesArg,
    *,
    outside_video: str,
    provenance: dict[str, Any],
) -> sio.Labels:
    if outside_video not in _OUTSIDE_VIDEO:
        raise ValueError(f"outside_video must be one of {_OUTSIDE_VIDEO}, not {outside_video!r}")
    data = np.asarray(rows, dtype=np.float64).reshape(-1, 4)
    video = _load_video(images) if images is not None else None
    return _build_labels(
        track_names=names,
        frames=data[:, 0].astype(np.int64),
        xs=data[:, 1],
        ys=data[:, 2],
        zs=data[:, 3],
        source=path,
        source_format=source_format,
        video=video,
        outside_video=outside_video,
        provenance=provenance,
    )


# --------------------------------------------------------------------------------------------
# TrackMate
# --------------------------------------------------------------------------------------------

# Column names are compared after lower-casing and dropping everything but [a-z0-9_], so the
# latin-1 / UTF-8 degree sign of "Track n°" does not matter ("Track n°" -> "trackn").
_MANUAL_COLUMNS = {
    "track": ("trackn", "trackno", "tracknumber"),
    "slice": ("slicen", "sliceno", "slicenumber", "slice"),
    "x": ("x",),
    "y": ("y",),
}
_SPOTS_COLUMNS = {
    "track": ("track_id",),
    "x": ("position_x",),
    "y": ("position_y",),
    "z": ("position_z",),
    "frame": ("frame",),
    "t": ("position_t",),
}


def read_trackmate(
    path: PathLike, images: ImagesArg = None, *, outside_video: str = "drop"
) -> sio.Labels:
    """TrackMate tracks: its XML, its spots CSV export, or the "Track n°/Slice n°" table.

    Why: TrackMate (Fiji) is the usual source of hand-curated microscopy tracks, and DREEM's
    ``source="trackmate"`` example is a plain track table. XML is chosen by a ``.xml`` suffix or
    a file starting with ``<``; anything else is read as CSV (comma, tab or semicolon).

    * Table with ``Track n°, Slice n°, X, Y`` (ImageJ Manual-Tracking style, as in DREEM's
      ``test_airyscan_tracks.csv``): ``Slice n°`` is an ImageJ slice number, which counts from
      1 (the shared file spans slices 1-500 with no 0), so frame = slice - 1. Other columns
      (Distance, Velocity, Pixel Value) are ignored. Encoding: UTF-8, else latin-1 (that file's
      header is latin-1), recorded in ``provenance["encoding"]``.
    * Spots export: ``TRACK_ID, POSITION_X, POSITION_Y`` and ``FRAME`` (0-based), or failing
      ``FRAME`` a whole-numbered ``POSITION_T`` (time in frames). TrackMate 7's three description
      rows under the header (names, short names, units) are skipped: rows on lines 2-4 whose
      ``POSITION_X`` is not a number; spots without a track
      (``TRACK_ID`` empty or ``None``) are left out and counted in
      ``provenance["untracked_spots"]``. Positions are used as exported (no calibration is in
      the file).
    * XML (``<TrackMate><Model><AllSpots><SpotsInFrame><Spot ID= POSITION_X= POSITION_Y= FRAME=
      .../>`` and ``<AllTracks><Track TRACK_ID=><Edge SPOT_SOURCE_ID= SPOT_TARGET_ID=/>``): a
      track holds the spots its edges link; only tracks listed under ``<FilteredTracks>`` are
      kept when that element exists (spots in no kept track are counted in
      ``provenance["untracked_spots"]``); a track that splits keeps both branches, so two of its
      spots can share a frame; positions are divided by ``<Settings><ImageData
      pixelwidth= pixelheight=>`` to give pixels (recorded in ``provenance["pixel_size"]``).
    """
    path = _existing_file(path, "TrackMate file")
    with path.open("rb") as handle:
        head = handle.read(512).lstrip(b"\xef\xbb\xbf \t\r\n")
    if path.suffix.lower() == ".xml" or head.startswith(b"<"):
        names, rows, provenance = _trackmate_xml(path)
    else:
        names, rows, provenance = _trackmate_csv(path)
    return _labels_from_rows(
        names, rows, path, "trackmate", images, outside_video=outside_video, provenance=provenance
    )


def _decode(path: Path) -> tuple[str, str]:
    raw = path.read_bytes()
    if raw.startswith(b"\xef\xbb\xbf"):
        return raw[3:].decode("utf-8"), "utf-8-sig"
    try:
        return raw.decode("utf-8"), "utf-8"
    except UnicodeDecodeError:
        return raw.decode("latin-1"), "latin-1"


def _column_key(name: str) -> str:
    return re.sub(r"[^a-z0-9_]", "", name.strip().lower())


def _find_column(
    path: Path, header: list[str], keys: dict[str, int], wanted: tuple[str, ...], label: str
) -> int:
    for key in wanted:
        if key in keys:
            return keys[key]
    raise ValueError(
        f"{path}: missing column {label!r} (header: {', '.join(h.strip() for h in header)})"
    )


def _trackmate_csv(path: Path) -> tuple[list[str], list[tuple[int, float, float, float]], dict]:
    text, encoding = _decode(path)
    first_line = text.split("\n", 1)[0]
    delimiter = max((",", "\t", ";"), key=first_line.count)
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
    try:
        header = next(reader)
    except StopIteration:
        raise ValueError(f"{path}: empty file") from None
    keys: dict[str, int] = {}
    for index, name in enumerate(header):
        keys.setdefault(_column_key(name), index)
    manual = any(k in keys for k in _MANUAL_COLUMNS["slice"])
    provenance: dict[str, Any] = {"encoding": encoding}
    if manual:
        layout = "track_table"
        columns = {
            "track": _find_column(path, header, keys, _MANUAL_COLUMNS["track"], "Track n°"),
            "frame": _find_column(path, header, keys, _MANUAL_COLUMNS["slice"], "Slice n°"),
            "x": _find_column(path, header, keys, _MANUAL_COLUMNS["x"], "X"),
            "y": _find_column(path, header, keys, _MANUAL_COLUMNS["y"], "Y"),
        }
        base = 1
        provenance["frame_base"] = 1
    else:
        layout = "spots"
        columns = {
            "track": _find_column(path, header, keys, _SPOTS_COLUMNS["track"], "TRACK_ID"),
            "x": _find_column(path, header, keys, _SPOTS_COLUMNS["x"], "POSITION_X"),
            "y": _find_column(path, header, keys, _SPOTS_COLUMNS["y"], "POSITION_Y"),
        }
        if "frame" in keys:
            columns["frame"] = keys["frame"]
        elif "position_t" in keys:
            columns["frame"] = keys["position_t"]
            provenance["frame_from"] = "POSITION_T"
        else:
            _find_column(path, header, keys, _SPOTS_COLUMNS["frame"], "FRAME (or POSITION_T)")
        if "position_z" in keys:
            columns["z"] = keys["position_z"]
        base = 0
        provenance["frame_base"] = 0
    provenance["csv_layout"] = layout
    frame_name = header[columns["frame"]].strip()

    names: list[str] = []
    rows: list[tuple[int, float, float, float]] = []
    untracked = 0
    width = max(columns.values()) + 1
    for record in reader:
        line = reader.line_num
        if not any(cell.strip() for cell in record):
            continue
        if len(record) < width:
            raise ValueError(
                f"{path}, line {line}: {len(record)} fields, the columns used need {width}"
            )
        if layout == "spots" and line <= 4 and not _is_number(record[columns["x"]]):
            continue  # TrackMate 7 description rows: names, short names, units
        track_cell = record[columns["track"]].strip()
        if layout == "spots" and track_cell in ("", "None"):
            untracked += 1
            continue
        where = f"{path}, line {line}, column"
        name = _id_text(track_cell, f"{where} {header[columns['track']].strip()!r}")
        frame = _frame_number(record[columns["frame"]], f"{where} {frame_name!r}", base)
        x = _number(record[columns["x"]], f"{where} {header[columns['x']].strip()!r}")
        y = _number(record[columns["y"]], f"{where} {header[columns['y']].strip()!r}")
        z = (
            _number(record[columns["z"]], f"{where} {header[columns['z']].strip()!r}")
            if "z" in columns
            else math.nan
        )
        names.append(name)
        rows.append((frame, x, y, z))
    if not rows:
        raise ValueError(f"{path}: no tracked rows")
    if untracked:
        provenance["untracked_spots"] = untracked
    return names, rows, provenance


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _trackmate_xml(path: Path) -> tuple[list[str], list[tuple[int, float, float, float]], dict]:
    root = _parse_xml(path)
    model = root if root.tag == "Model" else root.find("Model")
    if model is None:
        raise ValueError(f"{path}: no <Model> element; not a TrackMate XML file")
    all_spots = model.find("AllSpots")
    all_tracks = model.find("AllTracks")
    for element, name in ((all_spots, "AllSpots"), (all_tracks, "AllTracks")):
        if element is None:
            raise ValueError(f"{path}: <Model> has no <{name}> element")

    pixel_w, pixel_h = 1.0, 1.0
    image_data = root.find("Settings/ImageData")
    if image_data is not None:
        here = f"{path}: {_describe(image_data)}"
        if image_data.get("pixelwidth") is not None:
            pixel_w = _number(image_data.get("pixelwidth"), f"{here}, attribute pixelwidth")
        if image_data.get("pixelheight") is not None:
            pixel_h = _number(image_data.get("pixelheight"), f"{here}, attribute pixelheight")
        if pixel_w <= 0 or pixel_h <= 0:
            raise ValueError(f"{here}: pixel size must be positive")

    spots: dict[str, tuple[int, float, float, float]] = {}
    for index, spot in enumerate(all_spots.iter("Spot")):
        try:
            spot_id = spot.get("ID")
            if spot_id is None or not spot_id.strip():
                raise ValueError("attribute ID: missing")
            frame = _frame_number(spot.get("FRAME"), "attribute FRAME")
            x = _number(spot.get("POSITION_X"), "attribute POSITION_X") / pixel_w
            y = _number(spot.get("POSITION_Y"), "attribute POSITION_Y") / pixel_h
            z_text = spot.get("POSITION_Z")
            z = _number(z_text, "attribute POSITION_Z") if z_text is not None else math.nan
        except ValueError as exc:
            raise ValueError(f"{path}: <Spot> #{index} {_describe(spot)}, {exc}") from None
        if spot_id.strip() in spots:
            raise ValueError(f"{path}: <Spot> #{index} repeats spot ID {spot_id.strip()}")
        spots[spot_id.strip()] = (frame, x, y, z)

    filtered_element = model.find("FilteredTracks")
    filtered = (
        {_id_text(t.get("TRACK_ID"), f"{path}: {_describe(t)}") for t in filtered_element}
        if filtered_element is not None
        else None
    )
    names: list[str] = []
    rows: list[tuple[int, float, float, float]] = []
    owner: dict[str, str] = {}
    for track in all_tracks.findall("Track"):
        where = f"{path}: {_describe(track)}"
        name = _id_text(track.get("TRACK_ID"), f"{where}, attribute TRACK_ID")
        if filtered is not None and name not in filtered:
            continue
        members: dict[str, None] = {}
        for edge in track.findall("Edge"):
            for attr in ("SPOT_SOURCE_ID", "SPOT_TARGET_ID"):
                spot_id = (edge.get(attr) or "").strip()
                if spot_id not in spots:
                    raise ValueError(
                        f"{where}, {_describe(edge)}: {attr} {spot_id!r} is not a spot in "
                        "<AllSpots>"
                    )
                members[spot_id] = None
        for spot_id in members:
            if spot_id in owner and owner[spot_id] != name:
                raise ValueError(f"{where}: spot {spot_id} is already in track {owner[spot_id]}")
            owner[spot_id] = name
        for spot_id in sorted(members, key=lambda s: spots[s][0]):
            names.append(name)
            rows.append(spots[spot_id])
    if not rows:
        raise ValueError(f"{path}: no spots linked into (filtered) tracks")
    provenance = {
        "pixel_size": [pixel_w, pixel_h],
        "spatial_units": model.get("spatialunits"),
        "untracked_spots": len(spots) - len(owner),
    }
    return names, rows, provenance


# --------------------------------------------------------------------------------------------
# Dispatcher
# --------------------------------------------------------------------------------------------


def read_microscopy_tracks(
    path: PathLike | Sequence[PathLike],
    source: str,
    images: ImagesArg = None,
    *,
    outside_video: str = "drop",
) -> sio.Labels:
    """Read microscopy ground truth named by ``source``, as DREEM's dataset sections do.

    Why: dataset configs say ``source: trackmate`` (or ``isbi``...) next to ``tracks`` and
    ``videos``; one entry point keeps that mapping in one place.

    ``source`` (case-insensitive) is one of ``"trackmate"`` (:func:`read_trackmate`),
    ``"isbi"`` (:func:`read_isbi_xml`), ``"icy"`` (:func:`read_icy_xml`) or ``"ctc"``
    (:func:`read_cell_tracking_challenge`: ``path`` is the mask folder or list -- a folder's
    ``man_track.txt``, when present, is used as ``gt_list`` -- and ``images`` the raw frames).
    Anything else raises ValueError listing the valid sources.
    """
    key = source.strip().lower() if isinstance(source, str) else source
    if key not in SOURCES:
        raise ValueError(f"unknown source {source!r}; valid sources: {', '.join(SOURCES)}")
    if key == "ctc":
        gt_list = None
        if isinstance(path, str | os.PathLike) and Path(path).is_dir():
            candidate = Path(path) / "man_track.txt"
            gt_list = candidate if candidate.is_file() else None
        return read_cell_tracking_challenge(images, path, gt_list)
    if not isinstance(path, str | os.PathLike):
        raise ValueError(f"source {key!r} reads one track file, not {type(path).__name__}")
    readers = {"trackmate": read_trackmate, "isbi": read_isbi_xml, "icy": read_icy_xml}
    return readers[key](path, images, outside_video=outside_video)
