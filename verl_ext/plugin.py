"""veRL plugin: ``import verl`` imports this module in every process through the ``verl.plugins`` entry point.

Each module below registers something with one of veRL's registries when imported. veRL swallows plugin
import errors (logged at debug level), so a failure is logged here loudly before it propagates.
"""

import importlib
import logging

REGISTERING_MODULES = (
    "verl_ext.compat",  # refuses a veRL release other than the one the private surfaces were checked on
    "verl_ext.algorithms.srpo",  # advantage estimator "srpo"
    "verl_ext.tools.box_parser",  # tool parser "ground_r1_box" (multi_turn.format)
    "verl_ext.compat.mrope",  # veRL 0.9.1 bug: equal-length VLM batches break mrope position_ids
    "verl_ext.tools.agent_loop",  # agent loop "ground_r1_tool_agent" (rollout.agent.default_agent_loop)
    "verl_ext.tools.branching",  # agent loop "ground_r1_branch_agent" (the paper's two-phase rollout)
)

for _module in REGISTERING_MODULES:
    try:
        importlib.import_module(_module)
    except Exception:
        logging.getLogger(__name__).exception("Ground-R1 plugin: importing %s failed", _module)
        raise
