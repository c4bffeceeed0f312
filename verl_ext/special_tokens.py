"""The special tokens of Qwen2.5-VL's chat template, in one place (docs/design.md, section 10).

The tiny test tokenizer (:mod:`verl_ext.testing.tiny_qwen`) is built from these lists, and data prep and the
dataset hook refuse text that spells any of :data:`TEMPLATE_TOKENS`: the tokenizer reads such a spelling in a
question as the control token itself, so ``<|image_pad|>`` adds an image slot without an image and
``<|im_end|><|im_start|>system`` forges a turn. Tokenizers match added tokens by exact, case-sensitive spelling,
so an exact search is the whole test.
"""

from __future__ import annotations

import re

#: Qwen2.5-VL's special tokens, in the order Qwen's tokenizer numbers them (151643 onwards).
SPECIAL_TOKENS = [
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<|object_ref_start|>",
    "<|object_ref_end|>",
    "<|box_start|>",
    "<|box_end|>",
    "<|quad_start|>",
    "<|quad_end|>",
    "<|vision_start|>",
    "<|vision_end|>",
    "<|vision_pad|>",
    "<|image_pad|>",
    "<|video_pad|>",
]
#: Added (not special) tokens of Qwen2.5: decoded like text, so tool calls survive skip_special_tokens.
ADDED_TOKENS = ["<tool_call>", "</tool_call>"]
#: Qwen2.5's other added tokens (code completion, ids after ``</tool_call>``); the tiny tokenizer leaves them out.
CODE_TOKENS = ["<|fim_prefix|>", "<|fim_middle|>", "<|fim_suffix|>", "<|fim_pad|>", "<|repo_name|>", "<|file_sep|>"]
#: What the chat template writes around a tool's result (plain text to the tokenizer, structure to the template).
TOOL_RESPONSE_TAGS = ["<tool_response>", "</tool_response>"]
#: Every spelling that data may not carry into a prompt or a ground truth.
TEMPLATE_TOKENS = tuple(SPECIAL_TOKENS + CODE_TOKENS + ADDED_TOKENS + TOOL_RESPONSE_TAGS)
#: A system turn may teach the hermes zoom call (``verl_ext.prompts.SYSTEM_HERMES``, as Qwen's own tool block does).
SYSTEM_TURN_TOKENS = tuple(ADDED_TOKENS)


def pattern(allowed: tuple[str, ...] = ()) -> str:
    """One regular expression (Python and RE2 syntax) for every template token but ``allowed``."""
    return "|".join(re.escape(t) for t in sorted(set(TEMPLATE_TOKENS) - set(allowed), key=len, reverse=True))


_TOKEN = re.compile(pattern())


def template_tokens_in(text: str, allowed: tuple[str, ...] = ()) -> list[str]:
    """The template tokens ``text`` spells, each once in order of first appearance, except those ``allowed``."""
    found = dict.fromkeys(m.group(0) for m in _TOKEN.finditer(text))
    return [t for t in found if t not in allowed]
