"""Per-scale-bin training diagnostics, logged every step whichever estimator runs.

Under GRPO the metrics show the bias SRPO removes: large-scale bins earn higher mean reward, so
small-scale bins carry negative mean advantage. Names live under ``scale/`` so veRL's console,
wandb and tensorboard loggers show them next to its own metrics.
"""

from __future__ import annotations

import torch

from verl_ext.algorithms.srpo import scale_bins


def bin_label(k: int, num_bins: int, bin_edges: tuple[float, ...] | None) -> str:
    """``bin0_0-33`` style label: index and the bin's range in percent of the image area."""
    edges = [0.0, *(bin_edges if bin_edges is not None else [i / num_bins for i in range(1, num_bins)]), 1.0]
    return f"bin{k}_{round(100 * edges[k])}-{round(100 * edges[k + 1])}"


def scale_bin_metrics(
    scales: torch.Tensor,
    rewards: torch.Tensor,
    advantages: torch.Tensor,
    acc: torch.Tensor | None,
    num_bins: int,
    bin_edges: tuple[float, ...] | None = None,
) -> dict[str, float]:
    """Share of trajectories, mean reward, mean advantage and accuracy per scale bin, plus the mean scale.

    All inputs are per trajectory, shape (bs,). Empty bins report a share of 0 and omit the means
    (a NaN would poison loggers' averages).
    """
    scales = torch.as_tensor(scales, dtype=torch.float64).reshape(-1)
    n = scales.numel()
    metrics: dict[str, float] = {"scale/evidence_scale_mean": float(scales.mean()) if n else 0.0}
    if n == 0:
        return metrics
    bins = scale_bins(scales, num_bins, bin_edges)
    columns = {"reward_mean": rewards, "adv_mean": advantages}
    if acc is not None:
        columns["acc"] = acc
    for k in range(num_bins):
        in_bin = bins == k
        count = int(in_bin.sum())
        label = bin_label(k, num_bins, bin_edges)
        metrics[f"scale/{label}/share"] = count / n
        if count:
            for name, values in columns.items():
                values = torch.as_tensor(values, dtype=torch.float64).reshape(-1)
                metrics[f"scale/{label}/{name}"] = float(values[in_bin].mean())
    return metrics
