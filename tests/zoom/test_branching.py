"""The paper's two-phase rollout (``ground_r1_branch_agent``) through veRL's own AgentLoopWorker on CPU.

A scripted policy zooms on its first turn (a different box for each first-turn request) and answers on later turns,
differently each time; it reports ``num_cached_tokens`` as a prefix cache behind sticky routing would. Sessions carry
``uid``/``session_id`` as veRL's v1 worker passes them.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf
from verl.experimental.agent_loop import agent_loop
from verl.protocol import DataProto
from verl.trainer.ppo.core_algos import compute_grpo_outcome_advantage
from verl.trainer.ppo.ray_trainer import compute_advantage
from verl.workers.rollout.replica import TokenOutput

from verl_ext.algorithms.routing import routed_evidence_scales
from verl_ext.algorithms.srpo import SRPOConfig, scale_bins
from verl_ext.config import AGENT_LOOP_CONFIG, compose_recipe
from verl_ext.evidence import ZOOM_RECORDS_KEY
from verl_ext.reward.score import compute_score
from verl_ext.tools import AGENT_NAME
from verl_ext.tools.agent_loop import ZoomToolAgentLoop
from verl_ext.tools.branching import (
    _GROUPS,
    BRANCH_AGENT_NAME,
    BRANCH_FACTOR_KEY,
    BRANCH_KEY,
    BranchLeaderFailed,
    BranchZoomAgentLoop,
    branch_factor_of,
    branch_metrics,
    check_branching,
)
from verl_ext.tools.region_zoom import RegionZoomTool

RECIPE_AGENT_LOOP = AGENT_LOOP_CONFIG
#: First-turn boxes in the 252x168 frame: two small (scale < 1/3) and two large (> 2/3) regions.
BOXES = [[10, 20, 60, 70], [100, 40, 160, 110], [0, 0, 240, 160], [5, 5, 250, 165]]


class BranchServer:
    """Scripted policy: the k-th first-turn request zooms into ``BOXES[k]`` (or answers at once when k is in
    ``answer_first``; raises when k is in ``fail_first``); later turns answer, under each request id first B (the
    right answer) then C, so siblings continue differently. Reports the longest prefix it already processed under
    the same request id as ``num_cached_tokens``."""

    def __init__(self, tokenizer: Any, answer_first: set[int] = frozenset(), fail_first: set[int] = frozenset()):
        self.tokenizer, self.answer_first, self.fail_first = tokenizer, answer_first, fail_first
        self.calls: list[dict[str, Any]] = []
        self.first_turns = 0
        self._answers: dict[str, int] = defaultdict(int)
        self._seen: dict[str, list[list[int]]] = defaultdict(list)

    async def generate(self, request_id, *, prompt_ids, sampling_params, image_data=None, **kwargs) -> TokenOutput:
        await asyncio.sleep(0)  # yield like a real server call
        first = self.tokenizer.decode(prompt_ids).count("<|im_start|>assistant") == 1
        cached = max((_common_prefix(prompt_ids, s) for s in self._seen[request_id]), default=0)
        self.calls.append(
            {
                "request_id": request_id,
                "prompt_ids": list(prompt_ids),
                "images": list(image_data or []),
                "sampling_params": dict(sampling_params),
                "first": first,
            }
        )
        if first:
            k, self.first_turns = self.first_turns, self.first_turns + 1
            if k in self.fail_first:
                raise RuntimeError(f"replica lost during first turn {k}")
            text = (
                "<think>Answer.</think> <answer>B</answer>"
                if k in self.answer_first
                else ("<think>Zoom.</think> <box>" + str(BOXES[k % len(BOXES)]) + "</box>")
            )
        else:
            k = self._answers[request_id]
            self._answers[request_id] += 1
            text = f"<think>Reading {k}.</think> <answer>{'BC'[k % 2]}</answer>"
        ids = self.tokenizer.encode(text, add_special_tokens=False) + [
            self.tokenizer.convert_tokens_to_ids("<|im_end|>")
        ]
        self._seen[request_id].append(list(prompt_ids) + ids)
        return TokenOutput(token_ids=ids, log_probs=[-0.5] * len(ids), extra_fields={"num_cached_tokens": cached})


def _common_prefix(a: list[int], b: list[int]) -> int:
    n = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        n += 1
    return n


@pytest.fixture(autouse=True)
def isolated_registry(monkeypatch):
    """The worker registers the config file's loops in veRL's process-wide dict: keep them to this test."""
    monkeypatch.setattr(agent_loop, "_agent_loop_registry", dict(agent_loop._agent_loop_registry))
    agent_loop.register(AGENT_NAME)(ZoomToolAgentLoop)
    agent_loop.register(BRANCH_AGENT_NAME)(BranchZoomAgentLoop)
    yield
    assert not _GROUPS  # every published state was read or dropped


@pytest.fixture
def branch_loop(make_zoom_loop):
    """A ZoomLoop (<box> syntax) whose rows use the recipe's agent-loop file, G2 set in the run's config."""

    def build(factor: int, *overrides: str):
        loop = make_zoom_loop(
            "ground_r1_box",
            f"actor_rollout_ref.rollout.agent.agent_loop_config_path={RECIPE_AGENT_LOOP}",
            f"+{BRANCH_FACTOR_KEY}={factor}",
            *overrides,
        )
        loop.worker.llm_client = loop.server = BranchServer(loop.tokenizer)
        return loop

    return build


def prompt_kwargs(loop, n: int, uid: str = "prompt-0", with_sessions: bool = True) -> list[dict[str, Any]]:
    """Per-session kwargs as veRL's v1 worker hands them to the agent loop."""
    messages = loop.messages()
    create = {"image_path": "scene.png", "min_pixels": 3136, "max_pixels": 64 * 28 * 28}
    rows = []
    for i in range(n):
        row = {
            "raw_prompt": messages,
            "agent_name": AGENT_NAME,
            "data_source": "vstar",
            "global_steps": 1,
            "tools_kwargs": {"image_zoom_in_tool": {"create_kwargs": create}},
        }
        if with_sessions:
            row.update(uid=uid, session_id=i)
        rows.append(row)
    return rows


