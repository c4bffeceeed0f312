"""``ground_r1_tool_agent``: veRL's ToolAgentLoop whose every trajectory carries ``zoom_records``.

The zoom tool writes ``extra_fields[ZOOM_RECORDS_KEY]`` only when the model zooms. veRL turns each
``extra_fields`` key into a batch column per agent-loop worker, and ``DataProto.concat`` of the workers'
outputs asserts that all of them have the same columns: a worker whose trajectories never zoomed would
break the batch. This loop adds an empty record list to such trajectories. Select it with
``actor_rollout_ref.rollout.agent.default_agent_loop=ground_r1_tool_agent`` (or a per-row ``agent_name``).

A zoom whose tool turn does not fit in the response budget is dropped by veRL (the rollout ends without
showing the crop); its record is then marked invalid, so the evidence scale only ever counts regions the
model actually saw. It also caps each assistant turn at ``max_tokens_per_turn`` tokens (the paper's 512),
which veRL 0.9.1 has no setting for; set it through veRL's agent-loop config file (the recipe's
``verl_ext/config/agent_loop.yaml``).

The loop hands the zoom tool's decoded original back when the rollout ends (the tool shares one decoded copy
per image between a worker's trajectories), and answers a call to an unknown tool without quoting the name the
model wrote (veRL's own message echoes it into the tool turn, where it would be tokenized with special tokens).

A turn in which the model writes an image or video placeholder (``<|image_pad|>`` as the special token, or spelled
out of ordinary pieces) is defused: veRL 0.9.1 rebuilds the multimodal inputs by decoding the whole conversation
to text and running the processor on it, so such a turn adds placeholders without images and the batch raises.
Its tokens are replaced by a neutral filler, masked out of training, and the rollout ends there (no answer, so the
reward scores it as failed); the rest of the batch goes on.

veRL runs the processor in the event loop's executor (``self.loop.run_in_executor``). When it raises
``StopIteration`` (the Qwen processor's ``next()`` over the images, on a prompt with more ``<|image_pad|>`` than
images), asyncio cannot set that exception on a future: the await never ends and the rollout hangs. The loop's
executor calls turn a ``StopIteration`` into a ``RuntimeError``, an ordinary failure of that rollout.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Callable, Mapping
from typing import Any

from verl.experimental.agent_loop.agent_loop import AgentLoopOutput, register
from verl.experimental.agent_loop.tool_agent_loop import AgentData, AgentState, ToolAgentLoop
from verl.experimental.agent_loop.tool_parser import FunctionCall
from verl.tools.schemas import ToolResponse

from verl_ext.evidence import ZOOM_RECORDS_KEY
from verl_ext.tools import AGENT_NAME, TOOL_NAME

logger = logging.getLogger(__name__)

UNSEEN_REASON = "crop not shown: the response budget ran out before the tool turn"


def call_raising_normally(func: Callable[..., Any], *args: Any) -> Any:
    """``func(*args)`` for an executor thread: a ``StopIteration`` comes back as a ``RuntimeError`` (asyncio cannot
    set a ``StopIteration`` on a future, so the awaiting coroutine would wait forever)."""
    try:
        return func(*args)
    except StopIteration as e:
        name = getattr(func, "__qualname__", type(func).__name__)
        raise RuntimeError(f"StopIteration raised in {name} (run in a worker thread)") from e


class _ExecutorCalls:
    """The agent loop's event loop (veRL's ``self.loop``) with :func:`call_raising_normally` around executor calls."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop

    def run_in_executor(self, executor: Any, func: Callable[..., Any], *args: Any) -> asyncio.Future:
        return self._loop.run_in_executor(executor, functools.partial(call_raising_normally, func), *args)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._loop, name)


