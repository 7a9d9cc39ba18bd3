"""Readers for microscopy tracking ground truth (pipeline_lib.tracking.microscopy).

The real files under ``dreem_assets/microscopy`` (CTC masks + man_track.txt, ISBI 2012 XML with
frames, a "Track n°/Slice n°" track table, an icy XML) are checked against counts and
coordinates computed here independently (xml.etree, csv, scipy.ndimage). Formats with no shared
file -- TrackMate's spots CSV export and TrackMate XML -- are checked on SMALL SYNTHETIC files
written by the tests from the documented layouts; they are labelled as such below.
"""

from __future__ import annotations

import csv
import os
import random
import re
import xml.etree.ElementTree as ET
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import sleap_io as sio
from PIL import Image
from scipy import ndimage

from pipeline_lib.tracking.microscopy import (
    CENTROID_NODE,
    image_sequence,
    read_cell_tracking_challenge,
    read_icy_xml,
    read_isbi_xml,
    read_microscopy_tracks,
    read_trackmate,
)

ISBI_SETS = {
    "receptors": "RECEPTOR snr 7 density low",
    "microtubules": "MICROTUBULE snr 7 density low",
}


@pytest.fixture(scope="session")
def micro(shared_data: Path) -> Path:
    """``dreem_assets/microscopy`` in the shared data; skips where absent."""
    root = shared_data / "dreem_assets" / "microscopy"
    if not root.is_dir():
        pytest.skip(f"microscopy assets not found at {root}")
    return root


def rows_of(labels: sio.Labels) -> list[tuple[str, int, float, float]]:
    """``(track name, frame, x, y)`` for every instance."""
    out = []
    for lf in labels.labeled_frames:
        for inst in lf.instances:
            x, y = inst.numpy()[0]
            out.append((inst.track.name, lf.frame_idx, float(x), float(y)))
    return out


def n_instances(labels: sio.Labels) -> int:
    return sum(len(lf.instances) for lf in labels.labeled_frames)


def assert_common_shape(labels: sio.Labels) -> None:
    """One-node skeleton, every instance a user Instance with a track from ``labels.tracks``."""
    assert [n.name for n in labels.skeleton.nodes] == [CENTROID_NODE]
    track_ids = {id(t) for t in labels.tracks}
    for lf in labels.labeled_frames:
        for inst in lf.instances:
            assert type(inst) is sio.Instance
            assert id(inst.track) in track_ids
    frames = [lf.frame_idx for lf in labels.labeled_frames]
    assert frames == sorted(set(frames))


# --------------------------------------------------------------------------------------------
# Cell Tracking Challenge (real files)
# --------------------------------------------------------------------------------------------


def ctc_paths(micro: Path) -> tuple[Path, Path, Path]:
    base = micro / "cell_tracking"
    return base / "test_0", base / "test_0_GT" / "TRA", base / "test_0_GT" / "TRA" / "man_track.txt"


def read_spans(man_track: Path) -> tuple[dict[int, list[tuple[int, int]]], dict[int, int]]:
    spans: dict[int, list[tuple[int, int]]] = {}
    parents: dict[int, int] = {}
    for line in man_track.read_text().splitlines():
        if line.strip():
            track, start, end, parent = map(int, line.split())
            spans.setdefault(track, []).append((start, end))
            parents[track] = parent
    return spans, parents


