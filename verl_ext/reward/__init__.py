"""Rewards for Ground-R1: VQA correctness, box grounding, format and the evidence scale SRPO bins on.

Recipe config: ``reward.custom_reward_function.path=pkg://verl_ext.reward`` and ``name=compute_score``
(or ``path=<repo>/verl_ext/reward/entry.py``).
"""

from verl_ext.reward.base import IOU_NOT_APPLICABLE, AnswerScore, RewardOptions, Scorer
from verl_ext.reward.grounding import score_grounding
from verl_ext.reward.registry import UnknownDataSourceError, known_data_sources, register_data_source
from verl_ext.reward.score import REWARD_KEYS, compute_score
from verl_ext.reward.vqa import score_vqa

__all__ = [
    "IOU_NOT_APPLICABLE",
    "REWARD_KEYS",
    "AnswerScore",
    "RewardOptions",
    "Scorer",
    "UnknownDataSourceError",
    "compute_score",
    "known_data_sources",
    "register_data_source",
    "score_grounding",
    "score_vqa",
]
