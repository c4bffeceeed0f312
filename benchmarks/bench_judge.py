"""Wall time of one 64-row reward step against a judge that never answers (issue 17), with its extrapolation.

    python benchmarks/bench_judge.py [--timeout 0.5] [--retries 2] [--rows 64]

veRL's own ``RewardLoopWorker`` (naive manager) scores 64 distinct open answers the rules reject, with
``reward_router_address`` pointing at a local server that accepts each request and never replies. veRL runs
the synchronous ``compute_score`` in its event loop's default executor (``min(32, cores + 4)`` threads), so
rows wait in waves of that size. Small timeouts keep the run short; the extrapolation to the defaults
(``timeout`` 30 s, ``max_retries`` 2) assumes the same waves. With the circuit breaker, the step costs about
one timeout: the first wave's failures open it and every later row gets the rule score at once.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import os
import tempfile
import time

import numpy as np
import torch
from aiohttp import web
from omegaconf import OmegaConf
from verl import DataProto
from verl.experimental.reward_loop.reward_loop import RewardLoopWorker

from verl_ext.reward.base import JudgeOptions
from verl_ext.reward.judge import judge_step_metrics
from verl_ext.testing.tiny_qwen import build_tokenizer


def batch(tokenizer, rows: int) -> DataProto:
    """``rows`` rollouts, each a distinct open answer (so none is cached) to a free-form ground truth."""
    responses = [tokenizer(f"<think>x</think><answer>colour {i}</answer>")["input_ids"] for i in range(rows)]
    width, pad = max(map(len, responses)), tokenizer.pad_token_id
    response_ids = torch.tensor([r + [pad] * (width - len(r)) for r in responses])
    prompt_ids = torch.full((rows, 4), pad)
    mask = torch.tensor([[1] * 4 + [1] * len(r) + [0] * (width - len(r)) for r in responses])
    return DataProto.from_dict(
        tensors={
            "prompts": prompt_ids,
            "responses": response_ids,
            "attention_mask": mask,
            "input_ids": torch.cat([prompt_ids, response_ids], dim=1),
        },
        non_tensors={
            "data_source": np.array(["visual_cot"] * rows, dtype=object),
            "reward_model": np.array([{"ground_truth": "The countertop is tan."}] * rows, dtype=object),
            "extra_info": np.array([{"question": "What colour is the countertop?"} for _ in range(rows)]),
        },
    )


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--timeout", type=float, default=0.5)
    parser.add_argument("--retries", type=int, default=2)
    parser.add_argument("--rows", type=int, default=64)
    args = parser.parse_args()

    requests = 0

    async def hang(request: web.Request) -> web.Response:
        nonlocal requests
        requests += 1
        await asyncio.sleep(3600)
        return web.Response()

    app = web.Application()
    app.router.add_post("/v1/chat/completions", hang)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0, shutdown_timeout=0.1).start()
    address = f"127.0.0.1:{runner.addresses[0][1]}"

    tokenizer = build_tokenizer()
    with tempfile.TemporaryDirectory() as model_dir:
        tokenizer.save_pretrained(model_dir)
        judge = {"enable": True, "timeout": args.timeout, "max_retries": args.retries}
        config = OmegaConf.create(
            {
                "actor_rollout_ref": {"model": {"path": model_dir, "tokenizer_path": None}},
                "reward": {
                    "custom_reward_function": {
                        "path": "pkg://verl_ext.reward",
                        "name": "compute_score",
                        "reward_kwargs": {"judge": judge},
                    },
                    "reward_manager": {"source": "register", "name": "naive"},
                    "reward_model": {"enable": False},
                },
            }
        )
        worker = RewardLoopWorker(config, reward_router_address=address)
        start = time.monotonic()
        outputs = await worker.compute_score_batch(batch(tokenizer, args.rows))
        wall = time.monotonic() - start
    await runner.cleanup()

    threads = min(32, (os.cpu_count() or 1) + 4)
    waves = math.ceil(args.rows / threads)
    backoff = sum(min(0.5 * 2**a, 8.0) for a in range(args.retries))
    defaults = JudgeOptions()
    default_backoff = sum(min(0.5 * 2**a, 8.0) for a in range(defaults.max_retries))
    metrics = judge_step_metrics([o["reward_extra_info"] for o in outputs])
    print(f"{args.rows} rows, timeout {args.timeout} s, max_retries {args.retries}, {threads} executor threads")
    print(f"measured: {wall:.1f} s, {requests} requests sent")
    print(f"without a breaker: {waves} waves x ({args.retries + 1} x {args.timeout} s + {backoff} s backoff)")
    print(f"  = {waves * ((args.retries + 1) * args.timeout + backoff):.1f} s here")
    without = waves * ((defaults.max_retries + 1) * defaults.timeout + default_backoff)
    print(f"  = {without:.0f} s ({without / 60:.1f} min) with the defaults")
    rounds = math.ceil(defaults.circuit_failures / threads)  # attempt rounds until the breaker opens
    print(f"with the breaker and the defaults: about {rounds} x {defaults.timeout} s (one wave's timeouts)")
    print("metrics:", {k: round(v, 3) for k, v in sorted(metrics.items())})


if __name__ == "__main__":
    asyncio.run(main())