def run_batch(loop, rows: list[dict[str, Any]], validate: bool = False) -> DataProto:
    """``AgentLoopWorker.generate_sequences`` over the rows (one DataProto column per key)."""
    columns = {}
    for key in rows[0]:
        column = np.empty(len(rows), dtype=object)
        column[:] = [r[key] for r in rows]
        columns[key] = column
    batch = DataProto(non_tensor_batch=columns, meta_info={"validate": validate})
    return asyncio.run(loop.worker.generate_sequences(batch))


def sessions(loop, rows: list[dict[str, Any]]) -> list[Any]:
    """The sessions of one prompt as veRL's v1 worker runs them: tasks of one process, settled together."""
    sampling = {"temperature": 1.0, "top_p": 1.0, "top_k": -1, "repetition_penalty": 1.0, "logprobs": False}

    async def go():
        tasks = [
            asyncio.create_task(
                loop.worker._run_agent_loop(
                    sampling, {"step": 1, "sample_index": 0, "rollout_n": i, "validate": False}, **row
                )
            )
            for i, row in enumerate(rows)
        ]
        return await asyncio.gather(*tasks, return_exceptions=True)

    return asyncio.run(go())


def response_of(out: DataProto, i: int) -> list[int]:
    mask = out.batch["attention_mask"][i][-out.batch["responses"].shape[1] :].bool()
    return out.batch["responses"][i][mask].tolist()


def branch(out: DataProto, i: int) -> dict[str, Any]:
    return out.non_tensor_batch[BRANCH_KEY][i]


def zoom_tool(loop) -> RegionZoomTool:
    return next(t for t in loop.worker.tools if isinstance(t, RegionZoomTool))


