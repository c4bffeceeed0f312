"""The CPU support pieces in one process, without Ray (fast): the hf rollout server and adapter, the platform.

The end-to-end test drives the same code inside veRL's trainer; these pin down its contract directly.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
import torch
from PIL import Image
from verl.workers.config import HFModelConfig, RolloutConfig
from verl.workers.rollout.replica import TokenOutput

from verl_ext.compat.gloo import plain_gloo
from verl_ext.cpu.hf_rollout import HFGenerateServer, HFServerAdapter, server_name, state_checksum
from verl_ext.cpu.platform import PlatformCPU
from verl_ext.testing import tiny_policy, tiny_vqa
from verl_ext.testing.tiny_qwen import build_tiny_qwen25vl

RESPONSE_LENGTH = 8


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_qwen25vl(tmp_path_factory.mktemp("tiny_qwen"))


@pytest.fixture(scope="module")
def server(model_dir: Path) -> HFGenerateServer:
    config = RolloutConfig(name="hf", prompt_length=256, response_length=RESPONSE_LENGTH, tensor_model_parallel_size=1)
    return HFGenerateServer(config, HFModelConfig(path=str(model_dir)), replica_rank=0)


def _image_prompt(server: HFGenerateServer) -> tuple[list[int], list[Image.Image]]:
    """Token ids with the image expanded into pad tokens, as veRL's agent loop builds them."""
    image = Image.new("RGB", (112, 84), (200, 30, 30))
    messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "What colour?"}]}]
    text = server.processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    ids = server.processor(text=[text], images=[image], return_tensors="pt")["input_ids"][0].tolist()
    return ids, [image]


def _generate(server: HFGenerateServer, ids: list[int], images: list, **params) -> TokenOutput:
    sampling = {"temperature": 0, "top_p": 1.0, "top_k": -1, "repetition_penalty": 1.0, "logprobs": True, **params}
    return asyncio.run(server.generate(prompt_ids=ids, sampling_params=sampling, request_id="r", image_data=images))


def test_generate_with_an_image_returns_response_tokens_and_their_log_probs(server: HFGenerateServer) -> None:
    ids, images = _image_prompt(server)
    image_pad = server.model_config.hf_config.image_token_id
    assert image_pad in ids
    out = _generate(server, ids, images)
    assert isinstance(out, TokenOutput) and out.stop_reason == "completed"
    assert 0 < len(out.token_ids) <= RESPONSE_LENGTH
    assert not set(out.token_ids) & set(server.suppressed_token_ids), "vision placeholders must not be sampled"
    # The log probs are the model's own for the returned tokens (greedy: the argmax of each step).
    inputs = server.processor.image_processor(images=images, return_tensors="pt")
    full = torch.tensor([ids + out.token_ids])
    with torch.no_grad():
        logits = server.model(
            input_ids=full,
            pixel_values=inputs["pixel_values"],
            image_grid_thw=inputs["image_grid_thw"],
            mm_token_type_ids=torch.tensor(server.processor.create_mm_token_type_ids(full.tolist())),
        ).logits[0, len(ids) - 1 : -1]
    expected = torch.log_softmax(logits.float(), -1).gather(-1, torch.tensor(out.token_ids)[:, None]).squeeze(-1)
    assert torch.allclose(torch.tensor(out.log_probs), expected, atol=1e-4)


