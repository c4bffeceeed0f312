"""``compute_score``: the one reward function veRL calls for every row (DESIGN.md section 7).

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
from verl_ext.reward.base import RewardOptions
from verl_ext.reward.format import format_score
from verl_ext.reward.registry import scorer_for
from verl_ext.reward.text import assistant_turns, final_answer
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
    """
    options = RewardOptions.from_kwargs(kwargs)
    scorer = scorer_for(data_source)
    info = extra_info if isinstance(extra_info, Mapping) else {}
    turns = assistant_turns(solution_str if isinstance(solution_str, str) else "")
    fmt = format_score(turns)
    result = scorer(final_answer(turns), ground_truth, info, options)
    records = info.get(ZOOM_RECORDS_KEY)
    return {
        SCORE: float(options.answer_weight * result.score + options.format_weight * fmt),
        ACC: float(result.acc),
        FORMAT: fmt,
        IOU: float(result.iou),
        EVIDENCE_SCALE: float(evidence_scale(records, options.evidence_mode, options.evidence_missing)),
        NUM_ZOOMS: float(count_zooms(records)),
    }


def count_zooms(records: Any) -> int:
    """Zoom calls the tool recorded (valid or not): the entries of the record list that are records."""
    if records is None or isinstance(records, (str, bytes, Mapping)):
        return 0
    try:
        return sum(1 for r in records if isinstance(r, Mapping))
    except TypeError:
        return 0
