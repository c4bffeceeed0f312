"""Curves from veRL's file-logger output: reward, accuracy and the per-scale-bin metrics, several runs overlaid.

    python -m verl_ext.plots RUN.jsonl|DIR ... --out DIR [--metrics PATTERN ...] [--label NAME ...] [--band minmax]

Reads the JSONL that veRL's ``file`` logger writes (``trainer.logger=[...,file]``, path from
``VERL_FILE_LOGGER_PATH``; one ``{"step": N, "data": {...}}`` object a line) from a CPU, GPU or simulated run
alike. Runs that share a label are replicas (seeds): each figure draws their mean per step and a band
(min-max by default, or mean +- std). A folder stands for every ``*.jsonl`` under it. Damaged lines (a run
killed mid-write, a truncated copy) are skipped and reported on stderr, never fatal.

Figures: one per plain metric (``critic/score/mean``, each accuracy), and one per ``scale/*`` quantity with a
panel per evidence-scale bin (``scale/bin0_0-33/share`` ... as :mod:`verl_ext.trainer.diagnostics` names them).
"""

from __future__ import annotations

import argparse
import fnmatch
import json
import math
import re
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

#: What is drawn when ``--metrics`` is not given: the reward, every accuracy and every per-bin metric.
DEFAULT_METRICS = ("critic/score/mean", "*acc*", "scale/*")
#: A per-bin metric as the trainer's diagnostics name it: ``scale/bin<k>_<lo>-<hi>/<quantity>``.
BIN_METRIC = re.compile(r"^scale/bin(\d+)_[^/]*/(.+)$")
#: A trailing seed in a run's name (``srpo_seed3``, ``grpo-seed12``): runs that differ only there are replicas.
SEED_SUFFIX = re.compile(r"[_-]?seed\d+$")
BANDS = ("minmax", "std")
MARKERS_UP_TO = 30  # steps per line below which each point gets a marker


@dataclass(frozen=True)
class Damaged:
    """A line of a metrics file that is not a file-logger record."""

    path: Path
    line: int
    reason: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: not a veRL file-logger record: {self.reason}"


@dataclass
class FileLog:
    """One metrics file: ``{step: {metric: value}}`` (later lines of a step update earlier ones) and its damage."""

    path: Path
    steps: dict[int, dict[str, Any]] = field(default_factory=dict)
    damaged: list[Damaged] = field(default_factory=list)

    def series(self, metric: str) -> dict[int, float]:
        """``{step: value}`` of one metric: finite numbers only (veRL writes NaN as ``null``)."""
        out = {}
        for step, data in self.steps.items():
            value = data.get(metric)
            if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
                out[step] = float(value)
        return out

    def numeric_metrics(self) -> set[str]:
        """Every metric that holds a finite number at some step."""
        return {k for data in self.steps.values() for k in data if self.series(k)}


def read_log(path: str | Path) -> FileLog:
    """Parse veRL's file-logger JSONL, collecting damaged lines instead of stopping at the first."""
    path = Path(path)
    log = FileLog(path)
    with path.open("rb") as fh:
        for number, raw in enumerate(fh, start=1):
            if not raw.strip():
                continue
            try:
                record = json.loads(raw)
                step, data = int(record["step"]), record["data"]
                if not isinstance(data, dict):
                    raise TypeError(f"'data' is a {type(data).__name__}, not an object")
            except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError, ValueError) as exc:
                log.damaged.append(Damaged(path, number, f"{type(exc).__name__}: {exc}"))
                continue
            log.steps.setdefault(step, {}).update(data)
    return log


def run_label(path: Path) -> str:
    """A run's default label: its file name, or its folder's for ``metrics.jsonl``, without a trailing seed."""
    name = path.parent.name if path.stem == "metrics" and path.parent.name else path.stem
    return SEED_SUFFIX.sub("", name) or name


def expand_inputs(inputs: Sequence[str | Path], labels: Sequence[str] | None = None) -> list[tuple[Path, str]]:
    """``(file, label)`` for every input file and every ``*.jsonl`` under an input folder.

    ``labels`` (one per input) label every file that input yields; without them each file gets :func:`run_label`.
    """
    if labels and len(labels) != len(inputs):
        raise ValueError(f"{len(labels)} labels for {len(inputs)} inputs: give one --label per input or none")
    out = []
    for i, item in enumerate(inputs):
        item = Path(item)
        if item.is_dir():
            files = sorted(item.rglob("*.jsonl"))
            if not files:
                raise FileNotFoundError(f"{item}: no *.jsonl file under this folder")
        elif item.is_file():
            files = [item]
        else:
            raise FileNotFoundError(f"{item}: no such file or folder")
        out.extend((f, labels[i] if labels else run_label(f)) for f in files)
    return out


@dataclass(frozen=True)
class Band:
    """Mean and spread per step over the replicas of one label; ``n`` replicas hold each step."""

    steps: np.ndarray
    mean: np.ndarray
    low: np.ndarray
    high: np.ndarray
    n: np.ndarray


def aggregate(series: Sequence[dict[int, float]], band: str = "minmax") -> Band:
    """Mean per step over the replicas that logged it, with min-max or mean +- std (population std) around it."""
    if band not in BANDS:
        raise ValueError(f"band must be one of {BANDS}, got {band!r}")
    steps = sorted({s for one in series for s in one})
    mean, low, high, n = [], [], [], []
    for step in steps:
        values = np.array([one[step] for one in series if step in one], dtype=np.float64)
        m = values.mean()
        if band == "minmax":
            lo, hi = values.min(), values.max()
        else:
            sd = values.std()
            lo, hi = m - sd, m + sd
        mean.append(m)
        low.append(lo)
        high.append(hi)
        n.append(values.size)
    return Band(np.array(steps), np.array(mean), np.array(low), np.array(high), np.array(n))