@register(AGENT_NAME)
class ZoomToolAgentLoop(ToolAgentLoop):
    """ToolAgentLoop with ``extra_fields[ZOOM_RECORDS_KEY]`` always present (``[]`` without zooms)."""

    def __init__(self, *args: Any, max_tokens_per_turn: int | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if max_tokens_per_turn is not None and int(max_tokens_per_turn) < 1:
            raise ValueError(f"max_tokens_per_turn must be >= 1 (or null for no cap), got {max_tokens_per_turn}")
        self.max_tokens_per_turn = None if max_tokens_per_turn is None else int(max_tokens_per_turn)
        self.agent_data: AgentData | None = None  # this rollout's state (one loop instance per trajectory)
        self.loop = _ExecutorCalls(self.loop)  # veRL runs the processor through self.loop.run_in_executor

    async def run(self, sampling_params: dict[str, Any], **kwargs: Any) -> AgentLoopOutput:
        try:
            output = await super().run(sampling_params, **kwargs)
        finally:
            zoom_tool = self.tools.get(TOOL_NAME)
            if self.agent_data is not None and hasattr(zoom_tool, "release_trajectory"):
                zoom_tool.release_trajectory(self.agent_data)
        output.extra_fields.setdefault(ZOOM_RECORDS_KEY, [])
        return output

    async def _handle_pending_state(self, agent_data: AgentData, *args: Any, **kwargs: Any) -> AgentState:
        """Build the prompt; keep a handle on the rollout's state so ``run`` can release what the tool holds."""
        self.agent_data = agent_data
        return await super()._handle_pending_state(agent_data, *args, **kwargs)

    async def _call_tool(
        self, tool_call: FunctionCall, tools_kwargs: dict[str, Any], agent_data: AgentData
    ) -> tuple[ToolResponse, float, dict]:
        """veRL's tool call, except that an unknown tool name is refused without echoing it, and a row's tool
        kwargs that are no mappings count as absent (veRL would fail the call before the tool could record it)."""
        active_tools = getattr(agent_data, "_active_tools", self.tools)
        if tool_call.name not in active_tools:
            names = ", ".join(sorted(active_tools))
            return ToolResponse(text=f"Unknown tool. Available tools: {names}."), 0.0, {}
        if not isinstance(tools_kwargs, Mapping):
            tools_kwargs = {}
        tools_kwargs = {name: kw for name, kw in tools_kwargs.items() if isinstance(kw, Mapping)}
        return await super()._call_tool(tool_call, tools_kwargs, agent_data)

    async def _handle_processing_tools_state(self, agent_data: AgentData, *args: Any, **kwargs: Any) -> AgentState:
        """Run the turn's tool calls; if veRL drops their turn for lack of budget, the crops were never shown."""
        records = agent_data.extra_fields.get(ZOOM_RECORDS_KEY) or []
        before = len(records)
        state = await super()._handle_processing_tools_state(agent_data, *args, **kwargs)
        if state == AgentState.TERMINATED:  # veRL's only early exit here: the tool turn overran the budget
            for record in (agent_data.extra_fields.get(ZOOM_RECORDS_KEY) or [])[before:]:
                if record.get("valid"):
                    record.update(valid=False, reason=UNSEEN_REASON)
        return state

    async def _handle_generating_state(
        self, agent_data: AgentData, sampling_params: dict[str, Any], *args: Any, **kwargs: Any
    ) -> AgentState:
        """One assistant turn, at most ``max_tokens_per_turn`` tokens and never past the response budget."""
        if self.max_tokens_per_turn is not None:
            remaining = self.response_length - len(agent_data.response_mask)
            sampling_params = {**sampling_params, "max_tokens": max(1, min(self.max_tokens_per_turn, remaining))}
        state = await super()._handle_generating_state(agent_data, sampling_params, *args, **kwargs)
        if self._writes_placeholder(agent_data.response_ids):
            self._defuse_turn(agent_data)
            return AgentState.TERMINATED
        return state

    def _writes_placeholder(self, token_ids: list[int]) -> bool:
        """Whether a generated turn holds an image/video placeholder, as its special id or spelled in pieces."""
        processor = self.processor
        if processor is None or not token_ids:
            return False
        marks = [m for m in (getattr(processor, "image_token", None), getattr(processor, "video_token", None)) if m]
        ids = {self.tokenizer.convert_tokens_to_ids(m) for m in marks}
        if ids & set(token_ids):
            return True
        text = self.tokenizer.decode(token_ids, skip_special_tokens=True)
        return any(m in text for m in marks)

    def _defuse_turn(self, agent_data: AgentData) -> None:
        """Replace the turn just generated (the last ``len(response_ids)`` tokens) by masked-out filler."""
        n = len(agent_data.response_ids)
        filler = self.tokenizer.encode(" ", add_special_tokens=False)[0]
        agent_data.prompt_ids[-n:] = [filler] * n
        agent_data.response_mask[-n:] = [0] * n
        logger.warning("a generated turn wrote an image/video placeholder: %d tokens masked, rollout ended", n)
