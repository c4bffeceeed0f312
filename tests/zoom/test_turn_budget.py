"""The recipe's agent-loop config caps every assistant turn (the paper's 512 tokens) within the response budget."""

from __future__ import annotations

import pytest
from omegaconf import OmegaConf
from verl.experimental.agent_loop import agent_loop

from verl_ext.config import AGENT_LOOP_CONFIG
from verl_ext.tools import AGENT_NAME
from verl_ext.tools.agent_loop import ZoomToolAgentLoop

RECIPE_AGENT_LOOP = AGENT_LOOP_CONFIG
THINK = "<think>Too small to read; zoom in.</think> "
ANSWER = "<think>Readable now.</think> <answer>B</answer>"


@pytest.fixture(autouse=True)
def isolated_agent_loop_registry(monkeypatch):
    """veRL registers a config file's agent loops in a process-wide dict: keep each test's entries to itself."""
    monkeypatch.setattr(agent_loop, "_agent_loop_registry", dict(agent_loop._agent_loop_registry))
    agent_loop.register(AGENT_NAME)(ZoomToolAgentLoop)  # as the plugin registered it, whatever ran before


def test_each_turn_asks_for_at_most_512_tokens_and_never_past_the_budget(make_zoom_loop):
    per_turn = OmegaConf.load(RECIPE_AGENT_LOOP)[0].max_tokens_per_turn
    budget = 600
    loop = make_zoom_loop(
        "ground_r1_box",
        f"actor_rollout_ref.rollout.agent.agent_loop_config_path={RECIPE_AGENT_LOOP}",
        f"actor_rollout_ref.rollout.response_length={budget}",
    )
    out = loop.run([THINK + loop.zoom_call([10, 20, 60, 70]), ANSWER])
    first, second = loop.server.calls
    assert first["sampling_params"]["max_tokens"] == per_turn
    used = len(second["prompt_ids"]) - len(first["prompt_ids"])  # turn 1 and the tool turn with the crop
    assert 0 < budget - used < per_turn
    assert second["sampling_params"]["max_tokens"] == budget - used
    assert "<answer>B</answer>" in loop.text(out)


def test_without_the_config_file_turns_are_not_capped(make_zoom_loop):
    loop = make_zoom_loop("hermes")
    loop.run([ANSWER])
    assert "max_tokens" not in loop.server.calls[0]["sampling_params"]


def test_a_cap_below_one_is_refused(make_zoom_loop, tmp_path):
    bad = tmp_path / "agent_loop.yaml"
    OmegaConf.save(OmegaConf.create([{**OmegaConf.load(RECIPE_AGENT_LOOP)[0], "max_tokens_per_turn": 0}]), bad)
    loop = make_zoom_loop("hermes", f"actor_rollout_ref.rollout.agent.agent_loop_config_path={bad}")
    with pytest.raises(Exception, match="max_tokens_per_turn must be >= 1"):
        loop.run([ANSWER])


@pytest.mark.parametrize("fmt", ["ground_r1_box", "hermes"])
def test_a_zoom_whose_crop_does_not_fit_the_budget_is_not_evidence(make_zoom_loop, fmt):
    probe = make_zoom_loop(fmt)
    first_turn = THINK + probe.zoom_call([10, 20, 60, 70])
    budget = len(probe.tokenizer.encode(first_turn, add_special_tokens=False)) + 8  # no room for the crop's turn
    loop = make_zoom_loop(fmt, f"actor_rollout_ref.rollout.response_length={budget}")
    out = loop.run([first_turn, ANSWER])
    assert len(loop.server.calls) == 1  # veRL ended the rollout instead of showing the crop
    (record,) = out.non_tensor_batch["zoom_records"][0]
    assert record["valid"] is False and "response budget" in record["reason"]
    assert record["bbox_original"] is not None  # the box itself was fine: only the crop was never seen