def test_one_prompt_gives_g1_times_g2_trajectories_sharing_each_first_turn(branch_loop):
    loop = branch_loop(2)
    tool = zoom_tool(loop)
    decodes = tool.originals.decodes
    out = run_batch(loop, prompt_kwargs(loop, 8))
    server = loop.server

    assert len(out) == 8
    assert sum(c["first"] for c in server.calls) == 4  # G1 first turns, not G1 * G2
    assert tool.originals.decodes == decodes + 1 and len(tool.originals) == 0  # one decode, released at the end
    roles = [branch(out, i)["role"] for i in range(8)]
    assert roles == ["leader", "follower"] * 4
    first_turn_crops = [c["images"][1] for c in server.calls if not c["first"] and len(c["images"]) == 2]
    for leader in range(0, 8, 2):
        follower = leader + 1
        shared = branch(out, follower)["shared_response"]
        assert shared == branch(out, leader)["shared_response"] > 0
        # token for token: the first turn and the tool turn with the crop
        assert response_of(out, follower)[:shared] == response_of(out, leader)[:shared]
        assert (
            out.batch["rollout_log_probs"][follower][:shared].tolist()
            == out.batch["rollout_log_probs"][leader][:shared].tolist()
        )
        assert (
            out.batch["response_mask"][follower][:shared].tolist()
            == out.batch["response_mask"][leader][:shared].tolist()
        )
        # pixel for pixel: the same crop reaches the model and the trainer
        mm_l, mm_f = (out.non_tensor_batch["multi_modal_inputs"][i] for i in (leader, follower))
        torch.testing.assert_close(mm_f["pixel_values"], mm_l["pixel_values"], rtol=0, atol=0)
        records = out.non_tensor_batch[ZOOM_RECORDS_KEY]
        assert list(records[follower]) == list(records[leader])
        # siblings continue differently
        assert response_of(out, follower)[shared:] != response_of(out, leader)[shared:]
        assert branch(out, follower)["tail"] != branch(out, leader)["tail"]
    # followers went out under their leader's request id (sticky routing), their prefix already cached there
    followers = [c for c in server.calls if not c["first"]]
    assert len({c["request_id"] for c in followers}) == 4
    assert len({tuple(np.asarray(crop).ravel()[:50]) for crop in first_turn_crops}) == 4
    for i in range(1, 8, 2):
        record = branch(out, i)
        tool_turn = record["shared_response"] - int(out.batch["response_mask"][i][: record["shared_response"]].sum())
        assert record["cached_tokens"] >= record["prefix_tokens"] - tool_turn  # at least the leader's first request
    metrics = branch_metrics(list(out.non_tensor_batch[BRANCH_KEY]))
    # the same from the trajectories' extra_fields, as the v1 trainer fetches them
    extra_fields = [{BRANCH_KEY: r, "reward_extra_info": {}} for r in out.non_tensor_batch[BRANCH_KEY]]
    assert branch_metrics(extra_fields) == metrics
    assert metrics["branch/branches_per_prompt"] == 4 and metrics["branch/follower_share"] == 0.5
    assert metrics["branch/diverged_share"] == 1.0 and 0.0 <= metrics["branch/follower_cache_hit_share"] <= 1.0


def test_siblings_share_their_scale_bin_through_reward_and_srpo(branch_loop):
    """Rollout output -> the recipe's reward -> veRL's compute_advantage(adv_estimator=srpo): the two siblings of a
    first turn share its evidence scale and bin; each bin's advantages are veRL's GRPO over that bin (the bins'
    mean rewards tie, so the inter-bin term is 0)."""
    loop = branch_loop(2)
    out = run_batch(loop, prompt_kwargs(loop, 8))
    scores, scales = [], []
    for i in range(8):
        text = loop.tokenizer.decode(response_of(out, i), skip_special_tokens=True)
        result = compute_score("vstar", text, "B", {ZOOM_RECORDS_KEY: list(out.non_tensor_batch[ZOOM_RECORDS_KEY][i])})
        scores.append(result["score"])
        scales.append(result["evidence_scale"])
    assert all(scales[i] == scales[i + 1] for i in range(0, 8, 2))
    bins = scale_bins(torch.tensor(scales, dtype=torch.float64), 3).tolist()
    assert sorted(bins) == [0, 0, 0, 0, 2, 2, 2, 2]  # two small boxes, two large ones
    assert sorted(scores[0:2]) == sorted(scores[2:4]) and scores[0] != scores[1]  # one right, one wrong per pair

    mask = out.batch["response_mask"].float()
    rewards = torch.zeros_like(mask)
    last = mask.cumsum(-1).argmax(-1)
    rewards[torch.arange(8), last] = torch.tensor(scores)
    data = DataProto.from_dict(
        tensors={"token_level_rewards": rewards, "response_mask": out.batch["response_mask"]},
        non_tensors={"uid": np.array(["prompt-0"] * 8, dtype=object)},
    )
    config = OmegaConf.create({"srpo": {"num_bins": 3}})
    with routed_evidence_scales(scales):
        advantages = compute_advantage(data, adv_estimator="srpo", config=config).batch["advantages"]
    for members in ([i for i in range(8) if bins[i] == 0], [i for i in range(8) if bins[i] == 2]):
        grpo, _ = compute_grpo_outcome_advantage(rewards[members], mask[members], np.array(["bin"] * 4, dtype=object))
        torch.testing.assert_close(advantages[members], grpo.to(advantages.dtype))
    assert SRPOConfig.from_algorithm_config(config).num_bins == 3


