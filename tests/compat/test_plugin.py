"""The verl.plugins entry point registers every name in a fresh interpreter, whichever module is imported first."""

from __future__ import annotations

import subprocess
import sys

import pytest

pytestmark = pytest.mark.e2e  # each case is a fresh interpreter importing veRL (seconds)


@pytest.mark.parametrize("first_import", ["verl", "verl_ext.tools.region_zoom"])
def test_plain_import_registers_estimator_parser_and_agent_loops(first_import):
    """Importing the tool first imports verl, whose plugin imports the parser while the tool is half-imported."""
    code = (
        f"import {first_import}\n"
        "from verl.experimental.agent_loop.agent_loop import _agent_loop_registry\n"
        "from verl.experimental.agent_loop.tool_parser import ToolParser\n"
        "from verl.trainer.ppo.core_algos import get_adv_estimator_fn\n"
        "print(get_adv_estimator_fn('srpo').__module__)\n"
        "print(ToolParser._registry['ground_r1_box'].__module__)\n"
        "print(_agent_loop_registry['ground_r1_tool_agent'])\n"
        "print(_agent_loop_registry['ground_r1_branch_agent'])\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0 and "plugin: importing" not in out.stderr, out.stderr
    srpo, parser, zoom, branch = out.stdout.strip().splitlines()[-4:]
    assert srpo == "verl_ext.algorithms.srpo" and parser == "verl_ext.tools.box_parser"
    assert "verl_ext.tools.agent_loop.ZoomToolAgentLoop" in zoom
    assert "verl_ext.tools.branching.BranchZoomAgentLoop" in branch
