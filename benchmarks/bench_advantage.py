"""SRPO against veRL's own GRPO estimators on the same random batches.

    python benchmarks/bench_advantage.py [--sizes 1000 16000 64000] [--repeats 5]

Group size 8, response length 1024, outcome rewards in {0, 1}, evidence scales uniform in [0, 1].
Prints median wall time per call and the ratios SRPO / grpo_vectorized and grpo / SRPO.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from functools import partial

import numpy as np
import torch
from verl.trainer.ppo.core_algos import compute_grpo_outcome_advantage, compute_grpo_vectorized_outcome_advantage

from verl_ext.algorithms.srpo import compute_srpo_outcome_advantage


def batch(n: int, group: int, length: int, seed: int):
    g = torch.Generator().manual_seed(seed)
    rewards = torch.zeros(n, length)
    rewards[:, -1] = torch.randint(0, 2, (n,), generator=g).float()
    mask = torch.ones(n, length)
    index = np.array([f"prompt-{i // group}" for i in range(n)], dtype=object)
    scales = torch.rand(n, generator=g, dtype=torch.float64).numpy()
    return rewards, mask, index, scales


def median_seconds(fn: Callable[[], object], repeats: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 16000, 64000])
    parser.add_argument("--group", type=int, default=8)
    parser.add_argument("--length", type=int, default=1024)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()

    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; group {args.group}, length {args.length}")
    columns = ["trajectories", "srpo ms", "grpo_vec ms", "grpo ms", "srpo/grpo_vec", "grpo/srpo"]
    header = " | ".join(f"{c:>13}" for c in columns)
    print(header)
    print("-" * len(header))
    for n in args.sizes:
        rewards, mask, index, scales = batch(n, args.group, args.length, seed=n)
        srpo = median_seconds(
            partial(compute_srpo_outcome_advantage, rewards, mask, index, evidence_scale=scales), args.repeats
        )
        vec = median_seconds(partial(compute_grpo_vectorized_outcome_advantage, rewards, mask, index), args.repeats)
        loop = median_seconds(partial(compute_grpo_outcome_advantage, rewards, mask, index), max(1, args.repeats // 2))
        cells = [f"{n}", f"{srpo * 1e3:.1f}", f"{vec * 1e3:.1f}", f"{loop * 1e3:.1f}", f"{srpo / vec:.2f}"]
        print(" | ".join(f"{c:>13}" for c in [*cells, f"{loop / srpo:.1f}"]))


if __name__ == "__main__":
    main()