def test_a_first_turn_that_answers_is_not_shared(branch_loop):
    """Group 1's leader answers without zooming: its follower takes its own first turn (an independent sample);
    copying an answered turn would only duplicate one trajectory."""
    loop = branch_loop(2)
    loop.server.answer_first = {1}
    out = run_batch(loop, prompt_kwargs(loop, 4))
    roles = [branch(out, i)["role"] for i in range(4)]
    answered = [g for g in (0, 2) if "<box>" not in loop.tokenizer.decode(response_of(out, g))]
    assert len(answered) == 1 and sum(c["first"] for c in loop.server.calls) == 3
    (g,) = answered
    other = 2 - g
    assert roles[g : g + 2] == ["leader", "independent"] and roles[other : other + 2] == ["leader", "follower"]
    assert branch(out, g + 1)["shared_response"] == 0
    assert branch_metrics(list(out.non_tensor_batch[BRANCH_KEY]))["branch/branches_per_prompt"] == 3


def test_a_failed_leader_fails_its_followers_with_its_reason(branch_loop):
    loop = branch_loop(2)
    loop.server.fail_first = {1}  # the second first-turn request: one of the two leaders
    results = sessions(loop, prompt_kwargs(loop, 4))
    failed = [g for g in (0, 2) if isinstance(results[g], RuntimeError)]
    assert len(failed) == 1
    (g,) = failed
    assert isinstance(results[g + 1], BranchLeaderFailed) and "replica lost during first turn 1" in str(results[g + 1])
    assert not any(isinstance(r, BaseException) for r in results[2 - g : 4 - g])  # the other group is unaffected
    assert sum(c["first"] for c in loop.server.calls) == 2  # the failed leader's follower never generated


def test_a_follower_waits_a_bounded_time(branch_loop, monkeypatch):
    """A leader that never publishes (stuck server) cannot hold its follower forever."""
    loop = branch_loop(2)
    gate = asyncio.Event()
    real = loop.server.generate

    async def stuck(*args, **kwargs):
        if kwargs["prompt_ids"] and not loop.server.calls:
            await asyncio.wait_for(gate.wait(), 0.5)  # the leader's first turn outlives the follower's patience
        return await real(*args, **kwargs)

    monkeypatch.setattr(loop.server, "generate", stuck)
    monkeypatch.setattr(BranchZoomAgentLoop, "__init__", _with_timeout(BranchZoomAgentLoop.__init__, 0.1))
    results = sessions(loop, prompt_kwargs(loop, 2))
    assert isinstance(results[1], BranchLeaderFailed) and "within 0.1 s" in str(results[1])


def _with_timeout(init, seconds):
    def patched(self, *args, **kwargs):
        init(self, *args, **{**kwargs, "branch_timeout_s": seconds})

    return patched


@pytest.mark.parametrize("case", ["factor_1", "no_session", "validation", "greedy"])
def test_without_branching_it_is_exactly_the_zoom_loop(branch_loop, case):
    """branch_factor 1, rows without session_id (veRL's non-v1 worker), validation sampling and greedy sampling:
    every session takes its own first turn and the trajectories equal ZoomToolAgentLoop's token for token."""
    overrides = {
        "validation": ("actor_rollout_ref.rollout.val_kwargs.temperature=0.7",),
        "greedy": ("actor_rollout_ref.rollout.temperature=0",),
    }.get(case, ())
    loop = branch_loop(1 if case == "factor_1" else 2, *overrides)
    rows = prompt_kwargs(loop, 4, with_sessions=case != "no_session")
    out = run_batch(loop, rows, validate=case == "validation")
    assert sum(c["first"] for c in loop.server.calls) == 4
    roles = [r["role"] for r in out.non_tensor_batch.get(BRANCH_KEY, [{"role": "off"}] * 4)]
    assert roles == ["off"] * 4 and len({c["request_id"] for c in loop.server.calls}) == 4

    plain = branch_loop(1, *overrides)
    agent_loop.register(AGENT_NAME)(ZoomToolAgentLoop)  # today's loop, without the file's entry
    reference = run_batch(
        plain,
        [{k: v for k, v in r.items() if k not in ("uid", "session_id")} for r in rows],
        validate=case == "validation",
    )
    # the same trajectories (the scripted policy hands out first-turn boxes in request order, which may vary)
    assert sorted(response_of(out, i) for i in range(4)) == sorted(response_of(reference, i) for i in range(4))
    if case == "factor_1":
        assert BRANCH_KEY not in out.non_tensor_batch


