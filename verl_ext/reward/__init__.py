"""Rewards for Ground-R1: VQA correctness, box grounding, format and the evidence scale SRPO bins on.

Recipe config (veRL loads the function by ``load_extern_object``; ``pkg://`` imports the installed package,
so it does not depend on the Ray worker's working directory)::

    reward:
      custom_reward_function:
        path: pkg://verl_ext.reward          # or an absolute path to verl_ext/reward/entry.py
        name: compute_score
        reward_kwargs:                       # all optional; defaults shown
          answer_weight: 0.9                 # score = answer_weight * answer + format_weight * format
          format_weight: 0.1
          grounding_mode: iou                # or "acc@0.5"
          evidence_mode: first               # or "last"
          evidence_missing: 1.0              # evidence_scale of a trajectory without a valid zoom
          math_timeout: 5.0
          judge:                             # LLM judge for open answers (docs/judge.md)
            enable: false
            base_url: null                   # external OpenAI-compatible API root; else veRL's reward-model router
            model_name: null                 # "model" of each request; null omits it
            timeout: 30.0                    # seconds per attempt
            max_retries: 2
            max_concurrency: 32
            max_tokens: 8
            max_reply_bytes: 65536           # a longer reply is a failure
            circuit_failures: 5              # endpoint failures in a row that open the circuit breaker
            circuit_open_s: 60.0             # seconds rows skip the judge before one probe

Every call returns the keys of :data:`verl_ext.reward_keys.REWARD_KEYS` as floats; ``iou`` is
``IOU_NOT_APPLICABLE`` (-1.0) on non-grounding rows. The project's data sources and their scorers are the
table in :mod:`verl_ext.data_sources`; add your own with :func:`register_data_source`. Grounding rows take
their coordinate frame from the row (the dataset hook writes it), never from a reward option.
"""

from verl_ext.reward.base import AnswerScore, RewardOptions, Scorer
from verl_ext.reward.grounding import score_grounding
from verl_ext.reward.judge import judge_step_metrics
from verl_ext.reward.registry import UnknownDataSourceError, known_data_sources, register_data_source
from verl_ext.reward.score import compute_score
from verl_ext.reward.vqa import score_vqa
from verl_ext.reward_keys import IOU_NOT_APPLICABLE, REWARD_KEYS

__all__ = [
    "IOU_NOT_APPLICABLE",
    "REWARD_KEYS",
    "AnswerScore",
    "RewardOptions",
    "Scorer",
    "UnknownDataSourceError",
    "compute_score",
    "judge_step_metrics",
    "known_data_sources",
    "register_data_source",
    "score_grounding",
    "score_vqa",
]
