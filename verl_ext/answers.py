"""The answer grammar: answer types and how to read an option letter, yes/no, a number, or normalised text.

One home for data prep (which labels each row's ``answer_type``) and the reward (which reads the
prediction and the ground truth with the same parsers), so the two can never disagree on what a number
or a letter is. Each parser returns None when the text does not say one thing unambiguously, which the
scorers count as wrong. Every parser reads :func:`canonical` text (NFKC, no invisible format characters),
and every pattern here is linear in its input (possessive quantifiers where whitespace runs meet).
"""

from __future__ import annotations

import functools
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

#: "the correct answer is", "Option", "choice:" before a letter that is the whole answer or leads it.
_LEAD = r"(?:(?:the\s++)?(?:(?:correct|final|best|right)\s++)?(?:answer|option|choice)\s*+(?:is\s*+)?:?\s*+)?"
#: The whole answer is a letter: "B", "b", "(B)", "B.", "Option B", "the answer is (B)".
_LETTER_ALONE = re.compile(rf"{_LEAD}\(?\s*+([a-z])\s*+\)?[.:)]?", re.IGNORECASE)
#: A letter leads the answer, delimited, then text: "B. blue", "(B) blue", "B) blue", "Answer: B: the blue car".
_LETTER_LEADS = re.compile(rf"(?i:{_LEAD})(?:\(\s*+([A-Za-z])\s*+\)|([A-Za-z])[.:)])\s")
#: A letter after an answer phrase anywhere: "the answer is B because ...", "Answer: (B)", "I choose option C".
_PHRASE_LETTER = re.compile(
    r"(?i:\b(?:answer|option|choice|choose|chose|pick|select)\b(?:\s++(?:is|would\s++be|should\s++be|must\s++be))?+)"
    r"\s*+[:=-]?\s*+(?:\(\s*+([A-Za-z])\s*+\)|([A-Za-z])(?![\w'\u2019]))"
)
#: A capital letter in parentheses anywhere ("so (B)"): how options are labelled.
_PARENTHESISED = re.compile(r"\(\s*+([A-Z])\s*+\)")
#: An emphasised letter anywhere: "**B**", "__B__", "`B`", "*B*".
_EMPHASISED = re.compile(r"(?<!\w)(?:\*\*?|__|`)\s*+\(?([A-Za-z])\)?[.:)]?\s*+(?:\*\*?|__|`)(?!\w)")
#: A capital letter standing alone as a word: not a statement, but maybe a letter meant ("B because ...").
_BARE_CAPITAL = re.compile(r"(?<![\w'\u2019])([A-Z])(?![\w'\u2019])")
#: What may follow "A" or "I" for it to be a letter rather than the article or the pronoun.
_DELIMITED = re.compile(r"\s*+(?:[.,:;!?)]|$)")
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


def read_choice(text: str, options: Sequence[str] | None = None) -> str | None:
    """The option letter ``text`` chooses, upper case; None when it chooses none, or not exactly one.

    A stated letter decides (:func:`stated_letters`): several different ones, or one beyond the options, is no
    answer. Only when no letter is stated does the option's text count (:func:`match_option`), and not when the
    answer also has a capital letter standing alone that may name an option ("B because the red car ..."): reading
    the text then could credit an option the answer did not choose. Without ``options`` only letters count.
    """
    text = canonical(text)
    count = len(options) if options else None
    letters = stated_letters(text, options)
    if letters:
        letter = letters.pop() if len(letters) == 1 else None
        return letter if letter is not None and (count is None or ord(letter) - ord("A") < count) else None
    if not options or _names_a_letter(text, options):
        return None
    return match_option(text, options)


