"""Frame selection strings for prediction."""

import pytest

from pipeline_lib.inference.frames import parse_frame_selection


def test_ranges_lists_and_all():
    assert parse_frame_selection("0-3, 7,5-5,2", 10) == [0, 1, 2, 3, 5, 7]
    assert parse_frame_selection(None, 3) == [0, 1, 2]
    assert parse_frame_selection("", 2) == [0, 1]


@pytest.mark.parametrize(
    "text,match", [("3-1", "backwards"), ("0-10", "outside"), ("a-b", "Bad frame selection 'a-b'")]
)
def test_bad_selections_are_named(text, match):
    with pytest.raises(ValueError, match=match):
        parse_frame_selection(text, 10)
