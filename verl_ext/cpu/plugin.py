"""Registers the CPU support with veRL; imported by ``import verl`` when ``VERL_USE_EXTERNAL_MODULES`` names it.

The rollout is registered by name and loaded lazily: Ray workers import :mod:`verl_ext.cpu.hf_rollout` to
build its classes, which imports ``verl``, which imports this plugin again.
"""

from verl.workers.rollout.replica import RolloutReplica, RolloutReplicaRegistry

from verl_ext.compat import gloo
from verl_ext.compat.registries import register_async_rollout
from verl_ext.cpu import platform

#: ``actor_rollout_ref.rollout.name`` of the HF-generate rollout.
ROLLOUT_NAME = "hf"


def _load_replica() -> type[RolloutReplica]:
    from verl_ext.cpu.hf_rollout import HFReplica

    return HFReplica


gloo.install()
platform.register_engines()
RolloutReplicaRegistry.register(ROLLOUT_NAME, _load_replica)
register_async_rollout(ROLLOUT_NAME, "verl_ext.cpu.hf_rollout.HFServerAdapter")