def stated_letters(text: str, options: Sequence[str] | None = None) -> set[str]:
    """Every option letter ``text`` states, upper case (docs/eval.md, "Reading a multiple-choice answer").

    A statement is the whole answer being a letter ("b", "(B).", "Option B"), a delimited letter leading it
    ("B. blue", "(B) blue", "B) blue"), a letter after an answer phrase anywhere ("the answer is B because ...",
    "Answer: (B)", "I choose option C"), a capital letter in parentheses, or an emphasised letter ("**B**"). "A"
    and "I" are English words too: after an answer phrase, "A" followed by an option's text is the article ("the
    answer is A red car"), "I" or a lower-case "a"/"i" followed by a word is not a letter.
    """
    text = canonical(text)
    letters = {m[1].upper() for m in _EMPHASISED.finditer(text)}
    plain = text.translate(_EMPHASIS).strip()
    if (whole := _LETTER_ALONE.fullmatch(plain)) is not None:
        return letters | {whole[1].upper()}
    if (leading := _LETTER_LEADS.match(plain)) is not None:
        letters.add((leading[1] or leading[2]).upper())
    letters.update(m[1] for m in _PARENTHESISED.finditer(plain))
    for match in _PHRASE_LETTER.finditer(plain):
        if match[1]:
            letters.add(match[1].upper())
        elif _is_letter_word(match[2], plain, match.end(), options):
            letters.add(match[2].upper())
    return letters


def _is_letter_word(letter: str, text: str, end: int, options: Sequence[str] | None) -> bool:
    """Whether ``letter``, a word after an answer phrase ending at ``end`` of ``text``, is an option letter."""
    if letter not in "AaIi" or _DELIMITED.match(text, end):
        return True
    if letter != "A":  # "a" is the article, "I"/"i" the pronoun when a word follows
        return False
    return not options or not _starts_with_option(text[end : end + max(map(len, options)) + 64], options)


def _starts_with_option(text: str, options: Sequence[str]) -> bool:
    """Whether ``text`` begins with one of the options' texts ("red car is ..." for "red car")."""
    texts = _option_texts(options)
    said = normalize_text(text)
    return any(t and (said == t or said.startswith(t + " ")) for t in texts)


def _names_a_letter(text: str, options: Sequence[str]) -> bool:
    """Whether ``text`` has a capital letter standing alone that may be one of the options' letters.

    Options' own texts are left out first ("Vitamin C", "Plan B"); "A" and "I" count only when delimited
    ("A, B"), not before a word ("A bus", "I think").
    """
    for option in options:
        words = re.findall(r"\w+", canonical(_OPTION_PREFIX.sub("", option)))
        if words:
            said = r"(?<!\w)" + r"\W++".join(map(re.escape, words)) + r"(?!\w)"
            text = re.sub(said, "_", text, flags=re.IGNORECASE)  # a word, so "A bus" keeps its article
    text = text.translate(_EMPHASIS)
    for match in _BARE_CAPITAL.finditer(text):
        letter = match[1]
        if ord(letter) - ord("A") >= len(options):
            continue
        if letter not in "AI" or _DELIMITED.match(text, match.end()):
            return True
    return False


def match_option(text: str, options: Sequence[str]) -> str | None:
    """Letter of the option whose text ``text`` gives: an exact (normalised) match, else the only option named.

    An option named only inside a longer named option ("car" inside "blue car") does not count; named on its own
    as well ("car, or the blue car") it does, and then two options are named.
    """
    said = normalize_text(text)
    if not said:
        return None
    texts = _option_texts(options)
    exact = [i for i, t in enumerate(texts) if t and t == said]
    if exact:
        return chr(ord("A") + exact[0]) if len(exact) == 1 else None
    spans = {i: _word_spans(said, t) for i, t in enumerate(texts) if t}
    named = [i for i, own in spans.items() if any(not _inside(span, spans, texts, i) for span in own)]
    return chr(ord("A") + named[0]) if len(named) == 1 else None


def _option_texts(options: Sequence[str]) -> list[str]:
    return list(_normalized_options(tuple(options)))


@functools.lru_cache(maxsize=1024)
def _normalized_options(options: tuple[str, ...]) -> tuple[str, ...]:
    """Options' texts without their "A." label, normalised (cached: each is read once per answer phrase)."""
    return tuple(normalize_text(_OPTION_PREFIX.sub("", o)) for o in options)


def _word_spans(text: str, words: str) -> list[tuple[int, int]]:
    return [m.span() for m in re.finditer(rf"(?<!\w){re.escape(words)}(?!\w)", text)]


def _inside(span: tuple[int, int], spans: dict[int, list[tuple[int, int]]], texts: list[str], i: int) -> bool:
    """Whether ``span`` (option ``i`` named) lies within where a longer option is named."""
    return any(
        len(texts[j]) > len(texts[i]) and start <= span[0] and span[1] <= end
        for j, others in spans.items()
        for start, end in others
    )


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
