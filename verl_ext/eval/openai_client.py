"""The ``openai`` back end: veRL's token-level LLM client contract served by any OpenAI-compatible chat endpoint.

veRL's agent loop asks its client for ``generate(request_id, *, prompt_ids, sampling_params, image_data)`` and
expects the continuation's token ids back (``TokenOutput``). A chat endpoint speaks messages, so this client
(an ``LLMServerClient``, the seam veRL's ``LLMServerManager.get_client(client_cls=...)`` offers):

- decodes the prompt tokens into the conversation so far, turn by turn as the chat template rendered it, with
  every image slot (the question image and each zoom crop, in order) sent as a PNG data URL of the very image
  the loop would hand a vLLM server;
- turns the returned text back into token ids with the model's tokenizer, closed by ``<|im_end|>`` unless the
  reply was cut at ``max_tokens``.

Retries with exponential backoff and the per-request timeout are the ``openai`` client's own; a semaphore
bounds the requests in flight (``eval.max_concurrency``). Only Qwen-VL chat markup (``<|im_start|>``,
``<|vision_start|>``...) is understood: the recipe's model family.
"""

from __future__ import annotations

import asyncio
import base64
import io
import re
import threading
from typing import Any

from cachetools import LRUCache
from PIL import Image
from verl.workers.rollout.llm_server import LLMServerClient
from verl.workers.rollout.replica import TokenOutput

IM_START, IM_END = "<|im_start|>", "<|im_end|>"
_IMAGE_SLOT = re.compile(r"<\|vision_start\|>(?:<\|image_pad\|>)+<\|vision_end\|>")
#: Encoded images kept for the following turns of a trajectory (each request resends the whole conversation).
_CACHE_BYTES = 512 * 1024 * 1024


class ChatFormatError(ValueError):
    """The prompt tokens are not Qwen-VL chat markup, or its image slots do not match the images."""


def image_data_url(image: Image.Image) -> str:
    """Lossless PNG data URL, so the server sees exactly the pixels the agent loop holds."""
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", compress_level=1)
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def chat_messages(text: str, image_urls: list[str]) -> list[dict[str, Any]]:
    """OpenAI chat messages of a decoded Qwen-VL prompt (special tokens kept), without the open assistant turn."""
    if not text.startswith(IM_START):
        raise ChatFormatError("prompt does not start with <|im_start|>: not a Qwen chat prompt")
    messages: list[dict[str, Any]] = []
    images = iter(image_urls)
    used = 0
    for segment in text.split(IM_START)[1:]:
        role, _, body = segment.partition("\n")
        closed = IM_END in body
        body = body.split(IM_END)[0]
        if not closed and not body.strip():
            continue  # the generation prompt: "<|im_start|>assistant\n"
        parts: list[dict[str, Any]] = []
        pieces = _IMAGE_SLOT.split(body)
        for k, piece in enumerate(pieces):
            if piece:
                parts.append({"type": "text", "text": piece})
            if k < len(pieces) - 1:
                url = next(images, None)
                if url is None:
                    raise ChatFormatError(f"the prompt has more image slots than the {len(image_urls)} images")
                used += 1
                parts.append({"type": "image_url", "image_url": {"url": url}})
        if role.strip() in ("system", "assistant") and all(p["type"] == "text" for p in parts):
            messages.append({"role": role.strip(), "content": "".join(p["text"] for p in parts)})
        else:
            messages.append({"role": role.strip(), "content": parts})
    if used != len(image_urls):
        raise ChatFormatError(f"the prompt has {used} image slots for {len(image_urls)} images")
    return messages


class OpenAIChatClient(LLMServerClient):
    """``LLMServerClient`` whose server is an OpenAI-compatible chat endpoint (no Ray load balancer)."""

    def __init__(
        self,
        config: Any,
        *,
        tokenizer: Any,
        base_url: str,
        model_name: str,
        api_key: str,
        request_timeout: float,
        max_retries: int,
        max_concurrency: int,
        response_length: int,
    ) -> None:
        from openai import AsyncOpenAI

        super().__init__(config, load_balancer_handle=None)
        self.tokenizer = tokenizer
        self.model_name = model_name
        self.response_length = response_length
        self.client = AsyncOpenAI(base_url=base_url, api_key=api_key, timeout=request_timeout, max_retries=max_retries)
        self.end_id = tokenizer.convert_tokens_to_ids(IM_END)
        self._slots = asyncio.Semaphore(max_concurrency)
        self._urls: LRUCache = LRUCache(maxsize=_CACHE_BYTES, getsizeof=len)
        self._urls_lock = threading.Lock()  # requests are built in worker threads

    def _url(self, request_id: str, position: int, image: Image.Image) -> str:
        """A trajectory's images only ever grow at the end: (request, position) names one image for its whole life."""
        key = (request_id, position, image.size)
        with self._urls_lock:
            url = self._urls.get(key)
        if url is None:
            url = image_data_url(image)
            with self._urls_lock:
                self._urls[key] = url
        return url

    def request(self, request_id: str, prompt_ids: list[int], sampling_params: dict[str, Any], image_data) -> dict:
        """The chat-completion request body for one generation call."""
        text = self.tokenizer.decode(list(prompt_ids), skip_special_tokens=False)
        urls = [self._url(request_id, k, image) for k, image in enumerate(image_data or [])]
        body: dict[str, Any] = {
            "model": self.model_name,
            "messages": chat_messages(text, urls),
            "temperature": float(sampling_params.get("temperature", 0.0)),
            "top_p": float(sampling_params.get("top_p", 1.0)),
            "max_tokens": int(sampling_params.get("max_tokens") or self.response_length),
        }
        top_k = int(sampling_params.get("top_k", -1) or -1)
        if top_k > 0:
            body["extra_body"] = {"top_k": top_k}  # vLLM and SGLang servers accept it; OpenAI's API has none
        return body

    async def generate(
        self, request_id, *, prompt_ids: list[int], sampling_params: dict[str, Any], image_data=None, **kwargs: Any
    ) -> TokenOutput:
        """One assistant turn from the endpoint, as the token ids veRL's agent loop appends to the trajectory."""
        body = await asyncio.to_thread(self.request, request_id, prompt_ids, sampling_params, image_data)
        async with self._slots:
            response = await self.client.chat.completions.create(**body)
        choice = response.choices[0]
        token_ids = self.tokenizer.encode(choice.message.content or "", add_special_tokens=False)
        if choice.finish_reason != "length":
            token_ids.append(self.end_id)
        return TokenOutput(token_ids=token_ids, stop_reason="completed", extra_fields={})
