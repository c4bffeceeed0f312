"""SRPO (Scale Relative Policy Optimization) as a veRL advantage estimator: ``algorithm.adv_estimator=srpo``.

Cao et al., "Ground-R1: Thinking with Images via Scale Relative Policy Optimization" (arXiv 2505.20272).
Under GRPO, rollouts with large evidence regions earn higher rewards on average, so small-region rollouts
get consistently negative advantages. SRPO compares rollouts within bins of evidence scale, and rewards
the bin that does best. docs/design.md, section 3, is the specification; this module follows it line by line.
"""

from __future__ import annotations

import itertools
import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Optional

import numpy as np
import torch
from omegaconf.errors import OmegaConfBaseException
from verl.trainer.ppo.core_algos import register_adv_est
from verl.utils.config import omega_conf_to_dataclass
from verl.utils.groupwise import as_torch_index, group_mean_std

from verl_ext.algorithms.routing import current_routing

logger = logging.getLogger(__name__)

LAUNCH_HINT = (
    "SRPO needs each trajectory's evidence scale (relative area of its evidence box), which veRL's "
    "compute_advantage does not pass to estimators. Launch with the recipe entrypoint, "
    "`python -m recipe.ground_r1.main_ground_r1 algorithm.adv_estimator=srpo ...` (or "
    "examples/run_qwen2_5_vl_7b_srpo.sh), whose trainer routes `evidence_scale` from the reward's extra info, "
    "and use a reward function that returns `evidence_scale` (verl_ext.reward.compute_score does). "
    "To run the GRPO baseline instead, set algorithm.adv_estimator=grpo."
)


class SRPOConfigError(ValueError):
    """Invalid ``algorithm.srpo`` options or SRPO inputs."""


@dataclass(frozen=True)
class SRPOConfig:
    """Options under ``algorithm.srpo``; defaults are the paper's. Parsed with veRL's ``omega_conf_to_dataclass``.

    The evidence scale of a trajectory without a valid zoom is not an SRPO option: the reward computes every
    scale, so it is the reward's ``evidence_missing`` (one setting, one producer).
    """

    num_bins: int = 3
    #: Interior edges, strictly increasing in (0, 1); None = equal width.
    bin_edges: Optional[list[float]] = None  # noqa: UP045  (OmegaConf's structured configs need Optional)
    w_intra: float = 1.0
    w_inter: float = 1.0
    epsilon: float = 1e-6
    norm_adv_by_std: bool = True

    def __post_init__(self) -> None:
        if self.num_bins < 1:
            raise SRPOConfigError(f"algorithm.srpo.num_bins must be an integer >= 1, got {self.num_bins!r}")
        if self.bin_edges is not None:
            edges = tuple(float(e) for e in self.bin_edges)
            object.__setattr__(self, "bin_edges", edges)
            if len(edges) != self.num_bins - 1:
                raise SRPOConfigError(
                    f"algorithm.srpo.bin_edges must hold num_bins - 1 = {self.num_bins - 1} interior edges, "
                    f"got {list(edges)}"
                )
            if any(not (0.0 < e < 1.0) for e in edges):
                raise SRPOConfigError(f"algorithm.srpo.bin_edges must lie strictly inside (0, 1), got {list(edges)}")
            if any(b <= a for a, b in itertools.pairwise(edges)):
                raise SRPOConfigError(f"algorithm.srpo.bin_edges must be strictly increasing, got {list(edges)}")
        for name in ("w_intra", "w_inter", "epsilon"):
            value = getattr(self, name)
            if not math.isfinite(value) or value < 0:
                raise SRPOConfigError(f"algorithm.srpo.{name} must be a finite number >= 0, got {value!r}")
        if self.w_intra == 0 and self.w_inter == 0:
            raise SRPOConfigError("algorithm.srpo.w_intra and w_inter are both 0: every advantage would be 0")
        if self.norm_adv_by_std and self.epsilon <= 0:
            raise SRPOConfigError(
                "algorithm.srpo.epsilon must be > 0 with norm_adv_by_std: a bin of equal rewards has std 0, "
                f"and 0 / (0 + epsilon) is NaN for epsilon = {self.epsilon!r}"
            )

    @classmethod
    def from_algorithm_config(cls, config: Any) -> SRPOConfig:
        """Read ``config.srpo`` from veRL's ``algorithm`` config (DictConfig or dict); missing = the defaults.

        Types are checked the OmegaConf way (``"1"`` for a float is 1.0, ``"abc"`` is an error); every error
        names the option.
        """
        section = None if config is None else config.get("srpo")
        try:
            return omega_conf_to_dataclass(section or {}, cls)
        except SRPOConfigError:
            raise
        except (OmegaConfBaseException, TypeError, ValueError) as e:
            key = getattr(e, "full_key", "") or ""
            where = f"algorithm.srpo.{key}" if key else "algorithm.srpo"
            raise SRPOConfigError(f"invalid {where}: {str(e).splitlines()[0]}") from e


