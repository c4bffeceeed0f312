"""The LLM judge through veRL's real reward loop, against an OpenAI-compatible server started by the test.

RewardLoopWorker (naive manager) hands ``reward_router_address`` to compute_score as it does when
``reward.reward_model.enable=true``; here it points at a small aiohttp app on 127.0.0.1 that answers
chat completions from a table, or fails in the ways a real server does.
"""

from __future__ import annotations

import asyncio
import json

import pytest
from aiohttp import web
from verl.experimental.reward_loop.reward_loop import RewardLoopWorker

from verl_ext.reward import compute_score
from verl_ext.reward.judge import judge_step_metrics, parse_verdict

REASONING = "I zoomed into the kitchen; SECRET-REASONING says the counter looks tan."
TAN = {
    "data_source": "visual_cot",
    "question": "What colour is the countertop?",
    "turns": [f"<think>{REASONING}</think><answer>tan</answer>"],
    "truth": "The countertop is tan.",
    "extra_info": {"question": "What colour is the countertop?"},
}
RIGHT = {
    "data_source": "deepeyes_vstar",
    "question": "Where is the barrier?",
    "turns": ["<think>It is on the right, I think.</think><answer>right</answer>"],
    "truth": "The barrier is on the left side",
    "extra_info": {"question": "Where is the barrier?"},
}
#: Rows the rules settle: they must never reach the judge.
RULE_ROWS = [
    {**TAN, "turns": ["<think>x</think><answer>the countertop is tan</answer>"]},  # exact match
    {
        "data_source": "vstar",
        "question": "Which colour?",
        "turns": ["<think>x</think><answer>B</answer>"],
        "truth": "A",
        "extra_info": {"options": ["red", "blue"], "question": "Which colour?"},
    },
    {**TAN, "turns": ["<think>x</think><answer>4</answer>"], "truth": "3"},
    {**TAN, "turns": ["<think>x</think><answer>no</answer>"], "truth": "yes"},
    {**TAN, "turns": ["<think>x</think><answer>0.5</answer>"], "truth": r"$\frac{1}{3}$"},
    {
        "data_source": "refcoco",
        "question": "Locate the cup.",
        "turns": ["<think>x</think><answer>[0, 0, 5, 5]</answer>"],
        "truth": [0, 0, 10, 10],
        "extra_info": {"image_width": 56, "image_height": 56, "resized_width": 56, "resized_height": 56},
    },
]


class JudgeServer:
    """``POST /v1/chat/completions``: a verdict per answer from ``verdicts``, or the failure ``mode`` asks for."""

    def __init__(self, verdicts: dict[str, str], mode: str = "ok") -> None:
        self.verdicts, self.mode = verdicts, mode
        self.requests: list[dict] = []
        self.headers: list[dict] = []

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.json()
        self.requests.append(body)
        self.headers.append(dict(request.headers))
        if self.mode == "500":
            return web.Response(status=500, text="engine overloaded")
        if self.mode == "hang":
            await asyncio.sleep(5)
        if self.mode == "not json":
            return web.Response(text="<html>bad gateway</html>")
        answer = body["messages"][-1]["content"].split("<<<")[1].split(">>>")[0]
        content = "I would say it is probably right" if self.mode == "garbage" else self.verdicts.get(answer, "no")
        return web.json_response({"choices": [{"index": 0, "message": {"role": "assistant", "content": content}}]})


@pytest.fixture
async def serve():
    """``await serve(server)``: the server's "host:port" on 127.0.0.1; stopped after the test."""
    runners = []

    async def _serve(server: JudgeServer) -> str:
        app = web.Application()
        app.router.add_post("/v1/chat/completions", server.handle)
        runner = web.AppRunner(app)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0, shutdown_timeout=1.0)
        await site.start()
        runners.append(runner)
        return f"127.0.0.1:{runner.addresses[0][1]}"

    yield _serve
    for runner in runners:
        await runner.cleanup()


JUDGE = {"enable": True, "timeout": 0.5, "max_retries": 1}


async def score(model_dir, reward_config, rollout_batch, address: str | None, rows: list[dict]) -> list[dict]:
    """reward_extra_info of each row through veRL's RewardLoopWorker; no address: the judge is off."""
    kwargs = {"judge": JUDGE} if address else {}
    worker = RewardLoopWorker(reward_config(model_dir, kwargs), reward_router_address=address)
    outputs = await worker.compute_score_batch(rollout_batch(rows))
    return [o["reward_extra_info"] for o in outputs]


