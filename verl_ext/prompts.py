"""Prompt templates shared by the data-prep scripts and the dataset hook.

Prompts state the size of the image **as the model sees it** (after ``smart_resize``), because the
model writes boxes in that frame. Data prep cannot know that size (it depends on the min/max pixels
of the run), so templates carry the placeholders below and the dataset hook fills them in when the
image is loaded for training (docs/design.md, section 4).
"""

from __future__ import annotations

RESIZED_WIDTH = "{resized_width}"
RESIZED_HEIGHT = "{resized_height}"

#: The paper's protocol: the zoom call is a bare <box>; tool parser format ``ground_r1_box``.
SYSTEM_BOX = (
    "You answer questions about an image by looking closely at the evidence. "
    f"The image is {RESIZED_WIDTH}x{RESIZED_HEIGHT} pixels; coordinates are absolute pixels in that image. "
    "In every turn, first reason inside <think></think>. Then either zoom in on the region that holds the "
    "evidence by writing <box>[x1, y1, x2, y2]</box>, after which you receive the zoomed region as a new image, "
    "or give the final answer inside <answer></answer>."
)

#: DeepEyes-style hermes tool calls; the tool schema is rendered into the system turn by the chat template.
SYSTEM_HERMES = (
    "You answer questions about an image by looking closely at the evidence. "
    f"The image is {RESIZED_WIDTH}x{RESIZED_HEIGHT} pixels; coordinates are absolute pixels in that image. "
    "In every turn, first reason inside <think></think>. Then either call image_zoom_in_tool inside "
    "<tool_call></tool_call> with the region that holds the evidence, after which you receive the zoomed region "
    "as a new image, or give the final answer inside <answer></answer>."
)

#: Rows without the zoom tool (e.g. DeepEyes rows of another environment): the same turn format, no tool.
SYSTEM_NO_TOOL = (
    "You answer questions about an image. First reason inside <think></think>, then give the final answer "
    "inside <answer></answer>."
)

VQA_USER = "<image>\n{question}"
MULTIPLE_CHOICE_USER = "<image>\n{question}\n{options}\nAnswer with the option's letter."
GROUNDING_USER = (
    '<image>\nLocate the object described by "{expression}" in the image, which is '
    f"{RESIZED_WIDTH}x{RESIZED_HEIGHT} pixels. Reason inside <think></think>, then output its bounding box as "
    '<answer>{"bbox_2d": [x1, y1, x2, y2]}</answer> in absolute pixels of that image.'
)


def format_options(options: list[str]) -> str:
    """``["red", "blue"]`` -> ``"A. red\\nB. blue"``."""
    return "\n".join(f"{chr(ord('A') + i)}. {text}" for i, text in enumerate(options))


def fill(template: str, **fields: object) -> str:
    """Replace ``{name}`` for each given field and nothing else (questions and JSON examples hold braces).

    Data prep fills ``question``/``options``/``expression``; the dataset hook fills the frame later.
    """
    for name, value in fields.items():
        template = template.replace("{" + name + "}", str(value))
    return template


def fill_frame(text: str, resized_width: int, resized_height: int) -> str:
    """Fill the resized-size placeholders once the run's min/max pixels are known."""
    return fill(text, resized_width=resized_width, resized_height=resized_height)
