"""The answer grammar: answer types and how to read an option letter, yes/no, a number, or normalised text.

One home for data prep (which labels each row's ``answer_type``) and the reward (which reads the
prediction and the ground truth with the same parsers), so the two can never disagree on what a number
or a letter is. Each parser returns None when the text does not say one thing unambiguously, which the
scorers count as wrong. Every parser reads :func:`canonical` text (NFKC, no invisible format characters),
and every pattern here is linear in its input (possessive quantifiers where whitespace runs meet).
"""

from __future__ import annotations

import math
import re
import string
import unicodedata
from collections.abc import Sequence

#: Every answer type a row may declare in ``extra_info.answer_type`` (the reward infers it otherwise).
ANSWER_TYPES = ("multiple_choice", "yes_no", "number", "math", "open")

#: A decimal number as written in text and boxes: sign, digits, fraction, exponent ("-3", ".5", "1e5").
DECIMAL = r"[-+]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?"

_ARTICLES = re.compile(r"\b(?:a|an|the)\b")
_PUNCT = str.maketrans(string.punctuation, " " * len(string.punctuation))
#: NFKC keeps U+2212 MINUS SIGN; models write it for negative numbers.
_MINUS = str.maketrans({"\u2212": "-"})
#: Markdown emphasis and code marks around an answer ("**B**", "`B`").
_EMPHASIS = str.maketrans("", "", "*`")

#: "the correct answer is", "Option", "choice:" before a letter.
_LEAD = r"(?:(?:the\s++)?(?:correct\s++)?(?:answer|option|choice)\s*+(?:is\s*+)?:?\s*+)?"
#: "B", "(B)", "B.", "b)", "Option B", "the answer is (B)": nothing else in the text.
_LETTER_ALONE = re.compile(rf"{_LEAD}\(?([a-z])\)?[.:)]?", re.IGNORECASE)
#: "B. blue", "(B) blue", "The answer is (B) the blue car": an upper-case letter, a delimiter, then text.
_LETTER_THEN_TEXT = re.compile(rf"(?i:{_LEAD})(?:\(([A-Z])\)|([A-Z])[.:)])\s+\S.*", re.DOTALL)
_OPTION_PREFIX = re.compile(r"^\s*\(?[A-Z][.):]\s+")

_UNITS = (
    "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen sixteen "
    "seventeen eighteen nineteen"
).split()
_TENS = "twenty thirty forty fifty sixty seventy eighty ninety".split()
_SCALES = {"hundred": 100.0, "thousand": 1e3, "million": 1e6, "billion": 1e9}
_WORD_VALUES = {w: float(i) for i, w in enumerate(_UNITS)} | {w: float(20 + 10 * i) for i, w in enumerate(_TENS)}
_WORD = rf"(?:{'|'.join(sorted([*_WORD_VALUES, *_SCALES], key=len, reverse=True))})\b"
#: "three", "twenty-one", "one hundred and five", "two thousand".
_NUMBER_WORDS = rf"\b{_WORD}(?:(?:\s++and)?+[\s-]++{_WORD})*+"
#: The one number grammar: a decimal or a run of number words. ``is_number`` fullmatches it, ``parse_number``
#: finds it.
_NUMBER = re.compile(rf"(?P<decimal>(?<![\w.]){DECIMAL}(?!\w))|(?P<words>{_NUMBER_WORDS})")
_THOUSANDS = re.compile(r"(?<=\d),(?=\d{3}\b)")
#: "one" after these is a pronoun ("the one on the left"), not a count.
_DETERMINERS = frozenset("the this that which each every any no another a".split())
_PREVIOUS_WORD = re.compile(r"(\w+)\W*$")


def canonical(text: str) -> str:
    """NFKC (full-width letters, "（B）"), without invisible format characters (zero-width, bidi marks)."""
    text = unicodedata.normalize("NFKC", text)
    if text.isascii():
        return text
    return "".join(c for c in text if unicodedata.category(c) != "Cf").translate(_MINUS)


def normalize_text(text: str) -> str:
    """Lower case, punctuation and articles removed, whitespace collapsed (SQuAD-style)."""
    text = _ARTICLES.sub(" ", canonical(text).lower().translate(_PUNCT))
    return " ".join(text.split())


