"""An async rollout served by HF transformers ``generate``, for veRL runs on CPU-only machines.

veRL 0.9.1 registers async rollouts for vLLM, SGLang and TensorRT-LLM only, none of which runs on a
CPU. :mod:`verl_ext.cpu.plugin` plugs this small one into veRL's two rollout registries under the name
``hf`` (``actor_rollout_ref.rollout.name=hf``):

- driver side, ``RolloutReplicaRegistry``: :class:`HFReplica` launches one :class:`HFGenerateServer`
  Ray actor per replica; veRL's agent loop calls its ``generate`` (token ids and images in,
  ``TokenOutput`` out) through the load balancer exactly as it calls a vLLM server;
- worker side, ``_ROLLOUT_REGISTRY[("hf", "async")]``: :class:`HFServerAdapter` lives in the
  actor/rollout worker and forwards every ``update_weights`` from the FSDP actor to the server, so
  each step samples from the policy the previous step trained.

Sleep/wake-up and KV-cache calls are no-ops: the tiny model stays in host memory. Requests are
served one at a time (the CPU has no batching to gain on a 2-core machine).
"""

from __future__ import annotations

import asyncio
import hashlib
import os
from collections.abc import AsyncIterator, Iterable
from typing import Any

import ray
import torch
from omegaconf import DictConfig
from verl.utils.config import omega_conf_to_dataclass
from verl.workers.config import HFModelConfig, RolloutConfig
from verl.workers.rollout.base import BaseRollout
from verl.workers.rollout.replica import RolloutReplica, TokenOutput
from verl.workers.rollout.utils import ensure_async_iterator

#: HF config attributes naming vision placeholder tokens, never sampled into a response.
_VISION_TOKEN_KEYS = ("image_token_id", "video_token_id", "vision_start_token_id", "vision_end_token_id")


def server_name(replica_rank: int, suffix: str = "") -> str:
    """Ray actor name of a replica's server; the worker-side adapter finds its server by it."""
    return f"hf_generate_server_{replica_rank}{suffix}"


def state_checksum(state: dict[str, torch.Tensor]) -> str:
    """A short digest of a state dict's values (name order), to show which weights a server holds."""
    digest = hashlib.sha256()
    for name in sorted(state):
        digest.update(name.encode())
        digest.update(state[name].detach().to(torch.float32).contiguous().numpy().tobytes())
    return digest.hexdigest()[:16]


