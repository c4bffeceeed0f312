"""``ground_r1_tool_agent``: veRL's ToolAgentLoop whose every trajectory carries ``zoom_records``.

The zoom tool writes ``extra_fields[ZOOM_RECORDS_KEY]`` only when the model zooms. veRL turns each
``extra_fields`` key into a batch column per agent-loop worker, and ``DataProto.concat`` of the workers'
outputs asserts that all of them have the same columns: a worker whose trajectories never zoomed would
break the batch. This loop adds an empty record list to such trajectories. Select it with
``actor_rollout_ref.rollout.agent.default_agent_loop=ground_r1_tool_agent`` (or a per-row ``agent_name``).
"""

from __future__ import annotations

from typing import Any

from verl.experimental.agent_loop.agent_loop import AgentLoopOutput, register
from verl.experimental.agent_loop.tool_agent_loop import ToolAgentLoop

from verl_ext.evidence import ZOOM_RECORDS_KEY
from verl_ext.tools import AGENT_NAME


@register(AGENT_NAME)
class ZoomToolAgentLoop(ToolAgentLoop):
    """ToolAgentLoop with ``extra_fields[ZOOM_RECORDS_KEY]`` always present (``[]`` without zooms)."""

    async def run(self, sampling_params: dict[str, Any], **kwargs: Any) -> AgentLoopOutput:
        output = await super().run(sampling_params, **kwargs)
        output.extra_fields.setdefault(ZOOM_RECORDS_KEY, [])
        return output
