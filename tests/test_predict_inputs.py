"""Which frames a labels-file input predicts: video index, frame selection and the filters."""

from __future__ import annotations

import pytest
import sleap_io as sio

from pipeline_lib.inference.predict import labels_frame_plan
from pipeline_lib.io.labels import load_labels


@pytest.fixture()
def flies(shared_data) -> sio.Labels:
    return load_labels(shared_data / "dreem_assets/sleap/two_flies.slp")


def frames_of(plan) -> list[list[int]]:
    return [f for _, f in plan]


def test_default_is_every_frame_of_every_video(flies):
    ((video, frames),) = labels_frame_plan(flies)
    assert video is flies.videos[0] and frames == list(range(video.shape[0]))


def test_only_labeled_frame_selection_and_exclude_user_labeled(flies):
    labeled = sorted(lf.frame_idx for lf in flies.labeled_frames)
    assert frames_of(labels_frame_plan(flies, only_labeled=True)) == [labeled]
    assert frames_of(labels_frame_plan(flies, frames="0-9", only_labeled=True)) == [
        [f for f in labeled if f <= 9]
    ]
    # every labelled frame here holds user instances: nothing is left
    assert frames_of(labels_frame_plan(flies, only_labeled=True, exclude_user_labeled=True)) == [[]]
    unlabeled = labels_frame_plan(flies, exclude_user_labeled=True)[0][1]
    assert set(unlabeled).isdisjoint(labeled) and len(unlabeled) == flies.videos[0].shape[0] - len(
        labeled
    )


def test_only_suggested(flies):
    video = flies.videos[0]
    flies.suggestions = [sio.SuggestionFrame(video=video, frame_idx=i) for i in (3, 5, 7)]
    assert frames_of(labels_frame_plan(flies, only_suggested=True)) == [[3, 5, 7]]
    assert frames_of(labels_frame_plan(flies, only_suggested=True, frames="4-7")) == [[5, 7]]


def test_video_index(flies):
    assert len(labels_frame_plan(flies, video_index=0)) == 1
    with pytest.raises(ValueError, match="video_index 1 is out of range"):
        labels_frame_plan(flies, video_index=1)


def test_embedded_package_defaults_to_its_labelled_frames(shared_data):
    labels = load_labels(shared_data / "sleap_nn_assets/datasets/minimal_instance.pkg.slp")
    assert frames_of(labels_frame_plan(labels)) == [[0]]


def test_preprocessing_overrides_apply_to_the_right_model():
    from pipeline_lib.inference.predictors import InferenceOptions, preprocessing_with_overrides

    trained = {"scale": 0.5, "max_height": None, "max_width": None, "crop_size": 96}
    trained |= {"ensure_rgb": False, "ensure_grayscale": False}
    opts = InferenceOptions.from_dict(
        {"input_scale": 0.25, "max_height": 600, "ensure_grayscale": True, "crop_size": 128}
    )
    full = preprocessing_with_overrides(trained, opts, full_frame=True)
    assert (full["scale"], full["max_height"], full["max_width"]) == (0.25, 600, None)
    assert full["crop_size"] == 96 and full["ensure_grayscale"] and not full["ensure_rgb"]
    crop = preprocessing_with_overrides(trained, opts, full_frame=False)
    assert crop["scale"] == 0.5 and crop["crop_size"] == 128 and crop["ensure_grayscale"]
    assert preprocessing_with_overrides(trained, InferenceOptions(), True) == trained
    with pytest.raises(ValueError, match="input_scale"):
        InferenceOptions.from_dict({"input_scale": 0})
    with pytest.raises(ValueError, match="cannot both"):
        InferenceOptions.from_dict({"ensure_rgb": True, "ensure_grayscale": True})
