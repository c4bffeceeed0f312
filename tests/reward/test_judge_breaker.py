"""The judge's circuit breaker, through veRL's reward loop and ``compute_score``, against servers on 127.0.0.1.

A judge that accepts requests and never answers used to cost every row ``timeout x (max_retries + 1)`` plus
backoff (about 17 minutes for a 64-row step with the defaults on 2 cores); consecutive endpoint failures now
open the circuit, and rows get their rule score at once until a probe finds the endpoint back.
"""

from __future__ import annotations

import asyncio

import pytest
from aiohttp import web
from verl.experimental.reward_loop.reward_loop import RewardLoopWorker

from verl_ext.reward import compute_score
from verl_ext.reward.judge import judge_step_metrics
from verl_ext.reward_keys import JudgeError

QUESTION = "What colour is the countertop?"
TRUTH = "The countertop is tan."


class Endpoint:
    """``POST /v1/chat/completions``: hangs, answers "correct", or answers a non-verdict, as ``modes`` says.

    ``modes`` is consumed one per request; the last one stays.
    """

    def __init__(self, *modes: str) -> None:
        self.modes = list(modes)
        self.requests = 0

    async def handle(self, request: web.Request) -> web.Response:
        await request.read()
        self.requests += 1
        mode = self.modes.pop(0) if len(self.modes) > 1 else self.modes[0]
        if mode == "hang":
            await asyncio.sleep(30)
        content = "correct" if mode == "ok" else "it depends"
        return web.json_response({"choices": [{"message": {"role": "assistant", "content": content}}]})


async def test_a_hung_judge_costs_one_wave_of_timeouts_not_every_row(serve, model_dir, reward_config, rollout_batch):
    """64 distinct open answers, one step: the first rows' timeouts open the circuit, the rest are not sent."""
    endpoint = Endpoint("hang")
    judge = {"enable": True, "timeout": 0.2, "max_retries": 1, "circuit_failures": 3, "circuit_open_s": 600.0}
    rows = [
        {
            "data_source": "visual_cot",
            "question": QUESTION,
            "turns": [f"<think>x</think><answer>colour {i}</answer>"],
            "truth": TRUTH,
            "extra_info": {"question": QUESTION},
        }
        for i in range(64)
    ]
    worker = RewardLoopWorker(reward_config(model_dir, {"judge": judge}), reward_router_address=await serve(endpoint))
    infos = [o["reward_extra_info"] for o in await worker.compute_score_batch(rollout_batch(rows))]

    errors = [JudgeError(int(i["judge_error"])) for i in infos]
    sent = errors.count(JudgeError.TIMEOUT)
    assert set(errors) == {JudgeError.TIMEOUT, JudgeError.CIRCUIT_OPEN}
    assert sent <= endpoint.requests < 64  # without the breaker: 128 (every row, retried once)
    assert all(i["acc"] == 0.0 and i["judge_failed"] == 1.0 for i in infos)  # the rule score, as on any failure
    metrics = judge_step_metrics(infos)
    assert (metrics["judge/circuit_opens"], metrics["judge/short_circuited"]) == (1.0, 64.0 - sent)
    assert metrics["judge/failures/circuit_open"] == 64.0 - sent


async def ask(address: str, answer: str, **options: float) -> dict[str, float]:
    """compute_score of one open answer, judged at ``address`` with fast breaker settings."""
    judge = {"enable": True, "base_url": f"http://{address}/v1", "timeout": 0.2, "max_retries": 0, **options}
    text = f"<think>x</think><answer>{answer}</answer>"
    return await asyncio.to_thread(compute_score, "visual_cot", text, TRUTH, {"question": QUESTION}, judge=judge)


async def test_after_the_open_time_one_probe_closes_or_reopens_the_circuit(serve):
    endpoint = Endpoint("hang", "hang", "ok", "ok", "hang", "hang", "hang")
    address = await serve(endpoint)
    options = {"circuit_failures": 2, "circuit_open_s": 0.5}

    first, second, shorted = [await ask(address, a, **options) for a in ("a", "b", "c")]
    assert [r["judge_error"] for r in (first, second, shorted)] == [1.0, 1.0, float(JudgeError.CIRCUIT_OPEN)]
    assert (second["judge_circuit_opens"], endpoint.requests) == (1.0, 2)  # "c" was not sent

    await asyncio.sleep(0.6)  # the open time passes: the next row is the probe, the endpoint is back
    probe, after = [await ask(address, a, **options) for a in ("d", "e")]
    assert (probe["acc"], probe["judge_error"], after["acc"], endpoint.requests) == (1.0, 0.0, 1.0, 4)

    down = [await ask(address, a, **options) for a in ("f", "g")]
    await asyncio.sleep(0.6)
    probe, shorted = [await ask(address, a, **options) for a in ("h", "i")]
    assert [r["judge_circuit_opens"] for r in (*down, probe)] == [0.0, 1.0, 1.0]  # the failed probe reopens it
    assert shorted["judge_error"] == float(JudgeError.CIRCUIT_OPEN) and endpoint.requests == 7


@pytest.mark.parametrize("modes", [("garbage",), ("hang", "ok", "hang", "ok", "hang")])
async def test_replies_and_interrupted_failures_never_open_it(modes, serve):
    """Only consecutive endpoint failures count: a reply, even no verdict, shows the endpoint is up."""
    endpoint = Endpoint(*modes)
    address = await serve(endpoint)
    results = [await ask(address, str(i), circuit_failures=2, circuit_open_s=600.0) for i in range(5)]

    assert endpoint.requests == 5
    assert JudgeError.CIRCUIT_OPEN not in [r["judge_error"] for r in results]
    assert sum(r["judge_circuit_opens"] for r in results) == 0.0
