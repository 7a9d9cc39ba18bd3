"""Reading and writing SLEAP labels (via sleap-io) with errors that name the file.

Labels files often store absolute video paths from the machine they were made on. Loading
re-points a missing video to a file of the same name beside the labels file, or to an explicit
replacement, and fails with the labels path and the missing video path otherwise.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import h5py
import sleap_io as sio

from pipeline_lib.io.atomic import atomic_path
from pipeline_lib.io.skeleton import stable_symmetries


class LabelsError(ValueError):
    """A labels file that cannot be used; the message names the file and what is wrong."""


def _existing_hdf5(path: str | os.PathLike) -> Path:
    """``path`` as a Path, or a LabelsError saying it is missing or not HDF5 (what a .slp is)."""
    path = Path(path)
    if not path.exists():
        raise LabelsError(f"Labels file not found: {path}")
    if not h5py.is_hdf5(path):
        raise LabelsError(f"Labels file is not a valid SLEAP .slp (HDF5) file: {path}")
    return path


def load_labels(
    path: str | os.PathLike,
    video_paths: Sequence[str | os.PathLike] | None = None,
    require_videos: bool = True,
) -> sio.Labels:
    """Load a ``.slp`` / ``.pkg.slp`` file and make sure its videos can be opened.

    ``video_paths`` replaces the stored video filenames one-for-one. Without it, a video that
    does not exist is looked for beside the labels file under the same file name.
    """
    path = _existing_hdf5(path)
    try:
        labels = sio.load_slp(str(path), open_videos=False)
    except Exception as exc:  # sleap-io raises many kinds on truncated files
        raise LabelsError(
            f"Could not read labels file {path}: {type(exc).__name__}: {exc}"
        ) from exc

    if video_paths is not None:
        if len(video_paths) != len(labels.videos):
            raise LabelsError(
                f"{path} has {len(labels.videos)} videos but {len(video_paths)} replacement "
                "video paths were given"
            )
        labels.replace_filenames(new_filenames=[str(Path(p).resolve()) for p in video_paths])
    else:
        _repoint_missing_videos(labels, path)

    for video in labels.videos:
        video.open_backend = True  # open lazily on first frame read, after any re-pointing
    if require_videos:
        for video in labels.videos:
            if is_embedded_video(video):
                continue
            filename = video.filename
            if isinstance(filename, list):
                missing = [f for f in filename if not Path(f).exists()]
            else:
                missing = [] if Path(filename).exists() else [filename]
            if missing:
                raise LabelsError(
                    f"Video referenced by {path} not found: {missing[0]} (also looked beside "
                    "the labels file; pass the video path explicitly)"
                )
    return labels


def read_skeleton_nodes(path: str | os.PathLike) -> list[str]:
    """Node names of the one skeleton of a labels file, read from its header only.

    Cheap enough to run while a workflow is parsed or before a command starts work, so a
    skeleton that does not fit is reported before any frame is decoded.
    """
    path = _existing_hdf5(path)
    try:
        from sleap_io.io.slp import read_skeletons

        skeletons = read_skeletons(str(path))
    except Exception as exc:
        raise LabelsError(
            f"Could not read the skeleton of labels file {path}: {type(exc).__name__}: {exc}"
        ) from exc
    if len(skeletons) != 1:
        raise LabelsError(f"{path} has {len(skeletons)} skeletons; exactly one is supported")
    return list(skeletons[0].node_names)


def save_labels(labels: sio.Labels, path: str | os.PathLike, embed: bool = False) -> None:
    """Save labels atomically (temp file, then rename) so a killed job leaves no partial file,
    and byte for byte the same for the same labels (:func:`stable_symmetries`)."""
    stable_symmetries(labels.skeletons)
    with atomic_path(path) as tmp:
        if embed:
            sio.save_slp(labels, str(tmp), embed="all")
        else:
            sio.save_slp(labels, str(tmp), embed=False)


def is_embedded_video(video: sio.Video) -> bool:
    """True for a video whose frames live inside a labels file (``.pkg.slp``).

    Checks the open backend (sleap-io's ``HDF5Video`` with embedded images, possibly wrapped in
    a crop) and, for videos loaded without opening them, the recorded backend metadata.
    """
    backend = getattr(video.backend, "inner", video.backend)
    if type(backend).__name__ == "HDF5Video":
        inds = getattr(backend, "embedded_frame_inds", None)
        if getattr(backend, "has_embedded_images", False) or (inds is not None and len(inds)):
            return True
    meta = getattr(video, "backend_metadata", None) or {}
    dataset = meta.get("dataset") or ""
    if meta.get("has_embedded_images") or meta.get("filename") == ".":
        return True
    if video.backend is None and isinstance(dataset, str) and dataset.endswith("/video"):
        return True
    filename = video.filename
    return isinstance(filename, str) and filename.endswith(".slp")


def _repoint_missing_videos(labels: sio.Labels, labels_path: Path) -> None:
    """Point each missing video at a same-named file beside the labels file, if there is one.

    Found videos are stored as absolute paths, so labels written later open from any folder.
    """
    new_names: list[str | list[str]] = []
    changed = False
    for video in labels.videos:
        filename = video.filename
        if is_embedded_video(video) or isinstance(filename, list):
            new_names.append(filename)
            continue
        if Path(filename).exists():
            absolute = str(Path(filename).resolve())
            changed = changed or absolute != filename
            new_names.append(absolute)
            continue
        candidate = labels_path.parent / Path(filename.replace("\\", "/")).name
        if candidate.exists():
            new_names.append(str(candidate.resolve()))
            changed = True
        else:
            new_names.append(filename)
    if changed:
        labels.replace_filenames(new_filenames=new_names)
