"""Scale bias at the estimator level: does GRPO suppress small, precise zooms, and does SRPO not?

    python experiments/scale_bias/run.py            # the full experiment (tables, curves, sweeps)
    python experiments/scale_bias/run.py --quick    # a pipeline check in seconds (few seeds, steps, cells)

A toy policy with two learnable parts, trained by REINFORCE with advantages from the real estimators, called
through veRL's registry (``get_adv_estimator_fn``): veRL's ``grpo``, this project's ``srpo`` and SRPO's two
ablations (``w_inter=0``: "Intra", ``w_intra=0``: "Inter").

Policy (per seed, shared by the prompts of a batch): a softmax over K evidence-scale bins (bin 0 = the smallest
boxes) and, per bin, a sigmoid "precise box" probability. A rollout picks a bin, then precise or not; its
evidence scale is a point inside that bin, and its reward is 1 (correct) with probability P(correct | bin,
precise) from :class:`RewardModel`, else 0. Each step samples ``prompts`` groups of ``group`` rollouts per
seed, computes the estimator's advantages, and takes one plain gradient step on the policy's logits
(loss = -mean(A * log pi), veRL's token-mean with one token per rollout).

Randomness: seed s draws every uniform from ``torch.Generator().manual_seed(s)``, and every estimator and every
sweep cell sees the same uniforms for that seed (common random numbers): differences between estimators are
paired per seed, and a seed follows the same path whatever else is batched with it.

Outputs under ``--out`` (default experiments/scale_bias/results): ``table.md`` and ``table.json`` (final
values, mean and 95% t-interval over seeds), ``metrics/<estimator>_seed<s>.jsonl`` (each seed's per-step
metrics written by veRL's own ``Tracking`` file logger, so :mod:`verl_ext.plots` draws them like a real run's),
``curves/*.png`` (drawn by :mod:`verl_ext.plots`), ``sweep_<name>.csv`` and ``sweep_<name>.png`` (region maps).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import math
import os
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from unittest import mock

import numpy as np
import torch
from matplotlib.colors import TwoSlopeNorm
from matplotlib.figure import Figure
from omegaconf import OmegaConf
from scipy import stats
from verl.trainer.ppo.core_algos import get_adv_estimator_fn
from verl.utils.tracking import Tracking

import verl_ext.algorithms.srpo  # noqa: F401  (registers "srpo" even where veRL's plugin entry point is not loaded)
from verl_ext import plots
from verl_ext.trainer.diagnostics import bin_label, scale_bin_metrics

HERE = Path(__file__).resolve().parent

#: name -> (veRL registry name, algorithm.srpo options). GRPO takes veRL's defaults (std-normalised, eps 1e-6)
#: from ``grpo_vectorized``: the same advantages as veRL's ``grpo`` (tests check it on this experiment's batches),
#: whose Python loop over rows would take 0.1 s a step here instead of 0.2 ms.
ESTIMATORS: dict[str, tuple[str, dict | None]] = {
    "grpo": ("grpo_vectorized", None),
    "srpo": ("srpo", {}),
    "srpo_intra": ("srpo", {"w_inter": 0.0}),
    "srpo_inter": ("srpo", {"w_intra": 0.0}),
}


@dataclass(frozen=True)
class RewardModel:
    """P(correct | bin, precise) for K bins: small boxes pay only when precise, large boxes are safe.

    Bin 0 (smallest): ``p_small_precise`` / ``p_small_imprecise``. Bin K-1 (largest): ``p_large`` whether
    precise or not. Bins between interpolate linearly in the bin index: p_k = (1 - t) p_small + t p_large,
    t = k / (K - 1).
    """

    p_small_precise: float = 0.9
    p_small_imprecise: float = 0.1
    p_large: float = 0.6

    def table(self, num_bins: int) -> torch.Tensor:
        """(K, 2) float64: column 0 imprecise, column 1 precise."""
        t = torch.linspace(0.0, 1.0, num_bins, dtype=torch.float64)[:, None]
        small = torch.tensor([[self.p_small_imprecise, self.p_small_precise]], dtype=torch.float64)
        return (1 - t) * small + t * self.p_large


@dataclass(frozen=True)
class Setting:
    """One experimental condition; the defaults are the main experiment's."""

    reward: RewardModel = RewardModel()
    init_precision: float = 0.2  # P(precise) in every bin at step 0; bins start uniform
    num_bins: int = 3  # the recipe's K
    prompts: int = 8  # the paper's 8 prompts x 8 rollouts
    group: int = 8
    steps: int = 2000
    lr: float = 0.5


