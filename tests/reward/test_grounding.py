"""Box grounding on realistic RefCOCO answers: every box shape Qwen2.5-VL writes, mapped to original pixels."""

from __future__ import annotations

import numpy as np
import pytest

from verl_ext.geometry import Frame
from verl_ext.reward import compute_score
from verl_ext.reward.base import RewardOptions
from verl_ext.reward.grounding import frame_of, parse_box, score_grounding

# A 1280x960 photo that the model sees at 640x480: every resized coordinate doubles.
INFO = {"image_width": 1280, "image_height": 960, "resized_width": 640, "resized_height": 480}
TRUTH = [200.0, 100.0, 600.0, 500.0]  # original pixels; in the model's frame: [100, 50, 300, 250]
DEFAULTS = RewardOptions()

BOXES = [
    ("json", '{"bbox_2d": [100, 50, 300, 250], "label": "man on the left"}', 1.0),
    ("json list", '[{"bbox_2d": [100, 50, 300, 250], "label": "man"}, {"bbox_2d": [0, 0, 10, 10]}]', 1.0),
    ("code fence", '```json\n[\n  {"bbox_2d": [100, 50, 300, 250], "label": "man"}\n]\n```', 1.0),
    ("bare list", "[100, 50, 300, 250]", 1.0),
    ("sloppy spacing", "[ 100,50 , 300.0,250 ]", 1.0),
    ("corner pairs", "(100,50),(300,250)", 1.0),
    ("corner pairs spaced", "The man is at (100, 50), (300, 250).", 1.0),
    ("half overlap", "[100, 50, 200, 250]", 0.5),
    ("partly outside the image", "[100, 50, 300, 900]", 400 / 860),  # clipped: y2 1800 -> 960 original px
    ("entirely outside", "[700, 500, 900, 700]", 0.0),
    ("degenerate line", "[100, 50, 100, 250]", 0.0),
    ("corners swapped", "[300, 250, 100, 50]", 0.0),
    ("three numbers", "[100, 50, 300]", 0.0),
    ("no box", "the man on the left", 0.0),
    ("overflowing number", "[100, 50, 300, " + "9" * 400 + "]", 0.0),
]


@pytest.mark.parametrize(("case", "answer", "expected_iou"), BOXES, ids=[b[0] for b in BOXES])
def test_box_shapes(case, answer, expected_iou):
    result = score_grounding(answer, TRUTH, INFO, DEFAULTS)
    assert result.iou == pytest.approx(expected_iou)
    assert result.score == pytest.approx(expected_iou)
    assert result.acc == (1.0 if expected_iou >= 0.5 else 0.0)


def test_partly_outside_box_is_clipped_before_iou():
    truth = [200.0, 100.0, 600.0, 960.0]  # reaches the bottom edge
    assert score_grounding("[100, 50, 300, 900]", truth, INFO, DEFAULTS).iou == pytest.approx(1.0)


def test_acc_mode_scores_the_indicator():
    acc_mode = RewardOptions(grounding_mode="acc@0.5")
    low = score_grounding("[100, 50, 180, 250]", TRUTH, INFO, acc_mode)  # IoU 0.4
    high = score_grounding("[100, 50, 290, 250]", TRUTH, INFO, acc_mode)  # IoU 0.95
    assert (low.score, low.acc, low.iou) == (0.0, 0.0, pytest.approx(0.4))
    assert (high.score, high.acc, high.iou) == (1.0, 1.0, pytest.approx(0.95))


def test_without_resized_size_the_frame_comes_from_the_rows_pixel_bounds():
    """The dataset hook writes the run's data.min_pixels/max_pixels into every row: smart_resize of those."""
    info = {"image_width": 7680, "image_height": 4320, "min_pixels": 3136, "max_pixels": 401408}
    frame = Frame.of(7680, 4320, 3136, 401408)
    assert (frame.resized_width, frame.resized_height) == (840, 448)
    truth = list(frame.to_original([84, 44.8, 420, 224]))
    assert frame_of(info) == frame
    assert score_grounding("[84, 44.8, 420, 224]", truth, info, DEFAULTS).iou == pytest.approx(1.0)
    # Changing the run's max_pixels alone changes the frame the reward maps boxes with.
    smaller = {**info, "max_pixels": 100352}
    assert frame_of(smaller).resized_width < frame.resized_width