def scale_bins(scales: torch.Tensor, num_bins: int, bin_edges: Sequence[float] | None = None) -> torch.Tensor:
    """0-based bin of each evidence scale: ``min(floor(K * a), K - 1)``, or by explicit interior edges.

    With edges, a scale equal to an edge falls in the upper bin, like the half-open equal-width bins.
    """
    scales = torch.as_tensor(scales, dtype=torch.float64)
    if bin_edges is None:
        return torch.clamp(torch.floor(scales * num_bins), 0, num_bins - 1).to(torch.long)
    edges = torch.as_tensor(list(bin_edges), dtype=torch.float64, device=scales.device)
    return torch.bucketize(scales, edges, right=True).to(torch.long)


def validate_inputs(scores: torch.Tensor, scales: torch.Tensor) -> None:
    """Reject NaN/inf rewards and scales outside [0, 1] with an error that names the bad rows."""
    bad = ~torch.isfinite(scores)
    if bad.any():
        rows = torch.nonzero(bad).flatten()[:8].tolist()
        raise SRPOConfigError(f"SRPO got non-finite rewards at rows {rows}: {scores[bad][:8].tolist()}")
    bad = ~torch.isfinite(scales) | (scales < 0) | (scales > 1)
    if bad.any():
        rows = torch.nonzero(bad).flatten()[:8].tolist()
        raise SRPOConfigError(
            f"SRPO evidence scales must lie in [0, 1]; rows {rows} hold {scales[bad][:8].tolist()}. "
            "The reward's evidence_scale is area(box) / area(image) of a clamped box."
        )


def srpo_scalar_advantages(scores: torch.Tensor, group: torch.Tensor, scales: torch.Tensor, cfg: SRPOConfig):
    """Per-trajectory SRPO advantage (bs,), vectorised over all groups and bins with segment ops.

    ``group`` holds contiguous group ids (0..G-1). Returns ``(advantages, bins)``.
    """
    device = scores.device
    scores32 = scores.to(torch.float32)
    bins = scale_bins(scales, cfg.num_bins, cfg.bin_edges).to(device)
    n_groups = int(group.max().item()) + 1 if group.numel() else 0
    ones = torch.ones_like(scores32)

    # Intra-bin: normalise within each (group, bin) cell, exactly as veRL's vectorised GRPO does per group.
    cell = group * cfg.num_bins + bins
    cell_mean, cell_std, cell_count = group_mean_std(scores32, cell, eps=0.0, device=device)
    intra = scores32 - cell_mean[cell]
    if cfg.norm_adv_by_std:
        intra = intra / (cell_std[cell] + cfg.epsilon)
    intra = torch.where(cell_count[cell] > 1, intra, torch.zeros_like(intra))

    # Inter-bin: 1 for trajectories in the group's best occupied bin(s), then normalised over the group.
    n_cells = n_groups * cfg.num_bins
    cell_sum64 = torch.zeros(n_cells, dtype=torch.float64, device=device).index_add_(0, cell, scores.double())
    count64 = torch.zeros(n_cells, dtype=torch.float64, device=device).index_add_(0, cell, ones.double())
    occupied = count64 > 0
    mean64 = torch.where(occupied, cell_sum64 / count64.clamp_min(1), torch.full_like(count64, -math.inf))
    best = mean64.view(n_groups, cfg.num_bins).amax(dim=1)
    tol = 1e-9 * best.abs().clamp_min(1.0)
    r_inter = (mean64[cell] >= best[group] - tol[group]).to(torch.float32)
    g_mean, g_std, g_count = group_mean_std(r_inter, group, eps=0.0, device=device)
    inter = r_inter - g_mean[group]
    if cfg.norm_adv_by_std:
        inter = inter / (g_std[group] + cfg.epsilon)
    inter = torch.where(g_count[group] > 1, inter, torch.zeros_like(inter))

    return cfg.w_intra * intra + cfg.w_inter * inter, bins


