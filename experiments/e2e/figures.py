"""Training curves of the end-to-end runs: mean over seeds with the spread (min-max band), per variant.

``runs/<variant>/seed<k>/metrics.jsonl`` (veRL's file logger) are the inputs; curves are smoothed with a running
mean over ``SMOOTH`` steps (a step holds 16 trajectories, so single steps are noisy).
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np

from verl_ext.testing.report import read_steps

SMOOTH = 10
REWARD = "critic/score/mean"


def _series(metrics: dict[int, dict[str, float]], key: str) -> np.ndarray:
    steps = sorted(metrics)
    return np.array([metrics[s].get(key, np.nan) for s in steps], dtype=float)


def _smooth(values: np.ndarray) -> np.ndarray:
    out = np.empty_like(values)
    for i in range(len(values)):
        window = values[max(0, i - SMOOTH + 1) : i + 1]
        out[i] = np.nanmean(window) if np.isfinite(window).any() else np.nan

    return out


def _band(ax, runs: list[dict[int, dict[str, float]]], key: str, label: str, colour) -> None:
    length = min(len(r) for r in runs)
    curves = np.stack([_smooth(_series(r, key)[:length]) for r in runs])
    x = np.arange(1, length + 1)
    with warnings.catch_warnings():  # a bin no trajectory reached at some step has no value there (a gap)
        warnings.simplefilter("ignore", RuntimeWarning)
        ax.plot(x, np.nanmean(curves, 0), color=colour, label=f"{label} (n={len(runs)})")
        if len(runs) > 1:
            ax.fill_between(x, np.nanmin(curves, 0), np.nanmax(curves, 0), color=colour, alpha=0.2)


def draw(runs_dir: Path, out: Path) -> list[Path]:
    """Write reward.png, scale_share.png and scale_acc.png to ``out``; their paths."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    variants = {}
    for variant_dir in sorted(p for p in runs_dir.iterdir() if p.is_dir()):
        runs = [read_steps(f) for f in sorted(variant_dir.glob("seed*/metrics.jsonl")) if f.stat().st_size]
        if runs:
            variants[variant_dir.name] = runs
    colours = dict(zip(variants, plt.cm.tab10.colors, strict=False))
    written = []

    fig, ax = plt.subplots(figsize=(6, 4))
    for name, runs in variants.items():
        _band(ax, runs, REWARD, name, colours[name])
    ax.set(xlabel="training step", ylabel=f"train reward ({SMOOTH}-step running mean)", title="Reward over training")
    ax.legend()
    fig.tight_layout()
    written.append(out / "reward.png")
    fig.savefig(written[-1], dpi=120)
    plt.close(fig)

    bins = sorted(
        {k.split("/")[1] for runs in variants.values() for k in runs[0][min(runs[0])] if k.startswith("scale/bin")}
    )
    for what, ylabel in (("share", "share of trajectories"), ("acc", "accuracy")):
        fig, axes = plt.subplots(1, len(bins), figsize=(4 * len(bins), 3.5), sharey=True, squeeze=False)
        for ax, b in zip(axes[0], bins, strict=True):
            for name, runs in variants.items():
                _band(ax, runs, f"scale/{b}/{what}", name, colours[name])
            ax.set(title=f"evidence scale {b}", xlabel="training step")
        axes[0][0].set_ylabel(f"{ylabel} ({SMOOTH}-step running mean)")
        axes[0][-1].legend(fontsize=8)
        fig.tight_layout()
        written.append(out / f"scale_{what}.png")
        fig.savefig(written[-1], dpi=120)
        plt.close(fig)
    return written
