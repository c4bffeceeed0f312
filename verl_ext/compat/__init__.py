"""Every place Ground-R1 leans on veRL internals, checked against one veRL release.

Upgrading veRL means reading this list, checking each surface in the new release, and raising
:data:`VERIFIED_VERL_VERSION`. Importing this package on any other veRL version fails at once with that
instruction (set ``GROUND_R1_ALLOW_VERL_VERSION=<version>`` to try an unchecked release anyway), and it checks
that each private attribute below still exists, so a renamed internal fails at start, not inside a step.

Private surfaces written to or patched (code in this package):

- ``verl.utils.tensordict_utils.maybe_fix_3d_position_ids``: wrapped and rebound in the modules that import it
  by name (:mod:`verl_ext.compat.mrope`; a veRL 0.9.1 bug with equal-length VLM batches).
- ``verl.workers.rollout.base._ROLLOUT_REGISTRY``: the CPU ``hf`` rollout's worker-side adapter is entered here
  (:func:`verl_ext.compat.registries.register_async_rollout`; veRL has no public call for it).
- ``verl.workers.engine.base.EngineRegistry._engines``: read to keep the CPU engine registration idempotent
  (:func:`verl_ext.compat.registries.register_engine_on_device`).
- ``torch.distributed.init_process_group``: wrapped on the CPU platform only, because veRL builds the backend
  string ``"cpu:gloo,{device}:{backend}"``, which names ``cpu`` twice there (:mod:`verl_ext.compat.gloo`).

Private surfaces relied on where they are used (checked here):

- ``ToolAgentLoop._handle_pending_state``, ``._handle_generating_state``, ``._handle_processing_tools_state`` and
  ``._call_tool``: overridden by the zoom agent loop (:mod:`verl_ext.tools.agent_loop`) to cap each turn, mark crops
  that never reached the model, end a turn that spells image placeholders, and refuse unknown tool names without
  echoing them; and by the branching loop (:mod:`verl_ext.tools.branching`) to adopt a leader's first turn.
- ``AgentData``: its constructor and fields (``prompt_ids``, ``response_ids``, ``response_mask``,
  ``response_logprobs``, ``messages``, ``image_data``, ``extra_fields``, turn counters, ``request_id``, the private
  ``_active_tools``) are copied by the branching loop; the zoom tool keeps its share of the decoded original on the
  trajectory's ``AgentData`` as a private attribute (veRL 0.9.1 creates a tool instance per call, so per-trajectory
  state has nowhere else to live).
- The agent loop's ``server_manager`` (wrapped for followers to read ``num_cached_tokens``), and veRL's behaviour
  that ``AgentLoopWorker`` starts a prompt's ``rollout.n`` sessions as tasks of one process, in session order, with
  ``session_id`` (the branching loop relies on it), and that ``_compute_multi_modal_inputs`` rebuilds image inputs
  from the decoded text (why a turn that spells ``<|image_pad|>`` is ended).
- ``PPOTrainerSync._compute_advantage``: wrapped by the recipe's trainer (:mod:`verl_ext.trainer.ground_r1_trainer`)
  to route evidence scales; it reads ``extra_fields["reward_extra_info"]`` from TransferQueue, and the v1 key
  layout ``{uid}_{session_id}_{index}`` (parsed once, in :func:`verl_ext.algorithms.routing.parse_key`).
- ``RLHFDataset._read_files_and_tokenize`` and ``._build_messages``: overridden by the dataset hook
  (:mod:`verl_ext.data.dataset`) to search the files for chat-template tokens before veRL reads them, and to decode
  images and fill the frame into the prompt.
- ``PPOTrainerSync._validate`` (its ``val_dataloader`` is swapped for one that reads each batch's row fields after
  veRL writes the ``uid`` column into it) and ``._val_metrics_update`` (extended with the evaluation harness's
  metrics).
"""

from __future__ import annotations

import importlib
import os

import verl

#: The veRL release every surface above was checked against.
VERIFIED_VERL_VERSION = "0.9.1"
ALLOW_ENV = "GROUND_R1_ALLOW_VERL_VERSION"

#: (module, attribute path) of each private surface; all must exist on the checked release.
PRIVATE_SURFACES = (
    ("verl.utils.tensordict_utils", "maybe_fix_3d_position_ids"),
    ("verl.workers.rollout.base", "_ROLLOUT_REGISTRY"),
    ("verl.workers.engine.base", "EngineRegistry._engines"),
    ("verl.experimental.agent_loop.tool_agent_loop", "ToolAgentLoop._handle_pending_state"),
    ("verl.experimental.agent_loop.tool_agent_loop", "ToolAgentLoop._handle_generating_state"),
    ("verl.experimental.agent_loop.tool_agent_loop", "ToolAgentLoop._handle_processing_tools_state"),
    ("verl.experimental.agent_loop.tool_agent_loop", "ToolAgentLoop._call_tool"),
    ("verl.experimental.agent_loop.agent_loop", "AgentLoopWorker._compute_multi_modal_inputs"),
    ("verl.experimental.agent_loop.tool_agent_loop", "AgentData"),
    ("verl.utils.dataset.rl_dataset", "RLHFDataset._read_files_and_tokenize"),
    ("verl.utils.dataset.rl_dataset", "RLHFDataset._build_messages"),
    ("verl.trainer.ppo.v1", "PPOTrainerSync._compute_advantage"),
    ("verl.trainer.ppo.v1", "PPOTrainerSync._validate"),
    ("verl.trainer.ppo.v1", "PPOTrainerSync._val_metrics_update"),
)


class VerlVersionError(ImportError):
    """The installed veRL is not the release Ground-R1's private surfaces were checked against."""


def check_version(found: str = verl.__version__) -> None:
    """Refuse a veRL release other than :data:`VERIFIED_VERL_VERSION` unless explicitly allowed."""
    if found == VERIFIED_VERL_VERSION or os.environ.get(ALLOW_ENV) == found:
        return
    raise VerlVersionError(
        f"Ground-R1 was checked against veRL {VERIFIED_VERL_VERSION}, but veRL {found} is installed. "
        f'Install it with pip install "verl[verl-core]=={VERIFIED_VERL_VERSION}", or check every surface listed in '
        f"verl_ext/compat/__init__.py against veRL {found} and set {ALLOW_ENV}={found} to run anyway."
    )


def missing_surfaces() -> list[str]:
    """The private surfaces that the installed veRL lacks (empty on the checked release)."""
    missing = []
    for module_name, path in PRIVATE_SURFACES:
        try:
            obj = importlib.import_module(module_name)
            for part in path.split("."):
                obj = getattr(obj, part)
        except (ImportError, AttributeError):
            missing.append(f"{module_name}.{path}")
    return missing


def check_surfaces() -> None:
    """Fail at start, naming them, when private surfaces this project uses are gone."""
    missing = missing_surfaces()
    if missing:
        raise VerlVersionError(
            f"veRL {verl.__version__} lacks internals Ground-R1 relies on: {missing}. "
            "See verl_ext/compat/__init__.py for what each one is used for."
        )


check_version()