def parse_letter(text: str, num_options: int | None = None) -> str | None:
    """The option letter ``text`` names, upper case; None if none, or outside the first ``num_options`` letters."""
    text = canonical(text).translate(_EMPHASIS).strip()
    match = _LETTER_ALONE.fullmatch(text) or _LETTER_THEN_TEXT.fullmatch(text)
    if match is None:
        return None
    letter = next(g for g in match.groups() if g).upper()
    if num_options is not None and ord(letter) - ord("A") >= num_options:
        return None
    return letter


def match_option(text: str, options: Sequence[str]) -> str | None:
    """Letter of the option whose text ``text`` gives: an exact (normalised) match, else the only option named.

    An option named only as part of a longer named option ("car" inside "blue car") does not count.
    """
    said = normalize_text(text)
    if not said:
        return None
    texts = [normalize_text(_OPTION_PREFIX.sub("", o)) for o in options]
    exact = [i for i, t in enumerate(texts) if t and t == said]
    if exact:
        return chr(ord("A") + exact[0]) if len(exact) == 1 else None
    named = [i for i, t in enumerate(texts) if t and _contains_words(said, t)]
    named = [i for i in named if not any(j != i and _contains_words(texts[j], texts[i]) for j in named)]
    return chr(ord("A") + named[0]) if len(named) == 1 else None


def _contains_words(text: str, words: str) -> bool:
    return re.search(rf"\b{re.escape(words)}\b", text) is not None


def parse_yes_no(text: str) -> str | None:
    """ "yes" or "no": the first word if it is one, else the only one of the two the text contains."""
    words = normalize_text(text).split()
    if words and words[0] in ("yes", "no"):
        return words[0]
    said = {w for w in words if w in ("yes", "no")}
    return said.pop() if len(said) == 1 else None


def parse_number(text: str) -> float | None:
    """The number ``text`` states ("3", "−3", "1,024", "1e3", "three", "one hundred", "50%").

    None if it states none, or several different ones.
    """
    text = _number_text(text)
    values = set()
    for match in _NUMBER.finditer(text):
        if match["decimal"] is not None:
            values.add(float(match["decimal"]))
        elif not _is_pronoun(text, match):
            values.update(_word_numbers(match["words"]))
    finite = {v for v in values if math.isfinite(v)}
    return finite.pop() if len(finite) == 1 and len(values) == 1 else None


def is_number(text: str) -> bool:
    """True when the whole of ``text`` is one number (what a numeric ground truth looks like)."""
    text = _number_text(text).rstrip(".").strip()
    match = _NUMBER.fullmatch(text)
    return match is not None and parse_number(text) is not None


def _number_text(text: str) -> str:
    return _THOUSANDS.sub("", canonical(text).strip().lower()).replace("%", "")


def _is_pronoun(text: str, match: re.Match) -> bool:
    """ "one" alone after a determiner ("the one on the left")."""
    if match["words"] != "one":
        return False
    before = _PREVIOUS_WORD.search(text[max(0, match.start() - 16) : match.start()])
    return before is not None and before[1] in _DETERMINERS


def _word_numbers(phrase: str) -> list[float]:
    """Values of a run of number words; a word that cannot continue the number starts the next one."""
    numbers: list[float] = []
    total = current = 0.0
    previous: str | None = None
    for word in phrase.replace("-", " ").split():
        if word == "and":
            continue
        if word in _SCALES:
            if word == "hundred":
                current = (current or 1.0) * 100.0
            else:
                total, current = total + (current or 1.0) * _SCALES[word], 0.0
            previous = "scale"
            continue
        kind = "tens" if word in _TENS else "unit"
        continues = previous in (None, "scale") or (previous == "tens" and kind == "unit" and word != "zero")
        if not continues:
            numbers.append(total + current)
            total = current = 0.0
        current += _WORD_VALUES[word]
        previous = kind
    numbers.append(total + current)
    return numbers


_BARE_LETTER = re.compile(r"\(?[A-Z]\)?\.?")
_MATH_MARKS = re.compile(r"[$\\^]")


def answer_type(truth: str, options: Sequence[str] | None = None) -> str:
    """Type of an answer from its ground truth (and whether the row lists options)."""
    truth = canonical(truth)
    if options or _BARE_LETTER.fullmatch(truth.strip()):
        return "multiple_choice"
    if normalize_text(truth) in ("yes", "no"):
        return "yes_no"
    if is_number(truth):
        return "number"
    if _MATH_MARKS.search(truth):
        return "math"
    return "open"
