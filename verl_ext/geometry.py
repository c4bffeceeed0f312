"""One coordinate frame, written down (docs/design.md, section 4).

Qwen2.5-VL sees an image resized by ``qwen_vl_utils.smart_resize`` and writes boxes as absolute
pixels of that resized frame. Ground truth, crops and evidence scales live in the original frame.
Every conversion between the two goes through this module.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

#: Qwen2.5-VL: 14 px patches merged 2x2, so resized sides are multiples of 28.
FACTOR = 28
#: qwen_vl_utils' defaults for images (4 and 16384 tokens of 28x28 px).
DEFAULT_MIN_PIXELS = 4 * FACTOR * FACTOR
DEFAULT_MAX_PIXELS = 16384 * FACTOR * FACTOR
#: The smallest side a zoom crop may have, in original pixels.
MIN_SIDE = 28
#: Aspect ratios at or above this are rejected (smart_resize refuses > 200).
MAX_ASPECT = 200.0

Box = tuple[float, float, float, float]


@dataclass(frozen=True)
class Frame:
    """An original image size and the size the model sees after smart_resize."""

    width: int
    height: int
    resized_width: int
    resized_height: int

    @classmethod
    def of(
        cls,
        width: int,
        height: int,
        min_pixels: int | None = None,
        max_pixels: int | None = None,
        factor: int = FACTOR,
    ) -> Frame:
        rw, rh = resized_size(width, height, min_pixels, max_pixels, factor)
        return cls(int(width), int(height), rw, rh)

    def to_original(self, box: Sequence[float]) -> Box:
        """Map a box from the resized frame to original pixels (not clamped)."""
        sx, sy = self.width / self.resized_width, self.height / self.resized_height
        x1, y1, x2, y2 = (float(v) for v in box)
        return (x1 * sx, y1 * sy, x2 * sx, y2 * sy)

    def to_resized(self, box: Sequence[float]) -> Box:
        """Map a box from original pixels to the resized frame (not clamped)."""
        sx, sy = self.resized_width / self.width, self.resized_height / self.height
        x1, y1, x2, y2 = (float(v) for v in box)
        return (x1 * sx, y1 * sy, x2 * sx, y2 * sy)


def resized_size(
    width: int,
    height: int,
    min_pixels: int | None = None,
    max_pixels: int | None = None,
    factor: int = FACTOR,
) -> tuple[int, int]:
    """(width, height) the Qwen processor gives an image, from ``qwen_vl_utils.smart_resize``.

    Raises ValueError for aspect ratios smart_resize refuses and for frames it would make empty.
    """
    # Imported here: qwen_vl_utils pulls in torch and torchvision (seconds), which box arithmetic never needs.
    from qwen_vl_utils import smart_resize

    min_pixels = DEFAULT_MIN_PIXELS if min_pixels is None else int(min_pixels)
    max_pixels = DEFAULT_MAX_PIXELS if max_pixels is None else int(max_pixels)
    h, w = smart_resize(int(height), int(width), factor=factor, min_pixels=min_pixels, max_pixels=max_pixels)
    if w < factor or h < factor:
        # smart_resize floors a very thin side to 0 under max_pixels: no model could see such an image.
        raise ValueError(f"a {width}x{height} image has an empty resized frame ({w}x{h}) at max_pixels={max_pixels}")
    return int(w), int(h)


def is_finite_box(box: object) -> bool:
    """True for a sequence of exactly four finite real numbers (bools excluded)."""
    if isinstance(box, (str, bytes)) or not isinstance(box, Sequence) or len(box) != 4:
        return False
    for v in box:
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
            return False
    return True


def area(box: Sequence[float]) -> float:
    x1, y1, x2, y2 = box
    return max(0.0, x2 - x1) * max(0.0, y2 - y1)


def clamp(box: Sequence[float], width: float, height: float) -> Box:
    """Clip a box to [0, width] x [0, height]."""
    x1, y1, x2, y2 = box
    return (min(max(x1, 0.0), width), min(max(y1, 0.0), height), min(max(x2, 0.0), width), min(max(y2, 0.0), height))


def expand_to_min_side(box: Sequence[float], width: float, height: float, min_side: float = MIN_SIDE) -> Box:
    """Grow each side shorter than ``min_side`` around its centre, shifted to stay inside the image."""
    x1, y1, x2, y2 = box
    x1, x2 = _grow(x1, x2, min(min_side, width), width)
    y1, y2 = _grow(y1, y2, min(min_side, height), height)
    return (x1, y1, x2, y2)


def _grow(lo: float, hi: float, side: float, limit: float) -> tuple[float, float]:
    if hi - lo >= side:
        return lo, hi
    centre = (lo + hi) / 2.0
    lo = min(max(centre - side / 2.0, 0.0), limit - side)
    return lo, lo + side


def aspect_ratio(box: Sequence[float]) -> float:
    """max(w, h) / min(w, h); inf for a box with a zero side."""
    w, h = box[2] - box[0], box[3] - box[1]
    short = min(w, h)
    return math.inf if short <= 0 else max(w, h) / short


def iou(a: Sequence[float], b: Sequence[float]) -> float:
    """Intersection over union of two xyxy boxes; 0 when the union is empty."""
    ix1, iy1 = max(a[0], b[0]), max(a[1], b[1])
    ix2, iy2 = min(a[2], b[2]), min(a[3], b[3])
    inter = area((ix1, iy1, ix2, iy2))
    union = area(a) + area(b) - inter
    return inter / union if union > 0 else 0.0


def xywh_to_xyxy(box: Sequence[float]) -> Box:
    """COCO [x, y, w, h] to [x1, y1, x2, y2]."""
    x, y, w, h = (float(v) for v in box)
    return (x, y, x + w, y + h)
