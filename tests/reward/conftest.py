"""Fixtures for the reward tests: responses rendered by the recipe's chat template with the tiny Qwen tokenizer."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from verl_ext.testing.tiny_qwen import build_tokenizer

ZOOM_REPLY = [{"type": "image"}, {"type": "text", "text": "Zoomed in on the region."}]


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
