"""Reward for the tiny CPU run (loaded by path through ``reward.custom_reward_function.path``).

A random model never answers, so the score must still vary within a group for GRPO to have a signal:
1 for the right letter inside <answer>, otherwise the share of distinct characters in the response.
Until the zoom tool runs in this demo, ``evidence_scale`` (what SRPO bins by) is a stand-in in [0, 1]:
the share of alphanumeric characters, so trajectories spread over the bins.
"""

from __future__ import annotations

import re


def compute_score(data_source: str, solution_str: str, ground_truth: str, extra_info: dict | None = None, **kw) -> dict:
    """Same keys for every sample; never raises on model output."""
    text = solution_str if isinstance(solution_str, str) else ""
    answers = re.findall(r"<answer>(.*?)</answer>", text, flags=re.DOTALL)
    acc = float(bool(answers) and answers[-1].strip().upper().startswith(str(ground_truth).upper()))
    diversity = len(set(text)) / len(text) if text else 0.0
    scale = sum(c.isalnum() for c in text) / len(text) if text else 1.0
    return {"score": acc if acc else diversity, "acc": acc, "diversity": diversity, "evidence_scale": scale}
