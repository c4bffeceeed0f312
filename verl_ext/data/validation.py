"""Errors and checks of the converters: bad input is named (file and record), never silently dropped."""

from __future__ import annotations

import math
import numbers
import re
from collections.abc import Sequence

from verl_ext.answers import normalize_text
from verl_ext.geometry import area, clamp, xywh_to_xyxy
from verl_ext.special_tokens import template_tokens_in

#: Annotation boxes may overshoot the image border by float rounding; up to this many pixels is clamped.
BORDER_TOLERANCE = 1.0
#: Media placeholders veRL's dataset splits prompts on: a stray one makes its image count assert at load.
_MEDIA_TAG = re.compile(r"<(image|video|audio)>")
_IMAGE_TAG = re.compile(r"[ \t]*<image>[ \t]*")
#: Unpaired surrogates: what ``errors="surrogateescape"`` makes of bytes that are not UTF-8.
_SURROGATE = re.compile(r"[\ud800-\udfff]")
#: Output file names come from split names: one path component, no hidden files.
_SPLIT = re.compile(r"[A-Za-z0-9_+\-][A-Za-z0-9_.+\-]*")
#: Skip reason of a text that spells a chat-template token (counted in every summary).
SPECIAL_TOKEN = "special token in text"
#: The range of the parquet schema's integer columns (ids).
_INT64 = (-(2**63), 2**63 - 1)


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


def finite_number(value: object) -> float | None:
    """The converters' one reader of numbers from input: a real number as a finite float, else None.

    None for bools, strings, NaN, infinities and integers beyond float range (a 400-digit JSON integer, which
    ``float()`` refuses with OverflowError); ``-0.0`` is read as ``0.0``.
    """
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        return None
    try:
        number = float(value)
    except (OverflowError, ValueError, TypeError):
        return None
    return number + 0.0 if math.isfinite(number) else None


def finite_box(box: object) -> list[float] | None:
    """Four numbers read by :func:`finite_number` (a list or tuple of exactly four), else None."""
    if not isinstance(box, (list, tuple)) or len(box) != 4:
        return None
    values = [finite_number(v) for v in box]
    return None if None in values else values  # type: ignore[return-value]


def check_int(value: object, source: object, record: object, what: str) -> int:
    """An integer id (numpy's too) that fits the schema's int64 columns, else BadRecord ``malformed <what>``."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or not _INT64[0] <= value <= _INT64[1]:
        raise BadRecord(source, record, f"malformed {what}", f"{type(value).__name__} {shown(value)}")
    return int(value)


def shown(value: object) -> str:
    """A value for a message, cut short (Python refuses to write an integer of more than 4300 digits)."""
    try:
        return repr(value)[:80]
    except ValueError:
        return f"a {type(value).__name__} holding an integer too long to write"


def check_box_xyxy(box: object, width: int, height: int, source: object, record: object) -> list[float]:
    """A finite ``[x1, y1, x2, y2]`` inside a ``width`` x ``height`` image with positive area, else BadRecord."""
    values = finite_box(box)
    if values is None:
        raise BadRecord(source, record, "malformed box", shown(box))
    x1, y1, x2, y2 = values
    if area((x1, y1, x2, y2)) <= 0:
        raise BadRecord(source, record, "box with zero area", f"{[x1, y1, x2, y2]}")
    tol = BORDER_TOLERANCE
    if x1 < -tol or y1 < -tol or x2 > width + tol or y2 > height + tol:
        raise BadRecord(source, record, "box outside the image", f"{[x1, y1, x2, y2]} in {width}x{height}")
    return [max(x1, 0.0), max(y1, 0.0), min(x2, float(width)), min(y2, float(height))]


def check_box_xywh(box: object, width: int, height: int, source: object, record: object) -> list[float]:
    """COCO ``[x, y, w, h]`` converted once to ``[x1, y1, x2, y2]`` and checked like :func:`check_box_xyxy`."""
    values = finite_box(box)
    if values is None:
        raise BadRecord(source, record, "malformed box", shown(box))
    return check_box_xyxy(list(xywh_to_xyxy(values)), width, height, source, record)


def evidence_box(box: object, width: int, height: int, xywh: bool = False) -> tuple[list[float] | None, str | None]:
    """An evidence box (not the answer) clamped to the image: ``(box, note)``.

    Evidence never decides whether a row is kept: a box that overshoots the border is clamped (note
    "evidence boxes clamped to the image"), one that is malformed or has nothing inside the image is
    left out of the row (its own note). ``note`` is None when the box was used as given.
    """
    values = finite_box(box)
    if values is None:
        return None, "malformed evidence boxes left out"
    xyxy = xywh_to_xyxy(values) if xywh else tuple(values)
    inside = clamp(xyxy, float(width), float(height))
    if area(inside) <= 0:
        return None, "evidence boxes outside the image left out"
    note = None if inside == tuple(xyxy) else "evidence boxes clamped to the image"
    return [float(v) for v in inside], note


def check_text(value: object, source: object, record: object, what: str) -> str:
    """A non-empty string (stripped), else BadRecord naming the field; bytes that were not UTF-8 are refused,
    and so is text that spells a chat-template token (:func:`check_tokens`)."""
    if not isinstance(value, str) or not value.strip():
        raise BadRecord(source, record, f"missing {what}", shown(value))
    if _SURROGATE.search(value):
        raise BadRecord(source, record, "text is not UTF-8", f"{what}: {value.strip()[:60]!r}")
    return check_tokens(value.strip(), source, record, what)


def check_tokens(text: str, source: object, record: object, what: str) -> str:
    """``text`` unchanged, or BadRecord (:data:`SPECIAL_TOKEN`) when it spells a token of the chat template.

    Refused, not rewritten: the tokenizer would read ``<|image_pad|>`` as an image slot and ``<|im_end|>`` as the
    end of the turn, and any rewriting changes the text the model sees (docs/design.md, section 10).
    """
    tokens = template_tokens_in(text)
    if tokens:
        raise BadRecord(source, record, SPECIAL_TOKEN, f"{what} holds {', '.join(tokens)}")
    return text


def source_id(value: object, source: object, record: object) -> str:
    """A record's own id as the row's ``source_id`` text: a string, or a number :func:`finite_number` reads."""
    if not isinstance(value, str) and finite_number(value) is None:
        raise BadRecord(source, record, "malformed id", f"{type(value).__name__} {shown(value)}")
    return check_text(str(value), source, record, "id")


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
        raise BadRecord(source, record, f"malformed {what}", f"{type(value).__name__} {shown(value)}")
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
