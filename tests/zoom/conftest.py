"""Fixtures for the region-zoom tests: a tiny offline Qwen2.5-VL folder, veRL's AgentLoopWorker with a scripted
generation client, and images with known pixels."""

from __future__ import annotations

import asyncio
import json
import os
from collections import defaultdict
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
import verl
from omegaconf import OmegaConf
from PIL import Image
from verl.protocol import DataProto
from verl.workers.rollout.replica import TokenOutput

from verl_ext.config import TOOL_CONFIG
from verl_ext.geometry import Frame
from verl_ext.prompts import SYSTEM_BOX, SYSTEM_HERMES, fill_frame
from verl_ext.testing.tiny_qwen import TINY_MAX_PIXELS, TINY_MIN_PIXELS, build_tiny_qwen25vl
from verl_ext.tools.agent_loop import AGENT_NAME

RECIPE_TOOL_YAML = TOOL_CONFIG
HERMES, BOX = "hermes", "ground_r1_box"
#: The test scene: 1000x700 noise, which the tiny processor (bounds below) sees as 252x168.
SCENE_SIZE = (1000, 700)
TINY_BOUNDS = {"min_pixels": TINY_MIN_PIXELS, "max_pixels": TINY_MAX_PIXELS}
#: The rollout budget is small but holds the prompt, two zooms' crops and their tool turns.
PROMPT_LENGTH = 1024
RESPONSE_LENGTH = 2048


def noise_image(width: int, height: int, seed: int = 0) -> Image.Image:
    """Random RGB pixels: any misplaced crop shows up as a pixel mismatch."""
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8), "RGB")


class ScriptedServer:
    """Stands in for veRL's LLM server client: each trajectory replays ``script`` turn by turn.

    A turn is text (encoded with the tokenizer, so special-token spellings become special ids) or a list of token
    ids (how a model spells a special token out of ordinary pieces); ``<|im_end|>`` ends every turn.

    Same ``generate(request_id, *, prompt_ids, sampling_params, image_data, ...) -> TokenOutput`` contract as
    the fakes in veRL's ``tests/experimental/agent_loop/*_on_cpu.py``. Records what every call received.
    """

    def __init__(self) -> None:
        self.script: list[str] = []
        self.tokenizer: Any = None
        self.calls: list[dict[str, Any]] = []
        self._turns: dict[str, int] = defaultdict(int)

    def reset(self, script: list[str]) -> None:
        self.script, self.calls = list(script), []
        self._turns.clear()

    async def generate(
        self, request_id: str, *, prompt_ids: list[int], sampling_params: dict[str, Any], image_data=None, **kwargs
    ) -> TokenOutput:
        turn = self._turns[request_id]
        self._turns[request_id] += 1
        self.calls.append(
            {
                "request_id": request_id,
                "prompt_ids": list(prompt_ids),
                "images": list(image_data or []),
                "sampling_params": dict(sampling_params),
            }
        )
        item = self.script[turn]
        ids = list(item) if isinstance(item, list) else self.tokenizer.encode(item, add_special_tokens=False)
        ids.append(self.tokenizer.convert_tokens_to_ids("<|im_end|>"))
        return TokenOutput(token_ids=ids, log_probs=[0.0] * len(ids))


def write_tool_yaml(path: Path, image_root: Path, **overrides: Any) -> Path:
    """The recipe's tool YAML with ``image_root`` (and any other tool config keys) set for the test."""
    config = OmegaConf.load(RECIPE_TOOL_YAML)
    config.tools[0].config.image_root = str(image_root)
    for key, value in overrides.items():
        config.tools[0].config[key] = value
    OmegaConf.save(config, path)
    return path