def test_ctc_objects_centroids_and_man_track(micro: Path) -> None:
    raw, tra, man_track = ctc_paths(micro)
    labels = read_cell_tracking_challenge(raw, tra, man_track)
    assert_common_shape(labels)
    assert len(labels.videos) == 1 and len(labels.videos[0]) == 11
    assert [Path(f).name for f in labels.videos[0].filename] == [
        f"frame_{i:04d}.tif" for i in range(11)
    ]
    assert [lf.frame_idx for lf in labels.labeled_frames] == list(range(11))

    masks = {int(p.stem.split("_")[1]): p for p in tra.glob("frame_*.tif")}
    assert sorted(masks) == list(range(11))
    by_frame = {lf.frame_idx: lf for lf in labels.labeled_frames}
    for frame, path in masks.items():
        mask = np.array(Image.open(path))
        expected = {str(v) for v in np.unique(mask) if v != 0}
        names = [inst.track.name for inst in by_frame[frame].instances]
        assert len(names) == len(expected) and set(names) == expected

    # One centroid, by scipy.ndimage (row, col) rather than the reader's bincount.
    mask5 = np.array(Image.open(masks[5]))
    label = int(np.unique(mask5)[5])
    row, col = ndimage.center_of_mass(mask5 == label)
    (inst,) = [i for i in by_frame[5].instances if i.track.name == str(label)]
    np.testing.assert_allclose(inst.numpy()[0], [col, row], atol=1e-9)

    spans, parents = read_spans(man_track)
    assert {t.name for t in labels.tracks} == {str(t) for t in spans}
    for name, frame, _, _ in rows_of(labels):
        assert any(s <= frame <= e for s, e in spans[int(name)]), (name, frame)
    assert labels.provenance["parents"] == {
        str(t): (str(p) if p else None) for t, p in parents.items()
    }


def test_ctc_without_raw_images_saves_with_placeholder_video(micro: Path, tmp_path: Path) -> None:
    _, tra, _ = ctc_paths(micro)
    labels = read_cell_tracking_challenge(None, tra)
    assert labels.videos[0].backend is None
    assert Path(labels.videos[0].filename) == tra
    assert "parents" not in labels.provenance
    out = tmp_path / "ctc.slp"
    sio.save_slp(labels, str(out))
    back = sio.load_slp(str(out), open_videos=False)
    assert n_instances(back) == n_instances(labels)
    assert len(back.tracks) == len(labels.tracks)


def test_ctc_man_track_inconsistencies_name_file_track_frame(micro: Path, tmp_path: Path) -> None:
    _, tra, man_track = ctc_paths(micro)
    lines = man_track.read_text().splitlines()

    # Track 1 really appears in frames 0, 2-3 and 6: list it for frame 0 only.
    trimmed = tmp_path / "trimmed_man_track.txt"
    trimmed.write_text("\n".join(ln for ln in lines if ln.split()[0] != "1") + "\n1 0 0 0\n")
    with pytest.raises(ValueError, match=r"trimmed_man_track\.txt: track 1 appears in frame 2"):
        read_cell_tracking_challenge(None, tra, trimmed)

    # Track 2 listed up to frame 11, past the last mask.
    longer = tmp_path / "longer_man_track.txt"
    longer.write_text("\n".join("2 0 11 0" if ln == "2 0 10 0" else ln for ln in lines))
    with pytest.raises(ValueError, match=r"longer_man_track\.txt, line \d+: track 2 .* frame 11"):
        read_cell_tracking_challenge(None, tra, longer)

    broken = tmp_path / "broken_man_track.txt"
    broken.write_text("\n".join([*lines[:3], "4 0 ten 0", *lines[4:]]))
    with pytest.raises(ValueError, match=r"broken_man_track\.txt, line 4"):
        read_cell_tracking_challenge(None, tra, broken)

    with pytest.raises(FileNotFoundError, match="nowhere.txt"):
        read_cell_tracking_challenge(None, tra, tmp_path / "nowhere.txt")


# --------------------------------------------------------------------------------------------
# ISBI 2012 (real files)
# --------------------------------------------------------------------------------------------


def isbi_truth(xml_path: Path) -> list[tuple[str, int, float, float]]:
    """``(particle index, t, x, y)`` for every detection, by xml.etree."""
    root = ET.parse(xml_path).getroot()
    out = []
    for index, particle in enumerate(root.iter("particle")):
        for det in particle.iter("detection"):
            out.append((str(index), int(det.get("t")), float(det.get("x")), float(det.get("y"))))
    return out


