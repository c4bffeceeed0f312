"""``compute_score``: the one reward function veRL calls for every row (docs/design.md, section 6).

Composes the small scorers: the format of the turns, the answer scorer the row's data_source is
registered with (:mod:`verl_ext.data_sources`), and the evidence scale of the zoom records the tool left in
``extra_info``. The work per call is bounded: the response is read from its last 32 KB and every
pattern is linear (:mod:`verl_ext.reward.text`).

Raising: never on model output or row data (``solution_str``, ``ground_truth``, ``extra_info``: bad
row data scores 0 and is logged once). Configuration errors raise ValueError on the first row, which
stops the run at its first validation or training step rather than silently training on zeros: an
unregistered data_source (the message lists the known ones) or invalid ``reward_kwargs``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from verl_ext.evidence import ZOOM_RECORDS_KEY, evidence_scale
from verl_ext.reward.base import AnswerScore, RewardOptions, Scorer
from verl_ext.reward.format import format_score
from verl_ext.reward.judge import NOT_CALLED, JudgeOutcome, chat_url, judge_for
from verl_ext.reward.registry import scorer_for
from verl_ext.reward.text import assistant_turns, final_answer
from verl_ext.reward.vqa import score_vqa, typed_truths
from verl_ext.reward_keys import ACC, EVIDENCE_SCALE, FORMAT, IOU, NUM_ZOOMS, SCORE


def compute_score(
    data_source: str,
    solution_str: str,
    ground_truth: Any,
    extra_info: Mapping[str, Any] | None = None,
    **kwargs: Any,
) -> dict[str, float]:
    """Reward of one response: ``{score, acc, format, iou, evidence_scale, num_zooms}``.

    - ``format``: 1/0, see :mod:`verl_ext.reward.format`.
    - ``acc``: 1/0 correctness (Acc@0.5 for grounding); ``iou``: [0, 1] for grounding rows, -1.0 otherwise.
    - ``score`` = answer_weight * answer score + format_weight * format; the answer score is the
      VQA score (soft for open answers) or, for grounding, IoU or Acc@0.5 by ``grounding_mode``.
    - ``evidence_scale``: relative area of the first (``evidence_mode``) valid zoom, ``evidence_missing``
      (1.0) when there is none; ``num_zooms``: every zoom call the tool recorded, valid or not.
    - ``judge_*``: what the LLM judge did for this row (all 0, agree -1, without ``judge.enable``); with
      the judge, an open answer the rules did not accept scores its verdict (1 or 0), or keeps the rule
      score when the judge fails (:mod:`verl_ext.reward.judge`).
    """
    options = RewardOptions.from_kwargs(kwargs)
    router_address = kwargs.get("reward_router_address")
    if options.judge.enable:
        chat_url(options.judge, router_address)  # no endpoint is a configuration error, raised on the first row
    scorer = scorer_for(data_source)
    info = extra_info if isinstance(extra_info, Mapping) else {}
    turns = assistant_turns(solution_str if isinstance(solution_str, str) else "")
    fmt = format_score(turns)
    answer = final_answer(turns)
    rules = scorer(answer, ground_truth, info, options)
    judged = _judge(scorer, answer, ground_truth, info, rules, options, router_address)
    result = rules if judged.verdict is None else AnswerScore(float(judged.verdict), float(judged.verdict))
    records = info.get(ZOOM_RECORDS_KEY)
    return {
        SCORE: float(options.answer_weight * result.score + options.format_weight * fmt),
        ACC: float(result.acc),
        FORMAT: fmt,
        IOU: float(result.iou),
        EVIDENCE_SCALE: float(evidence_scale(records, options.evidence_mode, options.evidence_missing)),
        NUM_ZOOMS: float(count_zooms(records)),
        **judged.keys(rules.acc),
    }


def _judge(
    scorer: Scorer,
    answer: str | None,
    ground_truth: Any,
    info: Mapping[str, Any],
    rules: AnswerScore,
    options: RewardOptions,
    router_address: str | None,
) -> JudgeOutcome:
    """The judge's outcome for a VQA row with open ground truths the rules did not accept; else NOT_CALLED."""
    if not options.judge.enable or scorer is not score_vqa or answer is None or rules.acc >= 1.0:
        return NOT_CALLED
    truths = [t for t, kind in typed_truths(ground_truth, info) if kind == "open"]
    if not truths:
        return NOT_CALLED
    question = info.get("question") if isinstance(info.get("question"), str) else ""
    truth = truths[0] if len(truths) == 1 else "any of: " + " | ".join(truths)
    return judge_for(options.judge, router_address).verdict(question, truth, answer)


def count_zooms(records: Any) -> int:
    """Zoom calls the tool recorded (valid or not): the entries of the record list that are records."""
    if records is None or isinstance(records, (str, bytes, Mapping)):
        return 0
    try:
        return sum(1 for r in records if isinstance(r, Mapping))
    except TypeError:
        return 0
