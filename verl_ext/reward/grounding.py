"""Box grounding (RefCOCO family): the answer's box, mapped to original pixels, IoU against ground truth.

Qwen2.5-VL writes boxes in absolute pixels of the resized frame it sees, in several shapes:
``{"bbox_2d": [x1, y1, x2, y2], "label": ...}``, a JSON list of those (the first box counts), a bare
``[x1, y1, x2, y2]``, or ``(x1,y1),(x2,y2)`` (the decoded form of ``<|box_start|>...<|box_end|>``). The box
is mapped to original pixels with the row's :class:`~verl_ext.geometry.Frame` and clipped to the image;
a box with x2 <= x1 or y2 <= y1 (degenerate, or corners swapped) covers nothing and scores IoU 0.

The frame comes from the row only, never from a default: ``resized_width``/``resized_height`` as the
dataset hook wrote them, else ``smart_resize`` of ``image_width``/``image_height`` with the row's
``min_pixels``/``max_pixels`` (the run's ``data.*`` bounds, which the hook writes into every row). A row
with neither scores 0 and is logged once: guessing Qwen's default 12.8 MP frame would score a perfect
box about 0.3.
"""

from __future__ import annotations

import math
import numbers
import re
from collections.abc import Mapping
from typing import Any

from verl_ext.answers import DECIMAL
from verl_ext.geometry import Frame, clamp, iou, is_finite_box
from verl_ext.reward.base import ZERO, AnswerScore, RewardOptions, warn_once

ACC_IOU_THRESHOLD = 0.5
_FRAME_KEYS = ("image_width", "image_height", "resized_width", "resized_height", "min_pixels", "max_pixels")
_NUM = rf"\s*+({DECIMAL})\s*+"
_BOX_SHAPES = (
    re.compile(rf"bbox_2d\"?\s*+[:=]\s*+\[{_NUM},{_NUM},{_NUM},{_NUM}\]"),
    re.compile(rf"\[{_NUM},{_NUM},{_NUM},{_NUM}\]"),
    re.compile(rf"\({_NUM},{_NUM}\)\s*+,?+\s*+\({_NUM},{_NUM}\)"),
)


def parse_box(answer: str) -> tuple[float, float, float, float] | None:
    """The first box ``answer`` holds, as written (resized frame), trying the shapes in order; None if none."""
    for shape in _BOX_SHAPES:
        match = shape.search(answer)
        if match:
            x1, y1, x2, y2 = (float(v) for v in match.groups())
            return (x1, y1, x2, y2)
    return None


def frame_of(extra_info: Mapping[str, Any]) -> Frame | None:
    """The row's frame: original size, and the resized size as written or from the row's pixel bounds."""
    width, height = _positive_int(extra_info.get("image_width")), _positive_int(extra_info.get("image_height"))
    if width is None or height is None:
        return None
    resized_w = _positive_int(extra_info.get("resized_width"))
    resized_h = _positive_int(extra_info.get("resized_height"))
    if resized_w is not None and resized_h is not None:
        return Frame(width, height, resized_w, resized_h)
    min_pixels = _positive_int(extra_info.get("min_pixels"))
    max_pixels = _positive_int(extra_info.get("max_pixels"))
    if min_pixels is None or max_pixels is None or max_pixels < min_pixels:
        return None
    try:
        return Frame.of(width, height, min_pixels, max_pixels)
    except (ValueError, ArithmeticError):  # smart_resize refuses extreme aspect ratios and empty frames
        return None


def box_iou(answer: str, truth: tuple[float, float, float, float], frame: Frame) -> float:
    """IoU in original pixels of the answer's box with ``truth``; 0 when the answer holds no usable box."""
    box = parse_box(answer)
    if box is None or not is_finite_box(box):
        return 0.0
    mapped = clamp(frame.to_original(box), frame.width, frame.height)
    if not is_finite_box(mapped):
        return 0.0
    return min(max(iou(mapped, truth), 0.0), 1.0)


def score_grounding(
    answer: str | None, ground_truth: Any, extra_info: Mapping[str, Any], options: RewardOptions
) -> AnswerScore:
    """score = IoU or the Acc@0.5 indicator (``grounding_mode``); acc = Acc@0.5; iou = IoU."""
    truth = _truth_box(ground_truth)
    if truth is None:
        warn_once("grounding ground truth is not [x1, y1, x2, y2], x2 > x1, y2 > y1: rows score 0", repr(ground_truth))
        return AnswerScore(0.0, 0.0, 0.0)
    frame = frame_of(extra_info)
    if frame is None:
        sizes = {k: extra_info.get(k) for k in _FRAME_KEYS}
        warn_once(
            "grounding rows need image_width/image_height and resized_width/resized_height or min_pixels <= "
            "max_pixels that smart_resize accepts (the dataset hook writes them): rows score 0",
            repr(sizes),
        )
        return AnswerScore(0.0, 0.0, 0.0)
    if answer is None:
        return ZERO._replace(iou=0.0)
    value = box_iou(answer, truth, frame)
    acc = float(value >= ACC_IOU_THRESHOLD)
    return AnswerScore(value if options.grounding_mode == "iou" else acc, acc, value)


def _truth_box(ground_truth: Any) -> tuple[float, float, float, float] | None:
    if hasattr(ground_truth, "tolist"):
        ground_truth = ground_truth.tolist()
    if not isinstance(ground_truth, (list, tuple)) or len(ground_truth) != 4:
        return None
    if not all(isinstance(v, numbers.Real) and not isinstance(v, bool) for v in ground_truth):
        return None
    box = tuple(float(v) for v in ground_truth)
    if not all(math.isfinite(v) for v in box) or box[2] <= box[0] or box[3] <= box[1]:
        return None
    return box


def _positive_int(value: Any) -> int | None:
    """A whole number >= 1 below 2**53 (any int, float or numpy scalar), else None."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        return None
    try:
        value = float(value)
    except OverflowError:  # an int beyond float range
        return None
    if not math.isfinite(value) or value < 1 or value >= 2**53 or value != int(value):
        return None
    return int(value)