def test_full_determinism_gives_each_follower_its_own_seed(branch_loop):
    """The server seeds every request alike under full_determinism: without their own seeds siblings would repeat
    the leader's continuation."""
    loop = branch_loop(2, "actor_rollout_ref.rollout.full_determinism=true", "actor_rollout_ref.rollout.seed=7")
    run_batch(loop, prompt_kwargs(loop, 4))
    seeds = [c["sampling_params"].get("seed") for c in loop.server.calls]
    follower_seeds = {s for s in seeds if s is not None}
    assert len(follower_seeds) == 2 and 7 not in follower_seeds
    assert seeds.count(None) == len(seeds) - 2  # leaders keep the server's seed; followers make one request each


def test_rollout_n_must_be_a_multiple_of_the_branch_factor():
    """The recipe refuses at start a rollout.n that cannot split into G1 groups of G2 (the run setting)."""
    from recipe.ground_r1.main_ground_r1 import check_config

    good = compose_recipe(["actor_rollout_ref.rollout.n=8", "ground_r1.branch_factor=2"])
    bad = compose_recipe(["actor_rollout_ref.rollout.n=7", "ground_r1.branch_factor=2"])
    check_config(good)  # the recipe's start-up checks, before Ray
    with pytest.raises(ValueError, match=r"rollout.n=7 must be a multiple of 2"):
        check_config(bad)
    for value in (0, -2, 1.5, True, "two"):
        with pytest.raises(ValueError, match="branch_factor must be a positive integer"):
            check_branching(compose_recipe([f"ground_r1.branch_factor={value}"]))


def test_the_recipe_default_is_independent_rollouts(branch_loop):
    """The recipe ships G2 = 1; a config without the key (veRL's own ppo_trainer) also runs without branching."""
    assert branch_factor_of(compose_recipe([])) == 1
    loop = branch_loop(2)
    del loop.worker.config.ground_r1
    out = run_batch(loop, prompt_kwargs(loop, 4))
    assert sum(c["first"] for c in loop.server.calls) == 4 and BRANCH_KEY not in out.non_tensor_batch


def test_an_agent_loop_file_that_sets_branch_factor_is_refused(tmp_path):
    """G2 lives in one place: an agent-loop entry still carrying branch_factor would be passed on unread by veRL
    (the loop ignores unknown kwargs) and the run would silently not branch, so the recipe refuses it."""
    from recipe.ground_r1.main_ground_r1 import check_config

    entries = OmegaConf.load(RECIPE_AGENT_LOOP)
    entries[0].branch_factor = 2
    path = tmp_path / "agent_loop.yaml"
    OmegaConf.save(entries, path)
    config = compose_recipe([f"actor_rollout_ref.rollout.agent.agent_loop_config_path={path}"])
    with pytest.raises(ValueError, match=r"sets branch_factor.*ground_r1\.branch_factor=2"):
        check_config(config)


def test_the_branching_launch_script_sets_g2_in_the_run_config(tmp_path):
    """examples/run_qwen2_5_vl_7b_srpo_branching.sh hands G2 to hydra (no environment variable a node could miss):
    its overrides compose into a config whose G2 and rollout.n the recipe accepts."""
    from recipe.ground_r1.main_ground_r1 import check_config

    script = Path(__file__).resolve().parents[2] / "examples" / "run_qwen2_5_vl_7b_srpo_branching.sh"
    env = {**os.environ, "PRINT_OVERRIDES": "1", "DATA_DIR": str(tmp_path), "TRAIN_FILES": str(tmp_path / "a.parquet")}
    env = {k: v for k, v in env.items() if not k.startswith("GROUND_R1_")}
    out = subprocess.run(["bash", str(script)], env={**env, "G1": "3"}, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    config = compose_recipe(out.stdout.splitlines())
    assert branch_factor_of(config) == 2 and config.actor_rollout_ref.rollout.n == 6
    check_config(config)
