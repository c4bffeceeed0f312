"""Errors and checks of the converters: bad input is named (file and record), never silently dropped."""

from __future__ import annotations

import re
from collections.abc import Sequence

from verl_ext.answers import normalize_text
from verl_ext.geometry import area, clamp, is_finite_box, xywh_to_xyxy

#: Annotation boxes may overshoot the image border by float rounding; up to this many pixels is clamped.
BORDER_TOLERANCE = 1.0
#: Media placeholders veRL's dataset splits prompts on: a stray one makes its image count assert at load.
_MEDIA_TAG = re.compile(r"<(image|video|audio)>")
_IMAGE_TAG = re.compile(r"[ \t]*<image>[ \t]*")
#: Unpaired surrogates: what ``errors="surrogateescape"`` makes of bytes that are not UTF-8.
_SURROGATE = re.compile(r"[\ud800-\udfff]")
#: Output file names come from split names: one path component, no hidden files.
_SPLIT = re.compile(r"[A-Za-z0-9_+\-][A-Za-z0-9_.+\-]*")


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


class Skipped(Exception):
    """A record that is not written and not an error (a duplicate): always skipped and counted under ``reason``."""

    def __init__(self, source: object, record: object, reason: str) -> None:
        self.reason = reason
        super().__init__(f"{source}: record {record}: {reason}")


def check_box_xyxy(box: object, width: int, height: int, source: object, record: object) -> list[float]:
    """A finite ``[x1, y1, x2, y2]`` inside a ``width`` x ``height`` image with positive area, else BadRecord."""
    if not is_finite_box(box):
        raise BadRecord(source, record, "malformed box", repr(box)[:80])
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
        raise BadRecord(source, record, "malformed box", repr(box)[:80])
    return check_box_xyxy(list(xywh_to_xyxy(box)), width, height, source, record)  # type: ignore[arg-type]


def evidence_box(box: object, width: int, height: int, xywh: bool = False) -> tuple[list[float] | None, str | None]:
    """An evidence box (not the answer) clamped to the image: ``(box, note)``.

    Evidence never decides whether a row is kept: a box that overshoots the border is clamped (note
    "evidence boxes clamped to the image"), one that is malformed or has nothing inside the image is
    left out of the row (its own note). ``note`` is None when the box was used as given.
    """
    if not is_finite_box(box):
        return None, "malformed evidence boxes left out"
    xyxy = xywh_to_xyxy(box) if xywh else tuple(float(v) for v in box)  # type: ignore[union-attr]
    inside = clamp(xyxy, float(width), float(height))
    if area(inside) <= 0:
        return None, "evidence boxes outside the image left out"
    note = None if inside == tuple(xyxy) else "evidence boxes clamped to the image"
    return [float(v) for v in inside], note


def check_text(value: object, source: object, record: object, what: str) -> str:
    """A non-empty string (stripped), else BadRecord naming the field; bytes that were not UTF-8 are refused."""
    if not isinstance(value, str) or not value.strip():
        raise BadRecord(source, record, f"missing {what}", repr(value)[:80])
    if _SURROGATE.search(value):
        raise BadRecord(source, record, "text is not UTF-8", f"{what}: {value.strip()[:60]!r}")
    return value.strip()


def check_prompt_text(value: object, source: object, record: object, what: str) -> str:
    """Text that goes into a prompt: :func:`check_text`, the data set's own ``<image>`` tags removed.

    ``<video>``/``<audio>`` are refused: veRL's dataset would read them as media slots the row has no media for.
    """
    text = check_text(value, source, record, what)
    tags = {m.group(1) for m in _MEDIA_TAG.finditer(text)}
    if tags - {"image"}:
        raise BadRecord(source, record, "media tag in text", f"{what} holds <{'>, <'.join(sorted(tags - {'image'}))}>")
    return check_text(_IMAGE_TAG.sub(" ", text), source, record, what) if tags else text


def optional_text(value: object, source: object, record: object, what: str) -> str | None:
    """A metadata string (category, data set name) or None; anything else is BadRecord."""
    if value is None:
        return None
    if not isinstance(value, str):
        raise BadRecord(source, record, f"malformed {what}", f"{type(value).__name__} {value!r}"[:80])
    return check_text(value, source, record, what) if value.strip() else None


def check_split(value: object, source: object, record: object) -> str:
    """A split name usable as an output file name (``train``, ``testA``): no ``/``, no leading dot."""
    split = check_text(value, source, record, "split")
    if not _SPLIT.fullmatch(split):
        raise BadRecord(source, record, "malformed split", f"{split!r} cannot name an output file")
    return split


def check_options(options: Sequence[str], source: object, record: object) -> list[str]:
    """At least two option texts, pairwise different once normalised (the reward matches answers by text)."""
    if len(options) < 2:
        raise BadRecord(source, record, "fewer than two options", repr(list(options))[:80])
    seen: dict[str, int] = {}
    for k, text in enumerate(options):
        key = normalize_text(text) or text
        if key in seen:
            first = chr(ord("A") + seen[key])
            raise BadRecord(source, record, "duplicate options", f"{first} and {chr(ord('A') + k)}: {text!r}")
        seen[key] = k
    return list(options)


def check_letter(answer: object, options: Sequence[str], source: object, record: object) -> str:
    """The correct option letter (``A``...), which must name one of ``options``."""
    letter = str(answer).strip().upper() if answer is not None else ""
    if len(letter) != 1 or not "A" <= letter < chr(ord("A") + len(options)):
        raise BadRecord(source, record, "answer is not an option letter", f"{answer!r} with {len(options)} options")
    return letter