def _warn_singletons(group: torch.Tensor) -> None:
    """Log once when some prompt group holds a single trajectory (its SRPO advantage is 0: it teaches nothing)."""
    global _warned_singletons
    if _warned_singletons or group.numel() == 0:
        return
    counts = torch.bincount(group)
    singles = int((counts == 1).sum())
    if singles:
        _warned_singletons = True
        logger.warning(
            "SRPO: %d of %d prompt groups hold one trajectory; their advantage is 0 (set rollout.n >= 2). "
            "Not repeated.",
            singles,
            int((counts > 0).sum()),
        )


_warned_singletons = False


@register_adv_est("srpo")
def compute_srpo_outcome_advantage(
    token_level_rewards: torch.Tensor,
    response_mask: torch.Tensor,
    index: np.ndarray,
    evidence_scale: np.ndarray | torch.Tensor | Sequence[float] | None = None,
    config: Any = None,
    **kwargs: Any,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Scale Relative Policy Optimization, outcome rewards only.

    For each prompt group of G trajectories with outcome reward r_i and evidence scale a_i in [0, 1]:

    - bin:    b_i = min(floor(K a_i), K - 1), or by ``bin_edges``
    - intra:  A_intra_i = (r_i - mean_{b_i}) / (std_{b_i} + eps); 0 for a bin holding one trajectory
    - inter:  r_inter_i = 1 if bin b_i has the highest mean reward among the group's occupied bins (ties all 1)
              A_inter_i = (r_inter_i - mean(r_inter)) / (std(r_inter) + eps) over the group
    - A_i = w_intra A_intra_i + w_inter A_inter_i, broadcast over response tokens (times ``response_mask``)

    std is unbiased as in veRL's GRPO; ``norm_adv_by_std=false`` drops the division (Dr.GRPO style). When every
    trajectory of a group of two or more falls in one bin, A equals veRL's GRPO advantage (times w_intra). A group
    of one has nothing to compare with and gets A = 0 (veRL's GRPO gives it r / (1 + eps)); the recipe refuses
    ``rollout.n=1`` with SRPO at start, and a warning is logged when a batch still holds such groups.

    Args:
        token_level_rewards: (bs, response_length) rewards; the outcome reward is their sum.
        response_mask: (bs, response_length).
        index: (bs,) group id of each trajectory (veRL's ``uid``).
        evidence_scale: (bs,) evidence scales in [0, 1]. When None, the scales routed by the recipe's trainer
            (:mod:`verl_ext.algorithms.routing`) are used; without either this raises with launch instructions.
        config: veRL's ``algorithm`` config; options come from ``config.srpo`` (:class:`SRPOConfig`).

    Returns:
        (advantages, returns), both (bs, response_length) and equal.
    """
    cfg = SRPOConfig.from_algorithm_config(config)
    routing = current_routing() if evidence_scale is None else None
    if evidence_scale is None and routing is None:
        raise SRPOConfigError(LAUNCH_HINT)

    with torch.no_grad():
        scores = token_level_rewards.sum(dim=-1)
        device = scores.device
        if routing is not None:
            if routing.scales.numel() != scores.numel():
                raise SRPOConfigError(
                    f"routed {routing.scales.numel()} evidence scales for a batch of {scores.numel()} trajectories"
                )
            scales = routing.scales.to(device)
            final_rows, row_to_final = routing.final_rows.to(device), routing.row_to_final.to(device)
        else:
            scales = torch.as_tensor(np.asarray(evidence_scale, dtype=np.float64), device=device).reshape(-1)
            if scales.numel() != scores.numel():
                raise SRPOConfigError(f"{scales.numel()} evidence scales for {scores.numel()} trajectories")
            final_rows = row_to_final = None
        validate_inputs(scores, scales)
        if len(index) != scores.numel():
            raise SRPOConfigError(f"index (uid) has {len(index)} entries for a batch of {scores.numel()} trajectories")

        group = as_torch_index(index, device=device)
        _warn_singletons(group if final_rows is None else group[final_rows])
        if final_rows is not None and final_rows.numel() != scores.numel():
            final_adv, _ = srpo_scalar_advantages(
                scores[final_rows], as_torch_index(group[final_rows], device=device), scales[final_rows], cfg
            )
            scalar = final_adv[row_to_final]
        else:
            scalar, _ = srpo_scalar_advantages(scores, group, scales, cfg)
        advantages = scalar.unsqueeze(-1) * response_mask
    return advantages, advantages
