"""File-path entry point for ``reward.custom_reward_function.path``.

veRL executes a reward file under a fresh module name; this file only re-exports the package's
``compute_score``, so the data-source registry stays the single one in :mod:`verl_ext.reward.registry`.
"""

from verl_ext.reward.score import compute_score

__all__ = ["compute_score"]
