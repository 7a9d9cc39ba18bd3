"""CSV and analysis-HDF5 exports of labels (pipeline_lib.io.tables)."""

from __future__ import annotations

import h5py
import numpy as np
import sleap_io as sio

from pipeline_lib.io.labels import load_labels
from pipeline_lib.io.tables import labels_to_table, save_analysis_h5, save_table_csv


def test_exports_of_tracked_labels(shared_data, tmp_path):
    labels = load_labels(shared_data / "dreem_assets/sleap/two_flies.slp")
    save_table_csv(labels, tmp_path / "t.csv")
    table = labels_to_table(labels)
    assert len(table) == sum(len(lf.instances) for lf in labels.labeled_frames)
    assert set(table["track"]) == {"F", "M"}
    save_analysis_h5(labels, tmp_path / "t.analysis.h5")
    with h5py.File(tmp_path / "t.analysis.h5", "r") as h5:
        tracks = h5["tracks"][()]  # (tracks, xy, nodes, frames)
        assert tracks.shape[:3] == (2, 2, 13)
        names = [n.decode() for n in h5["track_names"][()]]
    lf = labels.labeled_frames[0]
    first = lf.instances[0]
    col = names.index(first.track.name)
    np.testing.assert_allclose(tracks[col, :, :, lf.frame_idx].T, first.numpy(), equal_nan=True)


def test_analysis_h5_of_labels_without_instances(shared_data, tmp_path):
    labels = load_labels(shared_data / "dreem_assets/sleap/two_flies.slp")
    video = labels.videos[0]
    video.open()
    empty = sio.Labels(labeled_frames=[], videos=[video], skeletons=labels.skeletons)
    save_analysis_h5(empty, tmp_path / "e.analysis.h5")
    with h5py.File(tmp_path / "e.analysis.h5", "r") as h5:
        assert h5["tracks"].shape == (0, 2, 13, video.shape[0])
        assert h5["track_occupancy"].shape == (video.shape[0], 0)