@dataclass
class History:
    """Per step (index 0 = before the first update, T = after the last) and seed: the policy and its reward."""

    probs: torch.Tensor  # (T + 1, C, S, K) bin probabilities
    precision: torch.Tensor  # (T + 1, C, S, K) P(precise | bin)
    expected_reward: torch.Tensor  # (T + 1, C, S)


def estimator_fn(name: str) -> Callable[..., torch.Tensor]:
    """Per-rollout advantages ``f(rewards, scales, index) -> (bs,)`` from the estimator in veRL's registry."""
    registry_name, options = ESTIMATORS[name]
    fn = get_adv_estimator_fn(registry_name)
    config = OmegaConf.create({"srpo": options}) if options is not None else None

    def advantages(rewards: torch.Tensor, scales: torch.Tensor, index: np.ndarray) -> torch.Tensor:
        token_level_rewards = rewards.to(torch.float32).reshape(-1, 1)
        mask = torch.ones_like(token_level_rewards)
        if options is None:
            adv, _ = fn(token_level_rewards=token_level_rewards, response_mask=mask, index=index)
        else:
            adv, _ = fn(token_level_rewards, mask, index, evidence_scale=scales.numpy(), config=config)
        return adv[:, 0].to(torch.float64)

    return advantages


def sample(
    probs: torch.Tensor, precision: torch.Tensor, table: torch.Tensor, u: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Rollouts from uniforms ``u`` (C, S, N, 4): bin, precise (0/1), reward (0/1) and evidence scale.

    ``probs``/``precision`` are (C, S, K), ``table`` (C, K, 2). The scale is a point strictly inside the bin.
    """
    num_bins = probs.shape[-1]
    cdf = probs.cumsum(-1)
    bins = (u[..., 0, None] > cdf[..., None, :]).sum(-1).clamp_max(num_bins - 1)
    precise = (u[..., 1] < precision.gather(-1, bins)).long()
    flat = table.reshape(table.shape[0], 1, -1).expand(-1, probs.shape[1], -1)
    p_correct = flat.gather(-1, bins * 2 + precise)
    reward = (u[..., 2] < p_correct).to(torch.float64)
    scale = (bins + 0.05 + 0.9 * u[..., 3]) / num_bins
    return bins, precise, reward, scale


def expected_reward(probs: torch.Tensor, precision: torch.Tensor, table: torch.Tensor) -> torch.Tensor:
    """Exact expected reward of the policy (C, S) under the reward table (C, K, 2)."""
    per_bin = precision * table[:, None, :, 1] + (1 - precision) * table[:, None, :, 0]
    return (probs * per_bin).sum(-1)


def policy_gradient(
    advantages: torch.Tensor, bins: torch.Tensor, precise: torch.Tensor, probs: torch.Tensor, precision: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Gradient of mean(A * log pi(bin, precise)) w.r.t. the bin logits and the precision logits, (C, S, K) each."""
    num_bins = probs.shape[-1]
    onehot = torch.nn.functional.one_hot(bins, num_bins).to(torch.float64)
    a = advantages[..., None]
    grad_bins = (a * (onehot - probs[..., None, :])).mean(-2)
    q = precision.gather(-1, bins)
    grad_precision = (a * onehot * (precise.to(torch.float64) - q)[..., None]).mean(-2)
    return grad_bins, grad_precision


def simulate(
    estimator: str,
    settings: Sequence[Setting],
    seeds: Sequence[int],
    on_step: Callable[[int, dict], None] | None = None,
) -> History:
    """Train one policy per (setting, seed) with ``estimator``; all of them batched into one estimator call a step.

    Settings may differ in their reward model and initial precision only. ``on_step(step, batch)`` sees each
    step's rollouts (1-based step, tensors shaped (C, S, N)) and the policy that sampled them.
    """
    base = settings[0]
    if any(replace(s, reward=base.reward, init_precision=base.init_precision) != base for s in settings):
        raise ValueError("settings batched together may differ only in reward and init_precision")
    k, n = base.num_bins, base.prompts * base.group
    c, s = len(settings), len(seeds)
    table = torch.stack([st.reward.table(k) for st in settings])
    bin_logits = torch.zeros(c, s, k, dtype=torch.float64)
    q0 = torch.tensor([st.init_precision for st in settings], dtype=torch.float64)
    precision_logits = torch.logit(q0)[:, None, None].expand(c, s, k).clone()
    generators = [torch.Generator().manual_seed(int(seed)) for seed in seeds]
    index = np.repeat(np.arange(c * s * base.prompts), base.group)
    advantages_of = estimator_fn(estimator)

    history: dict[str, list[torch.Tensor]] = {"probs": [], "precision": [], "expected_reward": []}

    def record(probs: torch.Tensor, precision: torch.Tensor) -> None:
        history["probs"].append(probs)
        history["precision"].append(precision)
        history["expected_reward"].append(expected_reward(probs, precision, table))

    for step in range(1, base.steps + 1):
        probs, precision = bin_logits.softmax(-1), precision_logits.sigmoid()
        record(probs, precision)
        u = torch.stack([torch.rand(n, 4, generator=g, dtype=torch.float64) for g in generators]).expand(c, -1, -1, -1)
        bins, precise, reward, scale = sample(probs, precision, table, u)
        adv = advantages_of(reward.reshape(-1), scale.reshape(-1), index).reshape(c, s, n)
        if on_step is not None:
            batch = {"reward": reward, "scale": scale, "advantages": adv, "probs": probs, "precision": precision}
            on_step(step, batch)
        grad_bins, grad_precision = policy_gradient(adv, bins, precise, probs, precision)
        bin_logits += base.lr * grad_bins
        precision_logits += base.lr * grad_precision
    record(bin_logits.softmax(-1), precision_logits.sigmoid())
    return History(**{key: torch.stack(values) for key, values in history.items()})


class MetricsWriter:
    """Each seed's metrics every ``every`` steps through veRL's own ``Tracking`` file logger, a JSONL per seed.

    Names follow the recipe's trainer: ``critic/score/mean`` and the ``scale/*`` per-bin diagnostics from
    :func:`verl_ext.trainer.diagnostics.scale_bin_metrics` (of that step's 64 rollouts), plus the policy's
    exact values: ``scale/<bin>/policy_share``, ``scale/<bin>/policy_precision`` and ``policy/expected_reward``.
    """

    def __init__(self, out_dir: Path, estimator: str, seeds: Sequence[int], setting: Setting, every: int):
        out_dir.mkdir(parents=True, exist_ok=True)
        self.num_bins, self.every = setting.num_bins, every
        self.table = setting.reward.table(setting.num_bins)[None]
        self.labels = [bin_label(b, setting.num_bins, None) for b in range(setting.num_bins)]
        self.trackers = []
        for seed in seeds:
            path = out_dir / f"{estimator}_seed{seed}.jsonl"
            env = {"VERL_FILE_LOGGER_PATH": str(path)}
            with mock.patch.dict(os.environ, env), contextlib.redirect_stdout(io.StringIO()):
                self.trackers.append(Tracking("scale_bias", path.stem, default_backend="file"))

    def __call__(self, step: int, batch: dict) -> None:
        if step != 1 and step % self.every:
            return
        exp = expected_reward(batch["probs"], batch["precision"], self.table)
        for i, tracker in enumerate(self.trackers):
            reward = batch["reward"][0, i]
            data = {"critic/score/mean": float(reward.mean()), "policy/expected_reward": float(exp[0, i])}
            data.update(scale_bin_metrics(batch["scale"][0, i], reward, batch["advantages"][0, i], None, self.num_bins))
            for b, label in enumerate(self.labels):
                data[f"scale/{label}/policy_share"] = float(batch["probs"][0, i, b])
                data[f"scale/{label}/policy_precision"] = float(batch["precision"][0, i, b])
            tracker.log(data, step)

    def close(self) -> None:
        for tracker in self.trackers:
            tracker.finish()


def mean_ci(values: np.ndarray, confidence: float = 0.95) -> tuple[np.ndarray, np.ndarray]:
    """Mean and half-width of the Student-t confidence interval over the last axis (the seeds)."""
    values = np.asarray(values, dtype=np.float64)
    n = values.shape[-1]
    mean = values.mean(-1)
    if n < 2:
        return mean, np.full_like(mean, np.nan)
    half = stats.t.ppf(0.5 + confidence / 2, n - 1) * values.std(-1, ddof=1) / math.sqrt(n)
    return mean, half


def at_step(history: History, step: int) -> dict[str, torch.Tensor]:
    """The reported quantities of the policy after ``step`` updates, (C, S) each."""
    return {
        "small_share": history.probs[step, ..., 0],
        "small_precision": history.precision[step, ..., 0],
        "expected_reward": history.expected_reward[step],
    }


def steps_to_small_majority(history: History) -> torch.Tensor:
    """Per (C, S): the first step after which the small bin holds more than half the policy; -1 if never."""
    above = history.probs[..., 0] > 0.5
    first = above.to(torch.int64).argmax(0)
    return torch.where(above.any(0), first, torch.full_like(first, -1))


def censored_median(steps: np.ndarray, horizon: int) -> float:
    """Median over the last axis counting never (-1) as later than ``horizon``; inf when most seeds never got there."""
    filled = np.where(steps < 0, np.inf, steps.astype(np.float64))
    median = np.sort(filled, axis=-1)[..., (filled.shape[-1] - 1) // 2]
    return np.where(median > horizon, np.inf, median)


def horizons(steps: int) -> list[int]:
    """The steps the main table reports: 100, 300, 1000 and the last (those within the run)."""
    return sorted({h for h in (100, 300, 1000) if h < steps} | {steps})


def main_experiment(setting: Setting, seeds: Sequence[int], out: Path) -> dict:
    """Every estimator on the main setting; writes each seed's metrics JSONL and returns the table's numbers."""
    metrics_dir = out / "metrics"
    shutil.rmtree(metrics_dir, ignore_errors=True)
    results = {}
    for name in ESTIMATORS:
        writer = MetricsWriter(metrics_dir, name, seeds, setting, LOG_EVERY)
        try:
            history = simulate(name, [setting], seeds, on_step=writer)
        finally:
            writer.close()
        per_horizon = {}
        for h in horizons(setting.steps):
            per_horizon[h] = {}
            for key, value in at_step(history, h).items():
                mean, half = mean_ci(value[0].numpy())
                per_horizon[h][key] = {"mean": float(mean), "ci95": float(half), "values": value[0].tolist()}
        first = steps_to_small_majority(history)[0].numpy()
        results[name] = {
            "seeds": [int(s) for s in seeds],
            "at_step": per_horizon,
            "steps_to_small_majority": {
                "values": first.tolist(),
                "reached": int((first >= 0).sum()),
                "median": float(censored_median(first, setting.steps)),
            },
        }
    return results


LOG_EVERY = 10  # metrics JSONL lines per seed: step 1 and every 10th step (2000 steps x 80 runs stay ~20 MB)


@dataclass(frozen=True)
class Sweep:
    """A grid over two parameters of :class:`Setting` (``p_*`` are reward-model fields)."""

    name: str
    x: str
    xs: tuple[float, ...]
    y: str
    ys: tuple[float, ...]

    def settings(self, base: Setting) -> list[Setting]:
        """Row-major over (y, x)."""
        return [self._set(self._set(base, self.y, yv), self.x, xv) for yv in self.ys for xv in self.xs]

    @staticmethod
    def _set(setting: Setting, name: str, value: float) -> Setting:
        if name.startswith("p_"):
            return replace(setting, reward=replace(setting.reward, **{name: value}))
        return replace(setting, **{name: value})


#: The sweeps' estimators: SRPO's Intra ablation is left out because its bin shares never move (a test proves it),
#: so its map would be a constant 1/3.
SWEEP_ESTIMATORS = ("grpo", "srpo", "srpo_inter")


def run_sweep(sweep: Sweep, base: Setting, seeds: Sequence[int], short: int) -> dict[str, np.ndarray]:
    """Per estimator: small-bin share and expected reward at step ``short`` and at the end, and steps to a
    small-bin majority; each shaped (len(ys), len(xs), S)."""
    settings = sweep.settings(base)
    shape = (len(sweep.ys), len(sweep.xs), len(seeds))
    out = {}
    for name in SWEEP_ESTIMATORS:
        history = simulate(name, settings, seeds)
        for step, tag in ((short, "short"), (base.steps, "end")):
            values = at_step(history, step)
            out[f"{name}/small_share@{tag}"] = values["small_share"].numpy().reshape(shape)
            out[f"{name}/expected_reward@{tag}"] = values["expected_reward"].numpy().reshape(shape)
        out[f"{name}/steps_to_small_majority"] = steps_to_small_majority(history).numpy().reshape(shape)
    for tag in ("short", "end"):
        out[f"grpo_minus_srpo/small_share@{tag}"] = out[f"grpo/small_share@{tag}"] - out[f"srpo/small_share@{tag}"]
        out[f"srpo_minus_grpo/expected_reward@{tag}"] = (
            out[f"srpo/expected_reward@{tag}"] - out[f"grpo/expected_reward@{tag}"]
        )
    return out


def write_sweep(sweep: Sweep, values: dict[str, np.ndarray], short: int, steps: int, out: Path) -> dict:
    """CSV of every cell (mean and 95% CI of each quantity) and the region-map PNG; returns the sweep's summary."""
    header = [sweep.y, sweep.x]
    for key in values:
        header += [f"{key}_median"] if key.endswith("steps_to_small_majority") else [f"{key}_mean", f"{key}_ci95"]
    lines = [",".join(header)]
    for i, yv in enumerate(sweep.ys):
        for j, xv in enumerate(sweep.xs):
            cells = [f"{yv:g}", f"{xv:g}"]
            for key, v in values.items():
                if key.endswith("steps_to_small_majority"):
                    cells.append(f"{censored_median(v[i, j], steps):g}")
                else:
                    m, h = mean_ci(v[i, j])
                    cells += [f"{m:.4f}", f"{h:.4f}"]
            lines.append(",".join(cells))
    (out / f"sweep_{sweep.name}.csv").write_text("\n".join(lines) + "\n")

    panels = [
        (f"{name}/small_share@end", f"{name}: small-bin share at step {steps}", "share") for name in SWEEP_ESTIMATORS
    ]
    panels += [
        (f"{name}/steps_to_small_majority", f"{name}: median step small share > 0.5", "steps")
        for name in SWEEP_ESTIMATORS
    ]
    panels += [
        ("grpo_minus_srpo/small_share@short", f"GRPO - SRPO small-bin share, step {short}", "diff"),
        ("srpo_minus_grpo/expected_reward@short", f"SRPO - GRPO expected reward, step {short}", "diff"),
        ("srpo_minus_grpo/expected_reward@end", f"SRPO - GRPO expected reward, step {steps}", "diff"),
    ]
    fig = Figure(figsize=(17, 13), layout="constrained")
    for ax, (key, title, kind) in zip(fig.subplots(3, 3).ravel(), panels, strict=True):
        draw_map(ax, fig, sweep, values[key], kind, steps)
        ax.set_title(title, fontsize=10)
    seeds = next(iter(values.values())).shape[-1]
    fig.suptitle(
        f"Sweep {sweep.name}: {seeds} seeds per cell. Shares and differences: mean over seeds, * = paired 95% "
        f"t-interval excludes 0. Steps: median over seeds, '>{steps}' = most seeds never got there.",
        fontsize=11,
    )
    fig.savefig(out / f"sweep_{sweep.name}.png", dpi=90)
    return {"x": sweep.x, "xs": list(sweep.xs), "y": sweep.y, "ys": list(sweep.ys), "seeds": int(seeds)}


def draw_map(ax, fig: Figure, sweep: Sweep, values: np.ndarray, kind: str, steps: int) -> None:
    """One heat map over the sweep's grid, each cell annotated with its value."""
    if kind == "steps":
        shown = censored_median(values, steps)
        image = ax.imshow(np.where(np.isinf(shown), steps, shown), origin="lower", cmap="magma_r", vmin=0, vmax=steps)
        texts = np.where(
            np.isinf(shown), f">{steps}", np.char.mod("%d", np.where(np.isinf(shown), 0, shown).astype(int))
        )
        dark = np.isinf(shown) | (shown > steps / 2)
    else:
        mean, half = mean_ci(values)
        if kind == "share":
            image = ax.imshow(mean, origin="lower", cmap="viridis", vmin=0, vmax=1)
            texts = np.char.mod("%.2f", mean)
            dark = mean < 0.55
        else:
            limit = max(float(np.abs(mean).max()), 1e-3)
            norm = TwoSlopeNorm(vcenter=0.0, vmin=-limit, vmax=limit)
            image = ax.imshow(mean, origin="lower", cmap="RdBu_r", norm=norm)
            texts = np.char.add(np.char.mod("%+.2f", mean), np.where(np.abs(mean) > half, "*", ""))
            dark = np.abs(mean) > 0.6 * limit
    ax.set_aspect("auto")
    for i in range(len(sweep.ys)):
        for j in range(len(sweep.xs)):
            color = "white" if dark[i, j] else "black"
            ax.text(j, i, texts[i, j], ha="center", va="center", fontsize=8, color=color)
    ax.set_xticks(range(len(sweep.xs)), [f"{v:g}" for v in sweep.xs])
    ax.set_yticks(range(len(sweep.ys)), [f"{v:g}" for v in sweep.ys])
    ax.set_xlabel(sweep.x)
    ax.set_ylabel(sweep.y)
    fig.colorbar(image, ax=ax, shrink=0.85)


def markdown_tables(results: dict, steps: int) -> str:
    """The main tables: per quantity, mean ± 95% t-interval half-width over seeds at each reported step."""
    any_result = next(iter(results.values()))
    steps_shown = list(any_result["at_step"])
    blocks = []
    for key, title in (
        ("expected_reward", "Expected reward of the policy"),
        ("small_share", "Small-bin (0-33%) share of the policy"),
        ("small_precision", "P(precise | small bin)"),
    ):
        lines = [f"**{title}** (mean ± 95% CI over seeds)", ""]
        lines.append("| estimator | seeds | " + " | ".join(f"step {h}" for h in steps_shown) + " |")
        lines.append("|---|---|" + "---|" * len(steps_shown))
        for name, r in results.items():
            cells = [f"{r['at_step'][h][key]['mean']:.3f} ± {r['at_step'][h][key]['ci95']:.3f}" for h in steps_shown]
            lines.append(f"| {name} | {len(r['seeds'])} | " + " | ".join(cells) + " |")
        blocks.append("\n".join(lines))
    lines = ["**First step with small-bin share > 0.5** (median over seeds; seeds that got there)", ""]
    lines += ["| estimator | median step | seeds reached |", "|---|---|---|"]
    for name, r in results.items():
        m = r["steps_to_small_majority"]
        median = f">{steps}" if math.isinf(m["median"]) else f"{m['median']:.0f}"
        lines.append(f"| {name} | {median} | {m['reached']} / {len(r['seeds'])} |")
    blocks.append("\n".join(lines))
    return "\n\n".join(blocks)


#: Training knobs the outcome could hinge on, each changed alone from the main setting (GRPO and SRPO only).
VARIANTS: dict[str, dict] = {
    "lr 0.25": {"lr": 0.25},
    "lr 1.0": {"lr": 1.0},
    "group 4": {"group": 4},
    "group 16": {"group": 16},
}


def robustness(setting: Setting, seeds: Sequence[int], short: int) -> dict:
    """GRPO and SRPO under each of :data:`VARIANTS`: steps to a small-bin majority and expected reward."""
    out = {}
    for label, change in VARIANTS.items():
        variant = replace(setting, **change)
        out[label] = {}
        for name in ("grpo", "srpo"):
            history = simulate(name, [variant], seeds)
            first = steps_to_small_majority(history)[0].numpy()
            reward = {}
            for step in (short, variant.steps):
                mean, half = mean_ci(history.expected_reward[step, 0].numpy())
                reward[step] = {"mean": float(mean), "ci95": float(half)}
            out[label][name] = {
                "median_steps_to_small_majority": float(censored_median(first, variant.steps)),
                "reached": int((first >= 0).sum()),
                "expected_reward": reward,
            }
    return out


def robustness_table(rows: dict, seeds: int, steps: int) -> str:
    """Markdown: one row per (variant, estimator)."""
    first = next(iter(next(iter(rows.values())).values()))
    shown = list(first["expected_reward"])
    lines = [
        f"**Training knobs** (each changed alone from the main setting; {seeds} seeds; mean ± 95% CI)",
        "",
        "| variant | estimator | median step small share > 0.5 (seeds) | "
        + " | ".join(f"reward step {h}" for h in shown)
        + " |",
        "|---|---|---|" + "---|" * len(shown),
    ]
    for label, per_estimator in rows.items():
        for name, r in per_estimator.items():
            median = r["median_steps_to_small_majority"]
            when = f">{steps}" if math.isinf(median) else f"{median:.0f}"
            rewards = [f"{r['expected_reward'][h]['mean']:.3f} ± {r['expected_reward'][h]['ci95']:.3f}" for h in shown]
            lines.append(f"| {label} | {name} | {when} ({r['reached']}/{seeds}) | " + " | ".join(rewards) + " |")
    return "\n".join(lines)


GRID_P_LARGE = (0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8)
SWEEPS = (
    Sweep("safety_vs_init_precision", "p_large", GRID_P_LARGE, "init_precision", (0.05, 0.1, 0.2, 0.3, 0.5, 0.7)),
    Sweep("safety_vs_small_payoff", "p_large", GRID_P_LARGE, "p_small_precise", (0.5, 0.6, 0.7, 0.8, 0.9, 1.0)),
)
SHORT = 300  # the sweeps' early read-out step


def quick_sweep(sweep: Sweep) -> Sweep:
    """Two values per axis (the ends of the full grid): a pipeline check, not a result."""
    return replace(sweep, xs=(sweep.xs[0], sweep.xs[-1]), ys=(sweep.ys[0], sweep.ys[-1]))


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=HERE / "results", help="output folder (default: results/ here)")
    parser.add_argument("--quick", action="store_true", help="3 seeds, 60 steps, 2x2 sweeps: checks the pipeline")
    args = parser.parse_args(argv)

    start = time.perf_counter()
    # One thread: the tensors are small (a few thousand rows), and a second thread only adds contention.
    torch.set_num_threads(1)
    setting, sweeps, seeds, sweep_seeds, short = Setting(), SWEEPS, range(20), range(10), SHORT
    if args.quick:
        setting, sweeps, seeds, sweep_seeds, short = (
            replace(setting, steps=60),
            [*map(quick_sweep, SWEEPS)],
            range(3),
            range(3),
            20,
        )
    args.out.mkdir(parents=True, exist_ok=True)

    results = main_experiment(setting, list(seeds), args.out)
    main_s = time.perf_counter() - start
    curves = plots.plot_runs(
        plots.expand_inputs([args.out / "metrics"]),
        args.out / "curves",
        metrics=["critic/score/mean", "policy/expected_reward", "scale/*/policy_share", "scale/*/policy_precision"],
    )
    knobs = robustness(setting, list(seeds), short)
    summaries = {}
    for sweep in sweeps:
        values = run_sweep(sweep, setting, list(sweep_seeds), short)
        summaries[sweep.name] = write_sweep(sweep, values, short, setting.steps, args.out)
    wall = time.perf_counter() - start

    report = {
        "command": "python experiments/scale_bias/run.py" + (" --quick" if args.quick else ""),
        "setting": asdict(setting),
        "reward_table": setting.reward.table(setting.num_bins).tolist(),
        "estimators": results,
        "training_knobs": knobs,
        "sweeps": summaries,
        "wall_s": {"main": round(main_s, 1), "total": round(wall, 1)},
    }
    (args.out / "table.json").write_text(json.dumps(report, indent=1) + "\n")
    tables = markdown_tables(results, setting.steps) + "\n\n" + robustness_table(knobs, len(seeds), setting.steps)
    (args.out / "table.md").write_text(
        f"`{report['command']}`; setting {asdict(setting)}.\nValues of the policy after the given step.\n\n"
        f"{tables}\n\nWall time: {wall:.0f} s (main table {main_s:.0f} s), 1 torch thread.\n"
    )
    print(tables)
    print(f"curves: {[p.name for p in curves]}; sweeps: {[f'sweep_{n}.png' for n in summaries]}")
    print(f"wall {wall:.1f} s (main {main_s:.1f} s)")


if __name__ == "__main__":
    main()
