"""Videos cut short: with the index at the end (an ordinary MP4) nothing decodes and the error
says "incomplete file (no index); copy it again"; with the index first (faststart) the frames
before the cut are predicted and the rest reported."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
import sleap_io as sio

from pipeline_lib.cli import main
from pipeline_lib.io.video import VideoError, open_video

VIDEO = "sleap_nn_assets/datasets/centered_pair_small.mp4"
RUN_DIRS = "sleap_nn_assets/model_ckpts"
N_FRAMES = 60
NO_INDEX = "is an incomplete file (no index); copy it again"


def _encode(shared_data: Path, out: Path, faststart: bool) -> bytes:
    """The first 60 frames of the shared video re-encoded as H.264, index first or last."""
    import imageio_ffmpeg

    flags = ["-movflags", "+faststart"] if faststart else []
    subprocess.run(
        [imageio_ffmpeg.get_ffmpeg_exe(), "-loglevel", "error", "-i", str(shared_data / VIDEO)]
        + ["-frames:v", str(N_FRAMES), "-c:v", "libx264", "-pix_fmt", "yuv420p", *flags]
        + [str(out)],
        check=True,
    )
    data = out.read_bytes()
    assert (data.index(b"moov") < data.index(b"mdat")) == faststart
    return data


def _predict_argv(shared_data: Path, video: Path, out: Path) -> list[str]:
    models = [
        str(shared_data / RUN_DIRS / f"minimal_instance_{m}")
        for m in ("centroid", "centered_instance")
    ]
    return ["predict", *models, "--video", str(video), "--out", str(out), "--batch-size", "4"]


def test_cut_ordinary_mp4_names_the_file_and_says_copy_again(shared_data, tmp_path, capsys):
    data = _encode(shared_data, tmp_path / "whole.mp4", faststart=False)
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(data[: len(data) // 2])  # the index at the end is gone
    with pytest.raises(VideoError) as err:
        open_video(cut)
    assert str(err.value).startswith(f"Video {cut} {NO_INDEX}: no index ('moov' box)")
    out = tmp_path / "out" / "cut.predictions.slp"
    assert main(_predict_argv(shared_data, cut, out)) == 1
    assert f"Video {cut} {NO_INDEX}" in capsys.readouterr().err
    assert not out.parent.exists() or list(out.parent.iterdir()) == []
    # The whole file opens: the check only refuses files without their index.
    assert open_video(tmp_path / "whole.mp4").shape[0] == N_FRAMES


def test_cut_faststart_mp4_is_predicted_up_to_the_break(shared_data, tmp_path, capsys):
    data = _encode(shared_data, tmp_path / "whole.mp4", faststart=True)
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(data[: len(data) // 2])
    out = tmp_path / "out" / "cut.predictions.slp"
    assert main(_predict_argv(shared_data, cut, out)) == 0
    summary = json.loads(capsys.readouterr().out)
    first_bad = summary["n_frames_predicted"]
    assert summary["n_frames"] == N_FRAMES and 0 < first_bad < N_FRAMES
    assert summary["undecodable_frames"] == {str(cut.resolve()): f"{first_bad}-{N_FRAMES - 1}"}
    labels = sio.load_slp(str(out), open_videos=False)
    assert [lf.frame_idx for lf in labels] == list(range(first_bad))
    # Cut inside the index itself: nothing can be decoded, and the message says so.
    inside_index = tmp_path / "cut_in_index.mp4"
    inside_index.write_bytes(data[: data.index(b"moov") + 200])
    with pytest.raises(VideoError, match=r"cut_in_index\.mp4 is an incomplete file \(no index\)"):
        open_video(inside_index)