@pytest.mark.parametrize("dataset", sorted(ISBI_SETS))
def test_isbi_counts_frames_and_coordinates(micro: Path, dataset: str) -> None:
    folder = micro / "isbi" / dataset
    xml_path = folder / f"{ISBI_SETS[dataset]}.xml"
    truth = isbi_truth(xml_path)
    n_particles = len(ET.parse(xml_path).getroot().findall(".//particle"))

    labels = read_isbi_xml(xml_path)
    assert_common_shape(labels)
    assert len(labels.tracks) == n_particles
    assert n_instances(labels) == len(truth)
    assert sorted(rows_of(labels)) == sorted(truth)
    assert labels.provenance["isbi"]["scenario"] == ISBI_SETS[dataset].split()[0]
    assert labels.provenance["z_range"] == [0.0, 0.0]

    # With its 9 frames (t000-t008): frame i is the t00i file; later detections are dropped.
    with_images = read_isbi_xml(xml_path, folder)
    video = with_images.videos[0]
    assert len(video) == 9 and video.shape[1:] == (512, 512, 1)
    names = [Path(f).name for f in video.filename]
    assert names == [f"{ISBI_SETS[dataset]} t{i:03d} z0.tif" for i in range(9)]
    kept = [row for row in truth if row[1] < 9]
    assert sorted(rows_of(with_images)) == sorted(kept)
    assert len(with_images.tracks) == len({row[0] for row in kept})
    assert with_images.provenance["dropped_outside_video"] == len(truth) - len(kept)
    with pytest.raises(ValueError, match=r"past the 9 images"):
        read_isbi_xml(xml_path, folder, outside_video="error")


def test_isbi_frames_follow_t_number_not_listing_order(micro: Path, tmp_path: Path) -> None:
    """11 frames t000-t010 created in shuffled order: t010 must come after t009, and frame i
    of the labels must be the t-number i file."""
    stem = ISBI_SETS["receptors"]
    source = micro / "isbi" / "receptors"
    real = sorted(source.glob("*.tif"))
    numbers = list(range(11))
    random.Random(3).shuffle(numbers)
    for n in numbers:
        os.symlink(real[n % len(real)], tmp_path / f"{stem} t{n:03d} z0.tif")
    (tmp_path / f"{stem}.xml").symlink_to(source / f"{stem}.xml")

    ordered = image_sequence(tmp_path)
    assert [p.name for p in ordered] == [f"{stem} t{n:03d} z0.tif" for n in range(11)]
    shuffled = [tmp_path / f"{stem} t{n:03d} z0.tif" for n in numbers]
    assert image_sequence(shuffled) == ordered

    labels = read_isbi_xml(tmp_path / f"{stem}.xml", shuffled)
    assert len(labels.videos[0]) == 11
    assert Path(labels.videos[0].filename[10]).name == f"{stem} t010 z0.tif"
    assert max(lf.frame_idx for lf in labels.labeled_frames) == 10


# --------------------------------------------------------------------------------------------
# image_sequence
# --------------------------------------------------------------------------------------------


