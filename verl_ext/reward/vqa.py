"""VQA correctness: one small scorer per answer type, and the choice of type for a row.

Answer types (``extra_info["answer_type"]`` when data prep knows it, else inferred from the ground
truth): multiple_choice (the stated letter, else the option's text when ``extra_info["options"]`` holds them),
yes_no, number, math (``math_verify``), open (normalised exact match, else the mean ROUGE-1/2/L F1 as
a soft score; ``acc`` counts exact matches only). A ground truth may list several accepted answers:
the best one counts.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from rouge_score import rouge_scorer

from verl_ext.answers import (
    ANSWER_TYPES,
    answer_type,
    canonical,
    normalize_text,
    parse_number,
    parse_yes_no,
    read_choice,
)
from verl_ext.reward.base import ZERO, AnswerScore, RewardOptions, warn_once
from verl_ext.reward.mathcheck import math_equivalent

_ROUGE = rouge_scorer.RougeScorer(["rouge1", "rouge2", "rougeL"], use_stemmer=False)


def _indicator(ok: bool) -> AnswerScore:
    return AnswerScore(float(ok), float(ok))


def score_multiple_choice(answer: str, truth: str, options: Sequence[str] | None) -> AnswerScore:
    """Right when the answer chooses the correct option: the letter it states, else (with options) the option's
    text it gives (:func:`verl_ext.answers.read_choice`, the one reader for answers and ground truths)."""
    gold = read_choice(truth, options)
    return _indicator(gold is not None and read_choice(answer, options) == gold)


def score_yes_no(answer: str, truth: str) -> AnswerScore:
    gold = parse_yes_no(truth)
    return _indicator(gold is not None and parse_yes_no(answer) == gold)


def score_number(answer: str, truth: str) -> AnswerScore:
    gold, said = parse_number(truth), parse_number(answer)
    return _indicator(gold is not None and said is not None and math.isclose(said, gold, rel_tol=1e-6, abs_tol=1e-9))


def score_math(answer: str, truth: str, timeout: float) -> AnswerScore:
    return _indicator(math_equivalent(truth, answer, timeout))


def score_open(answer: str, truth: str) -> AnswerScore:
    """1 for a normalised exact match, else the mean ROUGE-1/2/L F1 (acc 0)."""
    if normalize_text(answer) == normalize_text(truth) != "":
        return AnswerScore(1.0, 1.0)
    scores = _ROUGE.score(truth, answer)
    soft = sum(s.fmeasure for s in scores.values()) / len(scores)
    return AnswerScore(min(max(soft, 0.0), 1.0), 0.0)


def score_vqa(
    answer: str | None, ground_truth: Any, extra_info: Mapping[str, Any], options: RewardOptions
) -> AnswerScore:
    """Best score of ``answer`` over the accepted ground-truth answers."""
    typed = typed_truths(ground_truth, extra_info)
    if not typed:
        warn_once("VQA ground truth holds no answer text: rows score 0", repr(ground_truth))
        return ZERO
    if answer is None:
        return ZERO
    answer = canonical(answer)
    choices = _options(extra_info.get("options"))
    return max(_SCORERS[kind](answer, truth, choices, options) for truth, kind in typed)


def typed_truths(ground_truth: Any, extra_info: Mapping[str, Any]) -> list[tuple[str, str]]:
    """Each accepted answer with its answer type (declared in extra_info, else inferred)."""
    choices = _options(extra_info.get("options"))
    declared = extra_info.get("answer_type")
    declared = declared if isinstance(declared, str) and declared in ANSWER_TYPES else None
    return [(t, declared or answer_type(t, choices)) for t in _truths(ground_truth)]


_SCORERS: dict[str, Callable[[str, str, Sequence[str] | None, RewardOptions], AnswerScore]] = {
    "multiple_choice": lambda a, t, choices, o: score_multiple_choice(a, t, choices),
    "yes_no": lambda a, t, choices, o: score_yes_no(a, t),
    "number": lambda a, t, choices, o: score_number(a, t),
    "math": lambda a, t, choices, o: score_math(a, t, o.math_timeout),
    "open": lambda a, t, choices, o: score_open(a, t),
}


def _truths(ground_truth: Any) -> list[str]:
    """Accepted answers as text: a string, a number, or a list/array of them (numpy arrives through Ray)."""
    if isinstance(ground_truth, (str, int, float)) and not isinstance(ground_truth, bool):
        items = [ground_truth]
    elif hasattr(ground_truth, "tolist") and not isinstance(ground_truth, Mapping):
        listed = ground_truth.tolist()
        items = listed if isinstance(listed, list) else [listed]
    elif isinstance(ground_truth, (list, tuple)):
        items = list(ground_truth)
    else:
        return []
    texts = [str(t) for t in items if isinstance(t, (str, int, float)) and not isinstance(t, bool)]
    return [canonical(t) for t in texts if t.strip()]


def _options(value: Any) -> list[str] | None:
    """Option texts in letter order, or None when the row has none (or they are not texts)."""
    if hasattr(value, "tolist"):
        value = value.tolist()
    if not isinstance(value, (list, tuple)) or not value or len(value) > 26:
        return None
    if not all(isinstance(o, str) for o in value):
        return None
    return list(value)