def test_rollout_log_probs_equal_the_actors_on_veRLs_3d_positions(model_dir: Path, tmp_path: Path) -> None:
    """Through veRL's agent loop: the hf rollout's log-probs equal the model's on the (text, t, h, w) positions the
    agent loop computed, the ones veRL's actor feeds the model. Without ``mm_token_type_ids`` transformers 5.x
    generates with 1-D positions for the image tokens and the two differ."""
    from verl.experimental.agent_loop.agent_loop import AgentLoopWorker
    from verl.utils import hf_processor, hf_tokenizer

    data = tiny_vqa.write(tmp_path, 1, seed=3)
    config = tiny_policy.recipe_config(
        model_dir, data, ["actor_rollout_ref.rollout.calculate_log_probs=True", "data.max_response_length=24"]
    )
    rollout = config.actor_rollout_ref
    server = HFGenerateServer(rollout.rollout, rollout.model, replica_rank=0)
    rows = tiny_policy.load_rows(config, hf_tokenizer(str(model_dir)), hf_processor(str(model_dir)))
    out = asyncio.run(AgentLoopWorker(config, llm_client=server).generate_sequences(tiny_policy._row_batch(rows[0], 2)))
    batch, prompt_len = out.batch, out.batch["prompts"].shape[1]
    assert batch["position_ids"].shape[1] == 4, "veRL's positions for Qwen2.5-VL are (text, t, h, w)"
    for i in range(len(out)):
        mm = out.non_tensor_batch["multi_modal_inputs"][i]
        with torch.no_grad():
            logits = server.model(
                input_ids=batch["input_ids"][i : i + 1],
                attention_mask=batch["attention_mask"][i : i + 1],
                position_ids=batch["position_ids"][i : i + 1].transpose(0, 1),
                pixel_values=mm["pixel_values"],
                image_grid_thw=mm["image_grid_thw"],
            ).logits[0, prompt_len - 1 : -1]
        responses, mask = batch["responses"][i], batch["response_mask"][i].bool()
        actor = torch.log_softmax(logits.float(), -1).gather(-1, responses[:, None]).squeeze(-1)
        assert mask.sum() > 0
        assert torch.allclose(actor[mask], batch["rollout_log_probs"][i][mask], atol=1e-4)


def test_update_weights_changes_what_is_sampled_and_rejects_foreign_names(server: HFGenerateServer) -> None:
    ids, images = _image_prompt(server)
    before = _generate(server, ids, images)
    state = {name: torch.randn_like(p) for name, p in server.model.state_dict().items()}
    checksum = asyncio.run(server.update_weights(state, global_steps=7))
    assert checksum == state_checksum(server.model.state_dict()) == state_checksum(state)
    after = _generate(server, ids, images)
    assert after.extra_fields["global_steps"] == 7
    assert after.log_probs != before.log_probs
    with pytest.raises(ValueError, match="do not match"):
        asyncio.run(server.update_weights({"not.a.weight": torch.zeros(1)}))


def test_response_budget_is_the_rollout_limit_and_the_requested_max(server: HFGenerateServer) -> None:
    ids, images = _image_prompt(server)
    assert len(_generate(server, ids, images, max_tokens=3).token_ids) <= 3
    assert server._max_new_tokens(256 + RESPONSE_LENGTH, {}) == 0


def test_adapter_sends_the_full_state_to_its_replica_server(
    monkeypatch: pytest.MonkeyPatch, server: HFGenerateServer
) -> None:
    received: dict = {}

    class FakeMethod:
        async def _call(self, state, global_steps):
            received.update(state=state, global_steps=global_steps)

        def remote(self, state, global_steps):
            return self._call(state, global_steps)

    class FakeServer:
        update_weights = FakeMethod()

    looked_up: list[str] = []
    monkeypatch.setattr("ray.get_actor", lambda name: looked_up.append(name) or FakeServer())
    monkeypatch.setenv("RANK", "1")
    config = RolloutConfig(name="hf", tensor_model_parallel_size=1)
    adapter = HFServerAdapter(config, server.model_config, device_mesh=None)
    assert (adapter.replica_rank, adapter.is_leader) == (1, True)  # rank 1 of one-worker replicas
    weights = [("a", torch.ones(2)), ("b", torch.zeros(3))]
    asyncio.run(adapter.update_weights(iter(weights), global_steps=3))
    assert looked_up == [server_name(1)]
    assert received["global_steps"] == 3 and sorted(received["state"]) == ["a", "b"]
    with pytest.raises(NotImplementedError):
        asyncio.run(adapter.update_weights(iter(weights), wire_format="delta_flush"))


def test_platform_is_cpu_and_gloo() -> None:
    platform = PlatformCPU()
    assert (platform.device_name, platform.current_device(), platform.communication_backend_name()) == (
        "cpu",
        "cpu",
        "gloo",
    )
    assert torch.zeros(1).to(platform.current_device()).device.type == "cpu"
    assert platform.device_module.get_device_name() == "CPU"
    assert platform.device_module.empty_cache() == 0
    assert not platform.is_platform_available(use_smi_check=True), "CPU must be opted into, never auto-detected"


def test_process_group_init_accepts_verls_backend_string_on_cpu() -> None:
    seen: list = []
    init = plain_gloo(lambda *args, **kwargs: seen.append((args, kwargs)))
    init(backend="cpu:gloo,cpu:gloo", rank=0)
    init("cpu:gloo,cuda:nccl")
    assert seen == [((), {"backend": "gloo", "rank": 0}), (("cpu:gloo,cuda:nccl",), {})]
