"""Fixtures for the reward tests: responses rendered by the recipe's chat template with the tiny Qwen tokenizer."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from verl_ext.testing.tiny_qwen import build_tokenizer

ZOOM_REPLY = [{"type": "image"}, {"type": "text", "text": "Zoomed in on the region."}]
TOOL_REPLY = [{"type": "image"}, {"type": "text", "text": "Zoomed."}]


@pytest.fixture(scope="session")
def tokenizer():
    return build_tokenizer()


@pytest.fixture(scope="session")
def render(tokenizer) -> Callable[..., str]:
    """``render(turn1, turn2, ...)``: the response text a rollout of those assistant turns produces.

    A tool turn holding a crop follows every assistant turn but the last, as the chat template renders it;
    the text ends with the last turn's <|im_end|>, where generation stops. ``skip_special_tokens`` decodes
    the tokenized text the way veRL's reward manager does.
    """

    def _render(*turns: str, skip_special_tokens: bool = True) -> str:
        prompt = [{"role": "system", "content": "sys"}, {"role": "user", "content": "question"}]
        messages = list(prompt)
        for i, turn in enumerate(turns):
            messages.append({"role": "assistant", "content": turn})
            if i < len(turns) - 1:
                messages.append({"role": "tool", "content": ZOOM_REPLY})
        head = tokenizer.apply_chat_template(prompt, add_generation_prompt=True, tokenize=False)
        full = tokenizer.apply_chat_template(messages, tokenize=False)
        ids = tokenizer(full[len(head) :].rstrip("\n"), add_special_tokens=False)["input_ids"]
        return tokenizer.decode(ids, skip_special_tokens=skip_special_tokens)

    return _render


@pytest.fixture
def model_dir(tmp_path, tokenizer) -> str:
    """A model folder holding the tiny tokenizer, as veRL's RewardLoopWorker loads it."""
    tokenizer.save_pretrained(tmp_path)
    return str(tmp_path)


@pytest.fixture(scope="session")
def reward_config() -> Callable[..., object]:
    """``reward_config(model_dir, reward_kwargs)``: the config veRL's RewardLoopWorker reads, naive manager."""
    from omegaconf import OmegaConf

    def _config(model_dir: str, reward_kwargs: dict) -> object:
        return OmegaConf.create(
            {
                "actor_rollout_ref": {"model": {"path": model_dir, "tokenizer_path": None}},
                "reward": {
                    "custom_reward_function": {
                        "path": "pkg://verl_ext.reward",
                        "name": "compute_score",
                        "reward_kwargs": reward_kwargs,
                    },
                    "reward_manager": {"source": "register", "name": "naive"},
                    "reward_model": {"enable": False},
                },
            }
        )

    return _config


@pytest.fixture(scope="session")
def rollout_batch(tokenizer) -> Callable[[list[dict]], object]:
    """``rollout_batch(rows)``: one DataProto row per rollout, left-padded prompt and right-padded response,
    as the agent loop builds it. A row: data_source, question, turns, truth, extra_info, extra_fields."""
    import numpy as np
    import torch
    from verl import DataProto

    def _batch(rows: list[dict]) -> DataProto:
        prompts, responses = [], []
        for row in rows:
            head = [{"role": "system", "content": "sys"}, {"role": "user", "content": row["question"]}]
            messages = list(head)
            for i, turn in enumerate(row["turns"]):
                messages.append({"role": "assistant", "content": turn})
                if i < len(row["turns"]) - 1:
                    messages.append({"role": "tool", "content": TOOL_REPLY})
            prompt_text = tokenizer.apply_chat_template(head, add_generation_prompt=True, tokenize=False)
            full_text = tokenizer.apply_chat_template(messages, tokenize=False).rstrip("\n")
            prompts.append(tokenizer(prompt_text, add_special_tokens=False)["input_ids"])
            responses.append(tokenizer(full_text[len(prompt_text) :], add_special_tokens=False)["input_ids"])
        p_len, r_len, pad = max(map(len, prompts)), max(map(len, responses)) + 3, tokenizer.pad_token_id
        prompt_ids = torch.tensor([[pad] * (p_len - len(p)) + p for p in prompts])
        response_ids = torch.tensor([r + [pad] * (r_len - len(r)) for r in responses])
        mask = torch.tensor(
            [
                [0] * (p_len - len(p)) + [1] * (len(p) + len(r)) + [0] * (r_len - len(r))
                for p, r in zip(prompts, responses, strict=True)
            ]
        )
        return DataProto.from_dict(
            tensors={
                "prompts": prompt_ids,
                "responses": response_ids,
                "attention_mask": mask,
                "input_ids": torch.cat([prompt_ids, response_ids], dim=1),
            },
            non_tensors={
                "data_source": np.array([r["data_source"] for r in rows], dtype=object),
                "reward_model": np.array([{"ground_truth": r["truth"], "style": "rule"} for r in rows], dtype=object),
                "extra_info": np.array([dict(r["extra_info"]) for r in rows], dtype=object),
                "tool_extra_fields": np.array([r.get("extra_fields", {}) for r in rows], dtype=object),
                "__num_turns__": np.array([2 * len(r["turns"]) for r in rows], dtype=np.int32),
            },
        )

    return _batch


@pytest.fixture
async def serve():
    """``await serve(server)``: a local judge endpoint posting ``/v1/chat/completions`` to ``server.handle`` (an aiohttp
    handler); its "host:port" on 127.0.0.1, stopped after the test."""
    from aiohttp import web

    runners = []

    async def _serve(server: Any) -> str:
        app = web.Application()
        app.router.add_post("/v1/chat/completions", server.handle)
        runner = web.AppRunner(app)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", 0, shutdown_timeout=0.1).start()
        runners.append(runner)
        return f"127.0.0.1:{runner.addresses[0][1]}"

    yield _serve
    for runner in runners:
        await runner.cleanup()