async def test_open_answers_get_the_judges_verdict_and_nothing_else_reaches_it(
    serve, model_dir, reward_config, rollout_batch
):
    server = JudgeServer({"tan": "Correct.", "right": "incorrect"})
    infos = await score(model_dir, reward_config, rollout_batch, await serve(server), [TAN, RIGHT, *RULE_ROWS])

    assert sorted(r["messages"][-1]["content"].split("<<<")[1].split(">>>")[0] for r in server.requests) == [
        "right",
        "tan",
    ]
    request = json.dumps(next(r for r in server.requests if "<<<tan>>>" in json.dumps(r)))
    assert TAN["question"] in request and TAN["truth"] in request
    assert "SECRET-REASONING" not in request and "<think>" not in request
    tan, right, *rules = infos
    assert (tan["acc"], tan["score"]) == (1.0, pytest.approx(1.0))  # ROUGE alone gave acc 0
    assert (right["acc"], right["score"]) == (0.0, pytest.approx(0.1))  # the ROUGE soft score is gone
    assert (tan["judge_called"], tan["judge_agree"], right["judge_agree"]) == (1.0, 0.0, 1.0)
    assert all(r["judge_called"] == 0.0 and r["judge_agree"] == -1.0 for r in rules)
    assert judge_step_metrics(infos) == {
        "judge/calls": 2.0,
        "judge/failures": 0.0,
        "judge/agree_with_rules": 0.5,
        "judge/latency_mean_s": pytest.approx((tan["judge_latency_s"] + right["judge_latency_s"]) / 2),
        "judge/latency_max_s": max(tan["judge_latency_s"], right["judge_latency_s"]),
    }


@pytest.mark.parametrize("mode", ["garbage", "not json", "500", "hang"])
async def test_a_failing_judge_leaves_the_rule_score_and_is_counted(
    mode, serve, model_dir, reward_config, rollout_batch
):
    server = JudgeServer({"tan": "correct"}, mode=mode)
    infos = await score(model_dir, reward_config, rollout_batch, await serve(server), [TAN, RIGHT, RULE_ROWS[1]])
    without = await score(model_dir, reward_config, rollout_batch, None, [TAN, RIGHT, RULE_ROWS[1]])

    for judged, rules in zip(infos, without, strict=True):
        assert (judged["score"], judged["acc"]) == (rules["score"], rules["acc"])
    assert 0.1 < infos[0]["score"] < 1.0  # the ROUGE soft score the rules give "tan"
    assert [i["judge_failed"] for i in infos] == [1.0, 1.0, 0.0]
    assert judge_step_metrics(infos)["judge/failures"] == 2.0
    if mode in ("500", "hang"):  # retried once (max_retries 1); a readable but wrong reply is not retried
        assert len(server.requests) == 4


async def test_a_group_repeating_an_answer_makes_one_request(serve, model_dir, reward_config, rollout_batch):
    server = JudgeServer({"tan": "yes", "beige": "no"})
    beige = {**TAN, "turns": ["<think>x</think><answer>beige</answer>"]}
    infos = await score(model_dir, reward_config, rollout_batch, await serve(server), [TAN] * 5 + [beige] * 3)

    assert len(server.requests) == 2
    assert [i["acc"] for i in infos] == [1.0] * 5 + [0.0] * 3
    assert judge_step_metrics(infos)["judge/calls"] == 8.0


async def test_an_external_endpoint_takes_the_key_from_the_environment(serve, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-key")
    server = JudgeServer({"tan": "correct"})
    base_url = f"http://{await serve(server)}/v1"
    judge = {"enable": True, "base_url": base_url, "model_name": "judge-7b", "timeout": 2.0}
    text = "<think>hmm</think><answer>tan</answer>"
    result = await asyncio.to_thread(compute_score, "visual_cot", text, TAN["truth"], TAN["extra_info"], judge=judge)

    assert result["acc"] == 1.0 and result["judge_called"] == 1.0
    assert server.requests[0]["model"] == "judge-7b"
    assert server.headers[0]["Authorization"] == "Bearer sk-test-key"


def test_enabling_the_judge_without_an_endpoint_is_a_configuration_error():
    with pytest.raises(ValueError, match="base_url"):
        compute_score("visual_cot", "<answer>tan</answer>", "tan", {}, judge={"enable": True})
    with pytest.raises(ValueError, match="api_key"):
        compute_score("visual_cot", "<answer>tan</answer>", "tan", {}, judge={"enable": True, "api_key": "x"})


@pytest.mark.parametrize(
    ("reply", "verdict"),
    [
        ("correct", True),
        ("Correct.", True),
        ("**YES**", True),
        ("<think>The reference says tan.</think>\ncorrect", True),
        ("incorrect", False),
        ("No", False),
        ("'incorrect'", False),
        ("correct, because it is tan", None),
        ("The answer is correct", None),
        ("yes and no", None),
        ("", None),
        (None, None),
        (7, None),
    ],
)
def test_verdicts_are_read_strictly(reply, verdict):
    assert parse_verdict(reply) is verdict