def touch_images(folder: Path, names: list[str]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for name in names:
        Image.fromarray(np.zeros((4, 5), np.uint8)).save(folder / name)


def test_image_sequence_orders_numerically_and_rejects_gaps_and_duplicates(
    tmp_path: Path,
) -> None:
    names = [f"frame_{n}.tif" for n in range(12)]  # unpadded: lexicographic order differs
    touch_images(tmp_path / "ok", random.Random(0).sample(names, len(names)))
    (tmp_path / "ok" / "notes.txt").write_text("not an image")
    ordered = [p.name for p in image_sequence(tmp_path / "ok")]
    assert ordered == names
    assert ordered != sorted(names)
    hinted = image_sequence(tmp_path / "ok", pattern_hint=r"frame_(?P<frame>\d+)")
    assert [p.name for p in hinted] == names

    touch_images(tmp_path / "gap", ["img_t000.png", "img_t001.png", "img_t004.png"])
    with pytest.raises(ValueError, match=r"frame 2-3 missing.*img_t001\.png.*img_t004\.png"):
        image_sequence(tmp_path / "gap")

    touch_images(tmp_path / "dup", ["frame_1.tif", "frame_01.tif", "frame_0.tif"])
    with pytest.raises(ValueError, match=r"frame number 1 .*frame_0?1\.tif.*frame_0?1\.tif"):
        image_sequence(tmp_path / "dup")

    with pytest.raises(ValueError, match="does not match file"):
        image_sequence(tmp_path / "ok", pattern_hint=r"img_(\d+)")
    with pytest.raises(FileNotFoundError, match="missing_folder"):
        image_sequence(tmp_path / "missing_folder")
    with pytest.raises(FileNotFoundError, match="frame_99.tif"):
        image_sequence([tmp_path / "ok" / "frame_0.tif", tmp_path / "ok" / "frame_99.tif"])


# --------------------------------------------------------------------------------------------
# TrackMate: the real "Track n°/Slice n°" table
# --------------------------------------------------------------------------------------------


def test_trackmate_real_track_table(micro: Path) -> None:
    path = micro / "trackmate" / "test_airyscan_tracks.csv"
    raw = path.read_bytes()
    assert raw.startswith(b"Track n\xb0,Slice n\xb0,X,Y")  # latin-1 degree sign, not UTF-8
    with path.open(encoding="latin-1", newline="") as handle:
        table = list(csv.reader(handle))
    header, body = table[0], [r for r in table[1:] if r]
    assert header[:4] == ["Track n°", "Slice n°", "X", "Y"]
    assert min(int(r[1]) for r in body) == 1  # ImageJ slices count from 1

    labels = read_trackmate(path)
    assert_common_shape(labels)
    assert n_instances(labels) == len(body)
    assert {t.name for t in labels.tracks} == {r[0] for r in body}
    assert labels.provenance["encoding"] == "latin-1"
    assert labels.provenance["frame_base"] == 1

    track, slice_no, x, y = body[0][:4]
    first = labels.labeled_frames[0]
    assert first.frame_idx == int(slice_no) - 1 == 0
    assert [(i.track.name, *i.numpy()[0]) for i in first.instances][0] == (
        track,
        float(x),
        float(y),
    )
    expected = sorted((r[0], int(r[1]) - 1, float(r[2]), float(r[3])) for r in body)
    assert sorted(rows_of(labels)) == expected

    # The file restarts track 25 over frames it already covers (and repeats 38 once): kept,
    # and reported.
    repeated = sorted(
        [name, frame]
        for (name, frame), c in Counter((r[0], int(r[1]) - 1) for r in body).items()
        if c > 1
    )
    assert sorted(labels.provenance["duplicate_track_frames"]) == repeated


# --------------------------------------------------------------------------------------------
# TrackMate: SYNTHETIC spots CSV export and XML (no shared file exists for these layouts)
# --------------------------------------------------------------------------------------------

# SYNTHETIC: TrackMate 7 "Export spots to CSV" layout -- a key header, then three description
# rows (names, short names, units), then one row per spot; a spot outside any track has an
# empty TRACK_ID. Two tracks (0 and 5) over frames 0-2.
SYNTHETIC_SPOTS_CSV = """\
LABEL,ID,TRACK_ID,QUALITY,POSITION_X,POSITION_Y,POSITION_Z,POSITION_T,FRAME,RADIUS,VISIBILITY
Label,Spot ID,Track ID,Quality,X,Y,Z,T,Frame,Radius,Visibility
Label,Spot ID,Track ID,Quality,X,Y,Z,T,Frame,R,Visibility
,,,(quality),(pixel),(pixel),(pixel),(frame),,(pixel),
ID10,10,0,1.0,10.5,20.0,0.0,0.0,0,2.0,1
ID11,11,5,1.0,50.0,60.25,0.0,0.0,0,2.0,1
ID12,12,0,1.0,11.5,21.0,0.0,1.0,1,2.0,1
ID13,13,5,1.0,49.0,61.25,0.0,1.0,1,2.0,1
ID14,14,,1.0,90.0,90.0,0.0,1.0,1,2.0,1
ID15,15,5,1.0,48.0,62.25,0.0,2.0,2,2.0,1
ID16,16,0,1.0,12.5,22.0,0.0,2.0,2,2.0,1
"""
SPOTS_EXPECTED = sorted(
    [
        ("0", 0, 10.5, 20.0),
        ("0", 1, 11.5, 21.0),
        ("0", 2, 12.5, 22.0),
        ("5", 0, 50.0, 60.25),
        ("5", 1, 49.0, 61.25),
        ("5", 2, 48.0, 62.25),
    ]
)


def test_trackmate_synthetic_spots_csv(tmp_path: Path) -> None:
    path = tmp_path / "synthetic_spots.csv"
    path.write_text(SYNTHETIC_SPOTS_CSV, encoding="utf-8")
    labels = read_trackmate(path)
    assert_common_shape(labels)
    assert sorted(rows_of(labels)) == SPOTS_EXPECTED
    assert [t.name for t in labels.tracks] == ["0", "5"]
    assert labels.provenance["untracked_spots"] == 1
    assert labels.provenance["csv_layout"] == "spots"

    # SYNTHETIC: the same export without FRAME, time in frames in POSITION_T.
    lines = SYNTHETIC_SPOTS_CSV.splitlines()
    no_frame = "\n".join(",".join(line.split(",")[:8] + line.split(",")[9:]) for line in lines)
    path_t = tmp_path / "synthetic_spots_t.csv"
    path_t.write_text(no_frame + "\n", encoding="utf-8")
    assert sorted(rows_of(read_trackmate(path_t))) == SPOTS_EXPECTED


def test_trackmate_track_table_in_utf8_with_images_stack(tmp_path: Path) -> None:
    """SYNTHETIC: the "Track n°" table saved as UTF-8, with a 3-page tif stack as the video."""
    path = tmp_path / "synthetic_table.csv"
    path.write_text(
        "Track n°,Slice n°,X,Y,Distance,Velocity,Pixel Value\n"
        "7,1,3,4,-1,-1,10\n7,2,5,6,1,1,10\n8,3,1,2,-1,-1,10\n",
        encoding="utf-8",
    )
    pages = [Image.fromarray(np.full((6, 8), 40 * k, np.uint8)) for k in range(3)]
    stack = tmp_path / "stack.tif"
    pages[0].save(stack, save_all=True, append_images=pages[1:])

    labels = read_trackmate(path, stack)
    assert sorted(rows_of(labels)) == [("7", 0, 3.0, 4.0), ("7", 1, 5.0, 6.0), ("8", 2, 1.0, 2.0)]
    assert labels.provenance["encoding"] == "utf-8"
    video = labels.videos[0]
    assert video.shape == (3, 6, 8, 1)
    assert int(video[2].max()) == 80

    late = tmp_path / "synthetic_late.csv"
    late.write_text("Track n°,Slice n°,X,Y\n1,4,5,6\n1,5,5,7\n", encoding="utf-8")
    dropped = read_trackmate(late, stack)
    assert dropped.labeled_frames == [] and len(dropped.videos[0]) == 3
    assert dropped.provenance["dropped_outside_video"] == 2


def synthetic_trackmate_xml(path: Path) -> None:
    """SYNTHETIC TrackMate XML (documented layout): spots listed per frame with IDs that do not
    follow the tracks, so only the edges can say which spot belongs to which track; pixel size
    0.5 (positions in microns); track 9 exists but is not in FilteredTracks; spot 99 is in no
    track."""
    path.write_text(
        """<?xml version="1.0" encoding="UTF-8"?>
<TrackMate version="7.11.1">
  <Model spatialunits="micron" timeunits="sec">
    <AllSpots nspots="9">
      <SpotsInFrame frame="0">
        <Spot ID="4" name="ID4" POSITION_X="5.0" POSITION_Y="10.0" POSITION_Z="0.0" POSITION_T="0.0" FRAME="0" VISIBILITY="1"/>
        <Spot ID="1" name="ID1" POSITION_X="25.0" POSITION_Y="30.0" POSITION_Z="0.0" POSITION_T="0.0" FRAME="0" VISIBILITY="1"/>
        <Spot ID="99" name="ID99" POSITION_X="40.0" POSITION_Y="40.0" POSITION_Z="0.0" POSITION_T="0.0" FRAME="0" VISIBILITY="1"/>
        <Spot ID="50" name="ID50" POSITION_X="1.0" POSITION_Y="1.0" POSITION_Z="0.0" POSITION_T="0.0" FRAME="0" VISIBILITY="1"/>
      </SpotsInFrame>
      <SpotsInFrame frame="1">
        <Spot ID="2" name="ID2" POSITION_X="5.5" POSITION_Y="10.5" POSITION_Z="0.0" POSITION_T="1.0" FRAME="1" VISIBILITY="1"/>
        <Spot ID="6" name="ID6" POSITION_X="24.5" POSITION_Y="30.5" POSITION_Z="0.0" POSITION_T="1.0" FRAME="1" VISIBILITY="1"/>
        <Spot ID="51" name="ID51" POSITION_X="1.5" POSITION_Y="1.5" POSITION_Z="0.0" POSITION_T="1.0" FRAME="1" VISIBILITY="1"/>
      </SpotsInFrame>
      <SpotsInFrame frame="2">
        <Spot ID="5" name="ID5" POSITION_X="24.0" POSITION_Y="31.0" POSITION_Z="0.0" POSITION_T="2.0" FRAME="2" VISIBILITY="1"/>
        <Spot ID="3" name="ID3" POSITION_X="6.0" POSITION_Y="11.0" POSITION_Z="0.0" POSITION_T="2.0" FRAME="2" VISIBILITY="1"/>
      </SpotsInFrame>
    </AllSpots>
    <AllTracks>
      <Track name="Track_0" TRACK_ID="0" TRACK_INDEX="0" NUMBER_SPOTS="3">
        <Edge SPOT_SOURCE_ID="4" SPOT_TARGET_ID="6" LINK_COST="1.0"/>
        <Edge SPOT_SOURCE_ID="6" SPOT_TARGET_ID="3" LINK_COST="1.0"/>
      </Track>
      <Track name="Track_1" TRACK_ID="1" TRACK_INDEX="1" NUMBER_SPOTS="3">
        <Edge SPOT_SOURCE_ID="2" SPOT_TARGET_ID="5" LINK_COST="1.0"/>
        <Edge SPOT_SOURCE_ID="1" SPOT_TARGET_ID="2" LINK_COST="1.0"/>
      </Track>
      <Track name="Track_9" TRACK_ID="9" TRACK_INDEX="2" NUMBER_SPOTS="2">
        <Edge SPOT_SOURCE_ID="50" SPOT_TARGET_ID="51" LINK_COST="1.0"/>
      </Track>
    </AllTracks>
    <FilteredTracks>
      <TrackID TRACK_ID="0"/>
      <TrackID TRACK_ID="1"/>
    </FilteredTracks>
  </Model>
  <Settings>
    <ImageData filename="synthetic.tif" folder="" width="100" height="100" nslices="1"
      nframes="3" pixelwidth="0.5" pixelheight="0.5" voxeldepth="1.0" timeinterval="1.0"/>
  </Settings>
</TrackMate>
""",
        encoding="utf-8",
    )


def test_trackmate_synthetic_xml_links_spots_through_edges(tmp_path: Path) -> None:
    path = tmp_path / "synthetic_trackmate.xml"
    synthetic_trackmate_xml(path)
    labels = read_trackmate(path)
    assert_common_shape(labels)
    # Track 0 = spots 4 -> 6 -> 3, track 1 = spots 1 -> 2 -> 5 (microns / 0.5 = pixels).
    assert sorted(rows_of(labels)) == sorted(
        [
            ("0", 0, 10.0, 20.0),
            ("0", 1, 49.0, 61.0),
            ("0", 2, 12.0, 22.0),
            ("1", 0, 50.0, 60.0),
            ("1", 1, 11.0, 21.0),
            ("1", 2, 48.0, 62.0),
        ]
    )
    assert {t.name for t in labels.tracks} == {"0", "1"}
    assert labels.provenance["pixel_size"] == [0.5, 0.5]
    assert labels.provenance["untracked_spots"] == 3  # 99, and 50/51 of unfiltered track 9

    broken = tmp_path / "synthetic_bad_edge.xml"
    broken.write_text(path.read_text().replace('SPOT_TARGET_ID="3"', 'SPOT_TARGET_ID="33"'))
    with pytest.raises(ValueError, match=r'synthetic_bad_edge\.xml.*TRACK_ID="0".*SPOT_TARGET_ID'):
        read_trackmate(broken)


# --------------------------------------------------------------------------------------------
# icy (real file)
# --------------------------------------------------------------------------------------------


def test_icy_counts_and_coordinates(micro: Path) -> None:
    path = micro / "icy" / "10_cells_1_gt.xml"
    root = ET.parse(path).getroot()
    truth = [
        (track.get("id"), int(d.get("t")), float(d.get("x")), float(d.get("y")))
        for track in root.iter("track")
        for d in track.iter("detection")
    ]
    labels = read_icy_xml(path)
    assert_common_shape(labels)
    assert len(labels.tracks) == len(root.findall(".//track")) == 10
    assert n_instances(labels) == len(truth) == 2000
    assert {t.name for t in labels.tracks} == {t.get("id") for t in root.iter("track")}
    assert sorted(rows_of(labels)) == sorted(truth)
    assert labels.videos[0].backend is None and Path(labels.videos[0].filename) == path


# --------------------------------------------------------------------------------------------
# Dispatcher and errors
# --------------------------------------------------------------------------------------------


def test_dispatcher_matches_direct_readers(micro: Path) -> None:
    isbi = micro / "isbi" / "receptors" / f"{ISBI_SETS['receptors']}.xml"
    icy = micro / "icy" / "10_cells_1_gt.xml"
    table = micro / "trackmate" / "test_airyscan_tracks.csv"
    raw, tra, man_track = ctc_paths(micro)
    assert rows_of(read_microscopy_tracks(isbi, "isbi")) == rows_of(read_isbi_xml(isbi))
    assert rows_of(read_microscopy_tracks(icy, "ICY")) == rows_of(read_icy_xml(icy))
    assert rows_of(read_microscopy_tracks(table, "trackmate")) == rows_of(read_trackmate(table))
    ctc = read_microscopy_tracks(tra, "ctc", raw)  # the folder's man_track.txt is picked up
    assert ctc.provenance["gt_list"] == str(man_track)
    assert rows_of(ctc) == rows_of(read_cell_tracking_challenge(raw, tra, man_track))


def test_unknown_source_lists_valid_ones(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"unknown source 'dreem'.*trackmate, isbi, icy, ctc"):
        read_microscopy_tracks(tmp_path / "x.xml", "dreem")


def test_missing_column_malformed_row_and_missing_file(tmp_path: Path) -> None:
    no_y = tmp_path / "no_y.csv"
    no_y.write_bytes("Track n°,Slice n°,X\n1,1,5\n".encode("latin-1"))
    with pytest.raises(ValueError, match=r"no_y\.csv: missing column 'Y'"):
        read_trackmate(no_y)

    no_x = tmp_path / "no_position_x.csv"
    no_x.write_text("TRACK_ID,POSITION_Y,FRAME\n0,1,0\n")
    with pytest.raises(ValueError, match=r"no_position_x\.csv: missing column 'POSITION_X'"):
        read_trackmate(no_x)

    bad_row = tmp_path / "bad_row.csv"
    bad_row.write_text("Track n°,Slice n°,X,Y\n1,1,5,6\n1,2,five,6\n")
    with pytest.raises(ValueError, match=r"bad_row\.csv, line 3, column 'X': 'five'"):
        read_trackmate(bad_row)

    zero_slice = tmp_path / "zero_slice.csv"
    zero_slice.write_text("Track n°,Slice n°,X,Y\n1,0,5,6\n")
    with pytest.raises(ValueError, match=r"zero_slice\.csv, line 2, column 'Slice n°'"):
        read_trackmate(zero_slice)

    bad_xml = tmp_path / "bad_isbi.xml"
    bad_xml.write_text(
        "<root><TrackContestISBI2012><particle>"
        '<detection t="0" x="1" y="2" z="0"/><detection t="1" y="2" z="0"/>'
        "</particle></TrackContestISBI2012></root>"
    )
    with pytest.raises(ValueError, match=r"bad_isbi\.xml: particle #0, detection #1 .*x: missing"):
        read_isbi_xml(bad_xml)

    not_isbi = tmp_path / "not_isbi.xml"
    not_isbi.write_text("<root><trackgroup/></root>")
    with pytest.raises(ValueError, match=r"not_isbi\.xml: no <TrackContestISBI2012>"):
        read_isbi_xml(not_isbi)

    for reader in (read_isbi_xml, read_icy_xml, read_trackmate):
        with pytest.raises(FileNotFoundError, match=re.escape(str(tmp_path / "absent.xml"))):
            reader(tmp_path / "absent.xml")
