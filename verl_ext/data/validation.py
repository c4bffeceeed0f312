"""Errors and checks of the converters: bad input is named (file and record), never silently dropped."""

from __future__ import annotations

from collections.abc import Sequence

from verl_ext.geometry import area, is_finite_box, xywh_to_xyxy

#: Annotation boxes may overshoot the image border by float rounding; up to this many pixels is clamped.
BORDER_TOLERANCE = 1.0


class DataPrepError(Exception):
    """Input that stops a conversion (a missing annotation file, an unreadable source)."""


class BadRecord(DataPrepError):
    """One record that cannot become a row; ``--skip-bad`` skips it and counts it under ``reason``."""

    def __init__(self, source: object, record: object, reason: str, detail: str = "") -> None:
        self.source = str(source)
        self.record = str(record)
        self.reason = reason
        self.detail = detail
        super().__init__(f"{self.source}: record {self.record}: {reason}" + (f" ({detail})" if detail else ""))


def check_box_xyxy(box: object, width: int, height: int, source: object, record: object) -> list[float]:
    """A finite ``[x1, y1, x2, y2]`` inside a ``width`` x ``height`` image with positive area, else BadRecord."""
    if not is_finite_box(box):
        raise BadRecord(source, record, "malformed box", repr(box))
    x1, y1, x2, y2 = (float(v) for v in box)  # type: ignore[union-attr]
    if area((x1, y1, x2, y2)) <= 0:
        raise BadRecord(source, record, "box with zero area", f"{[x1, y1, x2, y2]}")
    tol = BORDER_TOLERANCE
    if x1 < -tol or y1 < -tol or x2 > width + tol or y2 > height + tol:
        raise BadRecord(source, record, "box outside the image", f"{[x1, y1, x2, y2]} in {width}x{height}")
    return [max(x1, 0.0), max(y1, 0.0), min(x2, float(width)), min(y2, float(height))]


def check_box_xywh(box: object, width: int, height: int, source: object, record: object) -> list[float]:
    """COCO ``[x, y, w, h]`` converted once to ``[x1, y1, x2, y2]`` and checked like :func:`check_box_xyxy`."""
    if not is_finite_box(box):
        raise BadRecord(source, record, "malformed box", repr(box))
    return check_box_xyxy(list(xywh_to_xyxy(box)), width, height, source, record)  # type: ignore[arg-type]


def check_text(value: object, source: object, record: object, what: str) -> str:
    """A non-empty string (stripped), else BadRecord naming the field."""
    if not isinstance(value, str) or not value.strip():
        raise BadRecord(source, record, f"missing {what}", repr(value)[:80])
    return value.strip()


def check_letter(answer: object, options: Sequence[str], source: object, record: object) -> str:
    """The correct option letter (``A``...), which must name one of ``options``."""
    letter = str(answer).strip().upper() if answer is not None else ""
    if len(letter) != 1 or not "A" <= letter < chr(ord("A") + len(options)):
        raise BadRecord(source, record, "answer is not an option letter", f"{answer!r} with {len(options)} options")
    return letter