@dataclass(frozen=True)
class FigureSpec:
    """One PNG: a file name and its panels, each ``(metric, panel title)``."""

    name: str
    title: str
    panels: tuple[tuple[str, str], ...]


def select_metrics(available: Iterable[str], patterns: Sequence[str]) -> list[str]:
    """The available metrics matching any of the ``fnmatch`` patterns (an exact name is its own pattern)."""
    return sorted(m for m in set(available) if any(fnmatch.fnmatchcase(m, p) for p in patterns))


def plan_figures(metrics: Iterable[str]) -> list[FigureSpec]:
    """Group metrics into figures: ``scale/bin<k>_.../<q>`` into one figure per quantity, a panel per bin."""
    per_bin: dict[str, list[tuple[int, str]]] = {}
    specs = []
    for metric in sorted(set(metrics)):
        match = BIN_METRIC.match(metric)
        if match:
            per_bin.setdefault(match.group(2), []).append((int(match.group(1)), metric))
        else:
            specs.append(FigureSpec(file_stem(metric), metric, ((metric, metric),)))
    for quantity, members in per_bin.items():
        panels = tuple((m, m.split("/")[1]) for _, m in sorted(members))
        specs.append(FigureSpec(file_stem(f"scale/{quantity}"), f"scale/*/{quantity}", panels))
    return sorted(specs, key=lambda s: s.name)


def file_stem(metric: str) -> str:
    """A file name for a metric: path separators and odd characters become ``_``."""
    return re.sub(r"[^A-Za-z0-9.+-]+", "_", metric).strip("_") or "metric"


def draw(spec: FigureSpec, groups: dict[str, list[FileLog]], band: str = "minmax") -> Figure:
    """One figure: per panel, each label's mean line (labelled with its replica count) and its spread band."""
    cols = min(len(spec.panels), 3)
    rows = math.ceil(len(spec.panels) / cols)
    fig = Figure(figsize=(5.0 * cols, 3.6 * rows), layout="constrained")
    axes = fig.subplots(rows, cols, squeeze=False).ravel()
    for ax, (metric, title) in zip(axes, spec.panels, strict=False):
        for color, (label, logs) in enumerate(groups.items()):
            series = [s for s in (log.series(metric) for log in logs) if s]
            if not series:
                continue
            agg = aggregate(series, band)
            marker = "o" if agg.steps.size <= MARKERS_UP_TO else None  # a short run's points stay visible
            ax.plot(
                agg.steps, agg.mean, color=f"C{color}", marker=marker, markersize=3, label=f"{label} (n={len(series)})"
            )
            if len(series) > 1:
                ax.fill_between(agg.steps, agg.low, agg.high, color=f"C{color}", alpha=0.2, linewidth=0)
        ax.set_title(title, fontsize=10)
        ax.set_xlabel("step")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
        if ax.lines:
            ax.legend(fontsize=8)
    for ax in axes[len(spec.panels) :]:
        ax.set_visible(False)
    spread = "min-max" if band == "minmax" else "mean +- std"
    fig.suptitle(f"{spec.title}  (line: mean over replicas; band: {spread})", fontsize=11)
    return fig


def plot_runs(
    runs: Sequence[tuple[str | Path, str]],
    out_dir: str | Path,
    metrics: Sequence[str] = DEFAULT_METRICS,
    band: str = "minmax",
    report=None,
) -> list[Path]:
    """Read ``(file, label)`` runs, draw every figure their selected metrics make, write PNGs; their paths.

    Damaged lines are reported through ``report`` (default: stderr) and skipped.
    """
    report = report or (lambda message: print(message, file=sys.stderr))
    groups: dict[str, list[FileLog]] = {}
    for path, label in runs:
        log = read_log(path)
        for damage in log.damaged:
            report(f"skipped {damage}")
        groups.setdefault(label, []).append(log)
    available = set().union(*(log.numeric_metrics() for logs in groups.values() for log in logs))
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for spec in plan_figures(select_metrics(available, metrics)):
        fig = draw(spec, groups, band)
        path = out_dir / f"{spec.name}.png"
        fig.savefig(path, dpi=110)
        written.append(path)
    return written


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("inputs", nargs="+", help="veRL file-logger JSONL files, or folders holding them")
    parser.add_argument("--out", required=True, help="folder for the PNGs")
    parser.add_argument(
        "--metrics",
        nargs="+",
        default=list(DEFAULT_METRICS),
        help=f"metric names or fnmatch patterns (default: {' '.join(DEFAULT_METRICS)})",
    )
    parser.add_argument(
        "--label",
        nargs="+",
        help="one label per input (inputs with one label are replicas); default: the file name without a "
        "trailing seedN, or the folder's name for metrics.jsonl",
    )
    parser.add_argument("--band", choices=BANDS, default="minmax", help="spread around the mean (default minmax)")
    args = parser.parse_args(argv)
    try:
        runs = expand_inputs(args.inputs, args.label)
    except (FileNotFoundError, ValueError) as exc:
        parser.error(str(exc))
    written = plot_runs(runs, args.out, args.metrics, args.band)
    if not written:
        print(f"no metric matching {args.metrics} in {len(runs)} run(s)", file=sys.stderr)
        return 1
    labels = sorted({label for _, label in runs})
    print(f"{len(runs)} run(s), labels {labels}")
    for path in written:
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