def test_a_row_without_a_frame_scores_zero_instead_of_guessing_qwens_default(caplog):
    """No resized size and no pixel bounds: Qwen's 12.8 MP default would score this perfect box about 0.3."""
    frame = Frame.of(7680, 4320, 3136, 401408)
    truth = list(frame.to_original([84, 44.8, 420, 224]))
    for info in (
        {"image_width": 7680, "image_height": 4320},
        {"image_width": 7680, "image_height": 4320, "max_pixels": 401408},
        {"image_width": 7680, "image_height": 4320, "min_pixels": 3136, "max_pixels": 2000},  # max below min
    ):
        assert score_grounding("[84, 44.8, 420, 224]", truth, info, DEFAULTS) == (0.0, 0.0, 0.0)


@pytest.mark.parametrize(
    "bounds",
    [
        {"min_pixels": 3136, "max_pixels": 2000},
        {"min_pixels": 1, "max_pixels": 2000},
        {"min_pixels": 1, "max_pixels": 1},
        {"min_pixels": 3136, "max_pixels": 10**400},
        {"min_pixels": 10**300, "max_pixels": 10**301},
    ],
)
def test_pixel_bounds_below_qwens_minimum_never_raise(bounds):
    """smart_resize asserts max >= min and floors thin sides to 0: compute_score must not raise on such rows."""
    info = {"image_width": 640, "image_height": 480, **bounds}
    out = compute_score("refcoco", "<think>a</think><answer>[0, 0, 10, 10]</answer>", [0, 0, 10, 10], info)
    assert out["format"] == 1.0 and 0.0 <= out["iou"] <= 1.0


def test_reward_kwargs_no_longer_take_pixel_bounds():
    with pytest.raises(ValueError, match="max_pixels"):
        compute_score("refcoco", "<answer>[0, 0, 1, 1]</answer>", [0, 0, 1, 1], INFO, max_pixels=401408)


def test_injected_resized_size_wins_over_pixel_bounds():
    info = {**INFO, "min_pixels": 4 * 28 * 28, "max_pixels": 8 * 28 * 28}
    assert frame_of(info) == Frame(1280, 960, 640, 480)


def test_first_box_counts():
    assert parse_box('[{"bbox_2d": [1, 2, 3, 4]}, {"bbox_2d": [5, 6, 7, 8]}]') == (1, 2, 3, 4)
    assert parse_box('bbox [9, 9, 9, 9] then {"bbox_2d": [1, 2, 3, 4]}') == (1, 2, 3, 4)  # bbox_2d first


def test_ground_truth_as_numpy_and_bad_row_data_score_zero():
    assert score_grounding("[100, 50, 300, 250]", np.array(TRUTH), INFO, DEFAULTS).iou == pytest.approx(1.0)
    for truth in ([1, 2, 3], [5, 5, 1, 1], "200,100,600,500", None, [0, 0, float("nan"), 1]):
        assert score_grounding("[100, 50, 300, 250]", truth, INFO, DEFAULTS) == (0.0, 0.0, 0.0)
    for info in ({}, {"image_width": "1280", "image_height": 960}, {"image_width": 1, "image_height": 10**6}):
        assert score_grounding("[100, 50, 300, 250]", TRUTH, info, DEFAULTS) == (0.0, 0.0, 0.0)
    assert score_grounding(None, TRUTH, INFO, DEFAULTS) == (0.0, 0.0, 0.0)


def test_a_row_whose_image_has_no_resized_frame_scores_zero_without_raising():
    extra = {"image_width": 28, "image_height": 1807, "min_pixels": 3136, "max_pixels": 50176}
    out = compute_score("refcoco", "<think>a</think><answer>[0, 0, 10, 10]</answer>", [0, 0, 10, 10], extra)
    assert out["iou"] == 0.0 and out["acc"] == 0.0 and out["format"] == 1.0