class HFGenerateServer:
    """Holds an HF copy of the policy and generates with it; weights arrive from the actor each step."""

    def __init__(self, config: RolloutConfig | DictConfig, model_config: HFModelConfig | DictConfig, replica_rank: int):
        from transformers import AutoModelForCausalLM, AutoModelForImageTextToText

        self.config: RolloutConfig = omega_conf_to_dataclass(config)
        self.model_config: HFModelConfig = omega_conf_to_dataclass(model_config, dataclass_type=HFModelConfig)
        self.replica_rank = replica_rank
        self.processor = self.model_config.processor
        tokenizer = self.model_config.tokenizer
        is_vlm = hasattr(self.model_config.hf_config, "vision_config")
        auto_cls = AutoModelForImageTextToText if is_vlm else AutoModelForCausalLM
        self.model = auto_cls.from_pretrained(
            self.model_config.local_path, dtype=torch.float32, attn_implementation="sdpa"
        ).eval()
        generation_config = self.model_config.generation_config
        eos = getattr(generation_config, "eos_token_id", None) if generation_config is not None else None
        eos = eos if eos is not None else tokenizer.eos_token_id
        self.eos_token_ids: list[int] = list(eos) if isinstance(eos, list | tuple) else [eos]
        self.pad_token_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else self.eos_token_ids[0]
        # A response may not contain vision placeholders: veRL would need pixels for them (mrope positions) and
        # evicts the sample. Trained models never emit them; a random tiny model does, so they are suppressed.
        hf_config = self.model_config.hf_config
        self.suppressed_token_ids = sorted(
            {getattr(hf_config, key) for key in _VISION_TOKEN_KEYS if getattr(hf_config, key, None) is not None}
        )
        self.global_steps: int | None = None
        self.weight_version = 0
        self._lock = asyncio.Lock()
        # The server owns its process (a Ray actor) and serves requests one at a time: seeding the process with
        # rollout.seed (per replica) makes a run's samples repeat when its request order does.
        torch.manual_seed(int(self.config.seed) + max(replica_rank, 0))

    async def generate(
        self,
        prompt_ids: list[int],
        sampling_params: dict[str, Any],
        request_id: str,
        image_data: list[Any] | None = None,
        video_data: list[Any] | None = None,
        audio_data: list[Any] | None = None,
        mm_processor_kwargs: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> TokenOutput:
        """Sample one continuation of ``prompt_ids`` (images already expanded into image-pad tokens)."""
        if video_data or audio_data:
            raise NotImplementedError("the hf rollout serves text and images only")
        async with self._lock:
            token_ids, log_probs = await asyncio.to_thread(
                self._generate, list(prompt_ids), dict(sampling_params), image_data, mm_processor_kwargs or {}
            )
        return TokenOutput(
            token_ids=token_ids,
            log_probs=log_probs,
            stop_reason="completed",
            extra_fields={"global_steps": self.global_steps},
        )

    def _max_new_tokens(self, prompt_len: int, sampling_params: dict[str, Any]) -> int:
        budget = min(self.config.response_length, self.config.prompt_length + self.config.response_length - prompt_len)
        for key in ("max_tokens", "max_new_tokens"):
            if sampling_params.get(key) is not None:
                budget = min(budget, int(sampling_params[key]))
        return max(0, budget)

    @torch.no_grad()
    def _generate(
        self,
        prompt_ids: list[int],
        sampling_params: dict[str, Any],
        image_data: list[Any] | None,
        mm_processor_kwargs: dict[str, Any],
    ) -> tuple[list[int], list[float] | None]:
        max_new_tokens = self._max_new_tokens(len(prompt_ids), sampling_params)
        want_log_probs = bool(sampling_params.get("logprobs"))
        if max_new_tokens == 0:
            return [], [] if want_log_probs else None
        input_ids = torch.tensor([prompt_ids], dtype=torch.long)
        inputs: dict[str, Any] = {"input_ids": input_ids, "attention_mask": torch.ones_like(input_ids)}
        if image_data:
            pixels = self.processor.image_processor(images=image_data, return_tensors="pt", **mm_processor_kwargs)
            inputs["pixel_values"] = pixels["pixel_values"]
            inputs["image_grid_thw"] = pixels["image_grid_thw"]
            # transformers 5.x computes Qwen2.5-VL's 3-D (mrope) positions only when it is told which tokens are
            # image tokens; without this it silently uses 1-D positions, unlike veRL's actor and vLLM.
            inputs["mm_token_type_ids"] = torch.tensor(self.processor.create_mm_token_type_ids([prompt_ids]))
        temperature = float(sampling_params.get("temperature", 1.0))
        do_sample = temperature > 0
        sampling: dict[str, Any] = {"do_sample": do_sample}
        if do_sample:
            top_k = int(sampling_params.get("top_k", -1))
            sampling.update(
                temperature=temperature,
                top_p=float(sampling_params.get("top_p", 1.0)),
                top_k=top_k if top_k > 0 else 0,
            )
        output = self.model.generate(
            **inputs,
            **sampling,
            max_new_tokens=max_new_tokens,
            repetition_penalty=float(sampling_params.get("repetition_penalty", 1.0)),
            eos_token_id=self.eos_token_ids,
            pad_token_id=self.pad_token_id,
            suppress_tokens=self.suppressed_token_ids or None,
            return_dict_in_generate=True,
            output_logits=want_log_probs,
        )
        token_ids = output.sequences[0, len(prompt_ids) :].tolist()
        if not want_log_probs:
            return token_ids, None
        # The model's own log-probabilities (raw logits, before temperature/top-k warping), normalised by transformers.
        logits = tuple(step.float() for step in output.logits)
        scores = self.model.compute_transition_scores(output.sequences, logits, normalize_logits=True)
        return token_ids, scores[0, : len(token_ids)].tolist()

    async def update_weights(self, state: dict[str, torch.Tensor], global_steps: int | None = None) -> str:
        """Load the actor's full weights (HF names); every parameter and buffer must be covered."""
        async with self._lock:
            result = self.model.load_state_dict(state, strict=False)
            unexpected = list(result.unexpected_keys)
            missing = [k for k in result.missing_keys if k in dict(self.model.named_parameters())]
            if unexpected or missing:
                raise ValueError(
                    f"hf rollout: weight names from the actor do not match the model: "
                    f"unexpected {unexpected[:5]}, missing {missing[:5]}"
                )
            self.weight_version += 1
            self.global_steps = global_steps
            checksum = state_checksum(state)
        print(
            f"[hf-rollout] replica {self.replica_rank}: loaded weights v{self.weight_version} "
            f"global_steps={global_steps} tensors={len(state)} checksum={checksum}",
            flush=True,
        )
        return checksum

    async def set_global_steps(self, global_steps: int) -> None:
        self.global_steps = global_steps

    # Lifecycle calls veRL makes on every server; the model stays in host memory, nothing to do.
    async def wake_up(self) -> None: ...
    async def sleep(self) -> None: ...
    async def clear_kv_cache(self) -> None: ...
    async def release_kv_cache(self) -> None: ...
    async def resume_kv_cache(self) -> None: ...
    async def abort_all_requests(self, reject_request: bool = False) -> None: ...
    async def resume_generation(self) -> None: ...
    async def start_profile(self, **kwargs: Any) -> None: ...
    async def stop_profile(self) -> None: ...


class HFReplica(RolloutReplica):
    """One :class:`HFGenerateServer` per replica, named so the worker-side adapter can reach it."""

    async def launch_servers(self) -> None:
        name = server_name(self.replica_rank, self.name_suffix)
        server = (
            ray.remote(HFGenerateServer)
            .options(name=name, max_concurrency=self.max_concurrency)
            .remote(config=self.config, model_config=self.model_config, replica_rank=self.replica_rank)
        )
        self.servers = [server]
        self._server_handle = server
        self._server_address = name


class HFServerAdapter(BaseRollout):
    """Worker-side rollout: sends the actor's weights to this worker's replica server."""

    def __init__(self, config: RolloutConfig, model_config: HFModelConfig, device_mesh: Any, replica_rank: int = -1):
        super().__init__(config, model_config, device_mesh)
        rollout_world_size = (
            self.config.tensor_model_parallel_size
            * self.config.data_parallel_size
            * self.config.pipeline_model_parallel_size
        )
        rank = int(os.environ.get("RANK", "0"))
        self.replica_rank = rank // rollout_world_size if replica_rank == -1 else replica_rank
        self.is_leader = rank % rollout_world_size == 0

    async def resume(self, tags: list[str]) -> None:
        """Weights and cache never leave host memory."""

    async def release(self) -> None:
        """Weights and cache never leave host memory."""

    async def update_weights(
        self,
        weights: Iterable[tuple[str, torch.Tensor]] | AsyncIterator[tuple[str, torch.Tensor]],
        wire_format: str = "named_tensors",
        peft_config: Any = None,
        global_steps: int | None = None,
        **kwargs: Any,
    ) -> None:
        """Collect the full weights (every rank drains the generator: it all-gathers) and ship them once."""
        if wire_format != "named_tensors":
            raise NotImplementedError(f"hf rollout: wire_format {wire_format!r} is not supported")
        if peft_config is not None:
            raise NotImplementedError("hf rollout: LoRA adapters are not supported; merge them (lora.merge=True)")
        state: dict[str, torch.Tensor] = {}
        async for name, tensor in ensure_async_iterator(weights):
            if self.is_leader:
                state[name] = tensor.detach().to("cpu", copy=True)
        if self.is_leader:
            server = ray.get_actor(server_name(self.replica_rank))
            await server.update_weights.remote(state, global_steps)
