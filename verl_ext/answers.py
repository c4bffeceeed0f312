"""The answer grammar: answer types and how to read an option letter, yes/no, a number, or normalised text.

One home for data prep (which labels each row's ``answer_type``) and the reward (which reads the
prediction and the ground truth with the same parsers), so the two can never disagree on what a number
or a letter is. Each parser returns None when the text does not say one thing unambiguously, which the
scorers count as wrong.
"""

from __future__ import annotations

import math
import re
import string
from collections.abc import Sequence

#: Every answer type a row may declare in ``extra_info.answer_type`` (the reward infers it otherwise).
ANSWER_TYPES = ("multiple_choice", "yes_no", "number", "math", "open")

_ARTICLES = re.compile(r"\b(?:a|an|the)\b")
_PUNCT = str.maketrans(string.punctuation, " " * len(string.punctuation))

#: "B", "(B)", "B.", "b)", "Option B", "the answer is (B)": nothing else in the text.
_LETTER_ALONE = re.compile(
    r"(?:(?:the\s+)?(?:correct\s+)?(?:answer|option|choice)\s*(?:is\s*)?:?\s*)?\(?([a-z])\)?[.:)]?",
    re.IGNORECASE,
)
#: "B. blue", "(B) blue", "Option B: blue": an upper-case letter, a delimiter, then the option's text.
_LETTER_THEN_TEXT = re.compile(r"(?:(?i:option|choice)\s*)?(?:\(([A-Z])\)|([A-Z])[.:)])\s+\S.*", re.DOTALL)
_OPTION_PREFIX = re.compile(r"^\s*\(?[A-Z][.):]\s+")

_UNITS = (
    "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen sixteen "
    "seventeen eighteen nineteen"
).split()
_TENS = "twenty thirty forty fifty sixty seventy eighty ninety".split()
_WORD_VALUES = {w: float(i) for i, w in enumerate(_UNITS)} | {w: float(20 + 10 * i) for i, w in enumerate(_TENS)}
_NUMBER_WORD = rf"(?:(?:{'|'.join(_TENS)})[\s-](?:{'|'.join(_UNITS[1:10])})|{'|'.join(_WORD_VALUES)})"
_DIGITS = r"[-+]?(?:\d+(?:\.\d*)?|\.\d+)"
_NUMBER_TOKEN = re.compile(rf"(?<![\w.]){_DIGITS}(?![\w])|\b{_NUMBER_WORD}\b")
_THOUSANDS = re.compile(r"(?<=\d),(?=\d{3}\b)")


def normalize_text(text: str) -> str:
    """Lower case, punctuation and articles removed, whitespace collapsed (SQuAD-style)."""
    text = _ARTICLES.sub(" ", text.lower().translate(_PUNCT))
    return " ".join(text.split())


def parse_letter(text: str, num_options: int | None = None) -> str | None:
    """The option letter ``text`` names, upper case; None if none, or outside the first ``num_options`` letters."""
    text = text.strip()
    match = _LETTER_ALONE.fullmatch(text) or _LETTER_THEN_TEXT.fullmatch(text)
    if match is None:
        return None
    letter = next(g for g in match.groups() if g).upper()
    if num_options is not None and ord(letter) - ord("A") >= num_options:
        return None
    return letter


def match_option(text: str, options: Sequence[str]) -> str | None:
    """Letter of the option whose text ``text`` gives: an exact (normalised) match, else the only option named."""
    said = normalize_text(text)
    if not said:
        return None
    texts = [normalize_text(_OPTION_PREFIX.sub("", o)) for o in options]
    exact = [i for i, t in enumerate(texts) if t and t == said]
    named = exact or [i for i, t in enumerate(texts) if t and re.search(rf"\b{re.escape(t)}\b", said)]
    return chr(ord("A") + named[0]) if len(named) == 1 else None


def parse_yes_no(text: str) -> str | None:
    """ "yes" or "no": the first word if it is one, else the only one of the two the text contains."""
    words = normalize_text(text).split()
    if words and words[0] in ("yes", "no"):
        return words[0]
    said = {w for w in words if w in ("yes", "no")}
    return said.pop() if len(said) == 1 else None


def parse_number(text: str) -> float | None:
    """The number ``text`` states ("3", "3.0", "1,024", "three", "twenty-one", "50%"); None if none or several."""
    text = _THOUSANDS.sub("", text.strip().lower()).replace("%", "")
    values = {_token_value(t) for t in _NUMBER_TOKEN.findall(text)}
    values.discard(None)
    return values.pop() if len(values) == 1 else None


def is_number(text: str) -> bool:
    """True when the whole of ``text`` is one number (what a numeric ground truth looks like)."""
    text = _THOUSANDS.sub("", text.strip().lower()).rstrip(".").replace("%", "").strip()
    return re.fullmatch(rf"{_DIGITS}|{_NUMBER_WORD}", text) is not None


def _token_value(token: str) -> float | None:
    if token in _WORD_VALUES:
        return _WORD_VALUES[token]
    parts = re.split(r"[\s-]", token)
    if len(parts) == 2 and parts[0] in _WORD_VALUES:
        return _WORD_VALUES[parts[0]] + _WORD_VALUES[parts[1]]
    value = float(token)
    return value if math.isfinite(value) else None


_BARE_LETTER = re.compile(r"\(?[A-Z]\)?\.?")
_MATH_MARKS = re.compile(r"[$\\^]")


def answer_type(truth: str, options: Sequence[str] | None = None) -> str:
    """Type of an answer from its ground truth (and whether the row lists options)."""
    if options or _BARE_LETTER.fullmatch(truth.strip()):
        return "multiple_choice"
    if normalize_text(truth) in ("yes", "no"):
        return "yes_no"
    if is_number(truth):
        return "number"
    if _MATH_MARKS.search(truth):
        return "math"
    return "open"
