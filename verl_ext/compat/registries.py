"""Registrations veRL 0.9.1 offers no public call for (see :mod:`verl_ext.compat`)."""

from __future__ import annotations


def register_async_rollout(name: str, adapter_path: str) -> None:
    """Make ``actor_rollout_ref.rollout.name=<name>`` (mode async) load the worker-side ``adapter_path`` class.

    veRL's ``get_rollout_class`` looks the pair up in the private ``_ROLLOUT_REGISTRY`` dict.
    """
    from verl.workers.rollout.base import _ROLLOUT_REGISTRY

    _ROLLOUT_REGISTRY[(name, "async")] = adapter_path


def register_engine_on_device(model_type: str, engine_cls: type, device: str, backends=("fsdp", "fsdp2")) -> None:
    """Register ``engine_cls`` for ``device`` once (veRL's ``EngineRegistry.register`` refuses duplicates)."""
    from verl.workers.engine.base import EngineRegistry

    if device not in EngineRegistry._engines.get(model_type, {}).get(backends[-1], {}):
        EngineRegistry.register(model_type=model_type, backend=list(backends), device=device)(engine_cls)
