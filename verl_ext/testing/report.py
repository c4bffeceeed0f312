"""Print the per-step metrics a veRL run wrote with its file logger (``trainer.logger=[...,file]``).

    python -m verl_ext.testing.report /tmp/run/metrics.jsonl [--advantages /tmp/run/advantages]

One column per step; rows are the reward/advantage/update summary veRL logs plus every ``scale/*``
metric (SRPO's per-bin diagnostics). With ``--advantages`` (the trainer hook's ``ground_r1.advantage_dump_dir``)
it also prints, per step, what the trajectories did: zoom calls, valid zooms, answers and the rewards.
Exits non-zero when the file holds no step.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from pathlib import Path

from verl_ext.plots import read_log

SUMMARY_KEYS = (
    "critic/score/mean",
    "critic/advantages/mean",
    "critic/advantages/min",
    "critic/advantages/max",
    "actor/pg_loss",
    "actor/grad_norm",
    "response_length/mean",
    "prompt_length/mean",
    "timing_s/gen",
    "timing_s/update_actor",
    "timing_s/step",
)


def read_steps(path: str | Path) -> dict[int, dict[str, float]]:
    """``{step: metrics}`` from veRL's file-logger JSONL (one ``{"step", "data"}`` object a line); a damaged line
    is an error here (the demo's own fresh output), where :mod:`verl_ext.plots` skips and reports it."""
    log = read_log(path)
    if log.damaged:
        raise ValueError(str(log.damaged[0]))
    return log.steps


def table(steps: dict[int, dict[str, float]]) -> str:
    """The summary keys and all ``scale/*`` keys present, one column per step."""
    present = {key for metrics in steps.values() for key in metrics}
    keys = [k for k in SUMMARY_KEYS if k in present] + sorted(k for k in present if k.startswith("scale/"))
    order = sorted(steps)
    width = max((len(k) for k in keys), default=10)
    lines = [f"{'metric':<{width}} " + " ".join(f"{'step ' + str(s):>12}" for s in order)]
    for key in keys:
        cells = []
        for step in order:
            value = steps[step].get(key)
            cells.append(f"{value:>12.4g}" if isinstance(value, int | float) else f"{'-':>12}")
        lines.append(f"{key:<{width}} " + " ".join(cells))
    return "\n".join(lines)


def trajectories(dump_dir: str | Path) -> str:
    """One line per step of the advantage dumps: zooms, evidence scales, accuracy and rewards of its trajectories."""
    lines = []
    for path in sorted(Path(dump_dir).glob("step_*.jsonl")):
        rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
        zoomed = sum((r.get("num_zooms") or 0) >= 1 for r in rows)
        valid = sum(r["evidence_scale"] < 1 for r in rows)
        right = sum((r.get("acc") or 0) >= 1 for r in rows)
        rewards = dict(sorted(Counter(round(r["reward"], 3) for r in rows).items()))
        scales = ", ".join(f"{r['evidence_scale']:.2f}" for r in sorted(rows, key=lambda r: r["evidence_scale"]))
        lines.append(
            f"step {int(path.stem.split('_')[1])}: {len(rows)} trajectories, {zoomed} zoomed, {valid} with a valid "
            f"zoom, {right} right; rewards {rewards}; evidence scales [{scales}]"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("metrics", help="the JSONL file veRL's file logger wrote (VERL_FILE_LOGGER_PATH)")
    parser.add_argument("--advantages", help="the trainer hook's dump folder (ground_r1.advantage_dump_dir)")
    args = parser.parse_args()
    steps = read_steps(args.metrics)
    if not steps:
        sys.exit(f"{args.metrics}: no training step was logged")
    print(table(steps))
    if args.advantages:
        print(trajectories(args.advantages))


if __name__ == "__main__":
    main()
