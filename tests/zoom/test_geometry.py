"""Frame geometry the zoom tool relies on: round trips between frames, min-side growth, clamping, aspect limit."""

from __future__ import annotations

import math

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from PIL import Image
from qwen_vl_utils import smart_resize

from verl_ext.geometry import MAX_ASPECT, MIN_SIDE, Frame, area, clamp, expand_to_min_side
from verl_ext.tools.region_zoom import check_model_box, crop_original

BOUNDS = st.sampled_from(
    [(3136, 401408), (3136, 64 * 28 * 28), (3136, 16384 * 28 * 28), (256 * 28 * 28, 1280 * 28 * 28)]
)


@st.composite
def frames(draw, max_side: int = 12000) -> Frame:
    w = draw(st.integers(28, max_side))
    h = draw(st.integers(28, max_side))
    assume(max(w, h) / min(w, h) < MAX_ASPECT)
    bounds = draw(BOUNDS)
    # qwen_vl_utils' smart_resize floors a thin side to 0 under max_pixels: Frame.of refuses such images.
    assume(min(smart_resize(h, w, factor=28, min_pixels=bounds[0], max_pixels=bounds[1])) > 0)
    return Frame.of(w, h, *bounds)


@st.composite
def boxes_in(draw, width: float, height: float):
    x = sorted(draw(st.lists(st.floats(0, width), min_size=2, max_size=2)))
    y = sorted(draw(st.lists(st.floats(0, height), min_size=2, max_size=2)))
    return (x[0], y[0], x[1], y[1])


@settings(max_examples=300, deadline=None)
@given(data=st.data(), frame=frames())
def test_frames_round_trip(data, frame):
    # The frame is what qwen_vl_utils' smart_resize computes: multiples of 28.
    assert frame.resized_width % 28 == 0 and frame.resized_height % 28 == 0
    box = data.draw(boxes_in(frame.resized_width, frame.resized_height))
    back = frame.to_resized(frame.to_original(box))
    assert back == pytest.approx(box, abs=1e-6)
    assert frame.to_original((0, 0, frame.resized_width, frame.resized_height)) == pytest.approx(
        (0, 0, frame.width, frame.height)
    )


def test_frame_matches_smart_resize_of_an_8k_image():
    frame = Frame.of(7680, 4320, 3136, 401408)
    assert (frame.resized_height, frame.resized_width) == smart_resize(4320, 7680, 28, 3136, 401408)
    assert frame.to_original((0, 0, 28, 28))[2] > 200  # one model-frame patch is a wide region of the original


@settings(max_examples=200, deadline=None)
@given(data=st.data(), frame=frames(max_side=2500))
def test_crop_contains_the_box_stays_inside_and_is_at_least_28_px(data, frame):
    box = data.draw(boxes_in(frame.resized_width * 1.2, frame.resized_height * 1.2))
    assume(not check_model_box(box, frame))
    image = Image.new("L", (frame.width, frame.height))
    crop = crop_original(image, frame, box)
    if isinstance(crop, str):
        assert "too thin" in crop
        return
    x1, y1, x2, y2 = crop.box
    assert 0 <= x1 < x2 <= frame.width and 0 <= y1 < y2 <= frame.height
    assert x2 - x1 >= min(MIN_SIDE, frame.width) and y2 - y1 >= min(MIN_SIDE, frame.height)
    mapped = clamp(frame.to_original(box), frame.width, frame.height)
    assert x1 <= mapped[0] + 1e-6 and y1 <= mapped[1] + 1e-6 and x2 >= mapped[2] - 1e-6 and y2 >= mapped[3] - 1e-6
    assert crop.image.size == (x2 - x1, y2 - y1)
    assert crop.relative_area == pytest.approx(area(crop.box) / (frame.width * frame.height))
    assert 0 < crop.relative_area <= 1
    assert max(x2 - x1, y2 - y1) / min(x2 - x1, y2 - y1) < MAX_ASPECT


@pytest.mark.parametrize(
    "box, grown",
    [
        ((0, 0, 1, 1), (0, 0, 28, 28)),  # top-left corner: grows inward
        ((99, 99, 100, 100), (72, 72, 100, 100)),  # bottom-right corner: shifted back inside
        ((40, 10, 42, 90), (27, 10, 55, 90)),  # only the short side grows, around its centre
    ],
)
def test_min_side_growth_at_borders(box, grown):
    assert expand_to_min_side(clamp(box, 100, 100), 100, 100, MIN_SIDE) == pytest.approx(grown)


def test_image_smaller_than_min_side_gives_the_whole_side():
    assert expand_to_min_side((2, 2, 3, 3), 20, 50) == pytest.approx((0, 0, 20, 28))


@pytest.mark.parametrize("width, rejected", [(28 * 199, False), (28 * 200, True)])
def test_aspect_limit(width, rejected):
    frame = Frame(width=width, height=1000, resized_width=width, resized_height=1000)
    crop = crop_original(Image.new("L", (width, 1000)), frame, (0, 499, width, 501))  # grows to 28 px tall
    assert isinstance(crop, str) == rejected
    if not rejected:
        assert crop.box == (0, 486, width, 514) and math.isclose(crop.relative_area, 28 / 1000)


def test_a_frame_smart_resize_would_make_empty_is_an_error():
    # qwen_vl_utils floors the thin side of a 28x1807 image to 0 at max_pixels 50176.
    assert min(smart_resize(1807, 28, factor=28, min_pixels=3136, max_pixels=50176)) == 0
    with pytest.raises(ValueError, match="empty resized frame"):
        Frame.of(28, 1807, 3136, 50176)