class ZoomLoop:
    """veRL's own AgentLoopWorker running ToolAgentLoop with our tool YAML, one call syntax and a scripted server."""

    MAX_ZOOMS = 2

    def __init__(
        self, model_dir: Path, image_root: Path, workdir: Path, fmt: str, extra_overrides: tuple[str, ...] = ()
    ) -> None:
        from hydra import compose, initialize_config_dir
        from verl.experimental.agent_loop.agent_loop import AgentLoopWorker

        self.fmt = fmt
        self.image_root = image_root
        tool_config = write_tool_yaml(workdir / f"zoom_{fmt}.yaml", image_root, max_zooms=self.MAX_ZOOMS)
        overrides = [
            f"actor_rollout_ref.model.path={model_dir}",
            "actor_rollout_ref.rollout.name=vllm",
            f"actor_rollout_ref.rollout.prompt_length={PROMPT_LENGTH}",
            f"actor_rollout_ref.rollout.response_length={RESPONSE_LENGTH}",
            "actor_rollout_ref.rollout.multi_turn.enable=true",
            f"actor_rollout_ref.rollout.multi_turn.tool_config_path={tool_config}",
            f"actor_rollout_ref.rollout.multi_turn.format={fmt}",
            "actor_rollout_ref.rollout.multi_turn.max_parallel_calls=4",
            "actor_rollout_ref.rollout.multi_turn.max_tool_response_length=512",
            "actor_rollout_ref.rollout.agent.default_agent_loop=ground_r1_tool_agent",
        ]
        if fmt == BOX:
            overrides.append("+data.apply_chat_template_kwargs.box_protocol=true")
        overrides.extend(extra_overrides)
        config_dir = os.path.join(os.path.dirname(verl.__file__), "trainer", "config")
        with initialize_config_dir(config_dir=config_dir, version_base=None):
            config = compose(config_name="ppo_trainer", overrides=overrides)
        self.server = ScriptedServer()
        self.worker = AgentLoopWorker(config, llm_client=self.server)
        self.tokenizer = self.worker.tokenizer
        self.processor = self.worker.processor
        self.server.tokenizer = self.tokenizer

    def zoom_call(self, bbox: Any) -> str:
        """One zoom call in this loop's syntax; ``bbox`` is JSON-encoded, or spliced in verbatim if a str."""
        raw = bbox if isinstance(bbox, str) else json.dumps(bbox)
        if self.fmt == BOX:
            return f"<box>{raw}</box>"
        return f'<tool_call>\n{{"name": "image_zoom_in_tool", "arguments": {{"bbox_2d": {raw}}}}}\n</tool_call>'

    def messages(self, question: str = "What is written on the sign?") -> list[dict[str, Any]]:
        """System prompt for this syntax stating the resized frame, and a user turn with the scene image."""
        system = SYSTEM_BOX if self.fmt == BOX else SYSTEM_HERMES
        frame = Frame.of(*SCENE_SIZE, TINY_MIN_PIXELS, TINY_MAX_PIXELS)
        image = Image.open(self.image_root / "scene.png").convert("RGB")
        return [
            {"role": "system", "content": fill_frame(system, frame.resized_width, frame.resized_height)},
            {
                "role": "user",
                "content": [{"type": "image", "image": image, **TINY_BOUNDS}, {"type": "text", "text": question}],
            },
        ]

    def run(
        self, script: list[str], create_kwargs: dict[str, Any] | None = None, n: int = 1, tools_kwargs: Any = None
    ) -> DataProto:
        """Roll out ``n`` trajectories of one row whose model replays ``script`` (``tools_kwargs`` replaces the
        row's whole tool kwargs, e.g. with broken data)."""
        if create_kwargs is None:
            create_kwargs = {"image_path": "scene.png", **TINY_BOUNDS}
        if tools_kwargs is None:
            tools_kwargs = {"image_zoom_in_tool": {"create_kwargs": create_kwargs}}
        self.server.reset(script)
        messages = self.messages()
        raw_prompt = np.empty(n, dtype=object)
        raw_prompt[:] = [messages] * n
        tools_column = np.empty(n, dtype=object)
        tools_column[:] = [tools_kwargs] * n
        batch = DataProto(
            non_tensor_batch={
                "raw_prompt": raw_prompt,
                "agent_name": np.array([AGENT_NAME] * n, dtype=object),
                "data_source": np.array(["vstar"] * n, dtype=object),
                "tools_kwargs": tools_column,
            }
        )
        return asyncio.run(self.worker.generate_sequences(batch))

    def text(self, out: DataProto, i: int = 0) -> str:
        """The whole conversation of trajectory ``i`` (prompt and response, special tokens kept)."""
        ids = out.batch["input_ids"][i][out.batch["attention_mask"][i].bool()]
        return self.tokenizer.decode(ids.tolist())


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Tokenizer, processor (tiny pixel bounds, the recipe's chat template) and config; no weights needed."""
    return build_tiny_qwen25vl(tmp_path_factory.mktemp("tiny-qwen"), with_model=False)


@pytest.fixture(scope="session")
def image_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An image root holding ``scene.png``: noise that the tiny processor scales down."""
    root = tmp_path_factory.mktemp("images")
    noise_image(*SCENE_SIZE, seed=1).save(root / "scene.png")
    return root


@pytest.fixture(scope="session", params=[HERMES, BOX])
def zoom_loop(request, tiny_model_dir: Path, image_root: Path, tmp_path_factory: pytest.TempPathFactory) -> ZoomLoop:
    """The agent loop, once per call syntax."""
    return ZoomLoop(tiny_model_dir, image_root, tmp_path_factory.mktemp("loop"), request.param)


@pytest.fixture
def make_noise():
    return noise_image


@pytest.fixture
def agent_data() -> SimpleNamespace:
    """The part of veRL's AgentData the tool touches."""
    return SimpleNamespace(extra_fields={})


@pytest.fixture
def tool_yaml():
    """Writes the recipe's tool YAML with test overrides: ``tool_yaml(path, image_root, max_zooms=...)``."""
    return write_tool_yaml


@pytest.fixture
def make_zoom_loop(tiny_model_dir: Path, image_root: Path, tmp_path: Path):
    """A ZoomLoop for one syntax with extra hydra overrides (e.g. the recipe's agent-loop config)."""
    return lambda fmt, *overrides: ZoomLoop(tiny_model_dir, image_root, tmp_path, fmt, overrides)
