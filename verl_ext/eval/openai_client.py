"""The ``openai`` back end: veRL's token-level LLM client contract served by any OpenAI-compatible chat endpoint.

veRL's agent loop asks its client for ``generate(request_id, *, prompt_ids, sampling_params, image_data)`` and
expects the continuation's token ids back (``TokenOutput``). A chat endpoint speaks messages, so this client
(an ``LLMServerClient``, the seam veRL's ``LLMServerManager.get_client(client_cls=...)`` offers):

- splits the prompt tokens into the conversation so far at the chat template's own special tokens (by id, so text
  that merely spells ``<|im_start|>`` stays text), with every image slot (the question image and each zoom crop,
  in order) sent as a PNG data URL of the very image the loop would hand a vLLM server;
- turns the returned text back into token ids with the model's tokenizer *as text* (a reply spelling
  ``<|im_start|>user`` becomes those characters, never control tokens), closed by ``<|im_end|>`` unless the reply
  was cut at ``max_tokens``.

A server is not trusted to be well behaved: ``request_timeout`` is a deadline for the whole request (connection,
the ``openai`` client's retries with backoff, every byte of the reply), the reply body is read up to the most a
reply of ``max_tokens`` tokens can take, and its text is cut to that many characters before tokenizing and to
``max_tokens`` ids after. A semaphore bounds the requests in flight (``eval.max_concurrency``). Only Qwen-VL chat
markup (``<|im_start|>``, ``<|vision_start|>``...) is understood: the recipe's model family.
"""

from __future__ import annotations

import asyncio
import base64
import io
import threading
from collections.abc import AsyncIterator, Sequence
from typing import Any

from cachetools import LRUCache
from PIL import Image
from verl.workers.rollout.llm_server import LLMServerClient
from verl.workers.rollout.replica import TokenOutput

IM_START, IM_END = "<|im_start|>", "<|im_end|>"
VISION_START, VISION_END = "<|vision_start|>", "<|vision_end|>"
#: Encoded images kept for the following turns of a trajectory (each request resends the whole conversation).
_CACHE_BYTES = 512 * 1024 * 1024
#: Bytes of a JSON reply per byte of token text, at most (a control character is written ``\u0001``).
_JSON_BYTES_PER_BYTE = 6
#: The reply's JSON around the text (ids, role, finish reason, usage).
_ENVELOPE_BYTES = 64 * 1024


class ChatFormatError(ValueError):
    """The prompt tokens are not Qwen-VL chat markup, or its image slots do not match the images."""


class ReplyTooLargeError(ValueError):
    """A reply body longer than any reply within the request's ``max_tokens`` can be."""


def image_data_url(image: Image.Image) -> str:
    """Lossless PNG data URL, so the server sees exactly the pixels the agent loop holds."""
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", compress_level=1)
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def chat_messages(prompt_ids: Sequence[int], tokenizer: Any, image_urls: list[str]) -> list[dict[str, Any]]:
    """OpenAI chat messages of a Qwen-VL prompt, without the open assistant turn.

    The prompt is split at the template's special token ids, never at text: a turn whose text spells
    ``<|im_start|>`` (a model reply, a question) stays one turn with that text in it."""
    start, end, vision_start, vision_end = tokenizer.convert_tokens_to_ids([IM_START, IM_END, VISION_START, VISION_END])
    ids = list(prompt_ids)
    if not ids or ids[0] != start:
        raise ChatFormatError("prompt does not start with <|im_start|>: not a Qwen chat prompt")
    messages: list[dict[str, Any]] = []
    images = iter(image_urls)
    used = 0
    for segment in _split(ids, start)[1:]:
        closed = end in segment
        body = segment[: segment.index(end)] if closed else segment
        pieces: list[list[int] | None] = [[]]  # token runs of text; None for an image slot
        k = 0
        while k < len(body):
            if body[k] == vision_start and vision_end in body[k:]:
                pieces += [None, []]
                k = body.index(vision_end, k) + 1
            else:
                pieces[-1].append(body[k])
                k += 1
        role, _, first = tokenizer.decode(pieces[0], skip_special_tokens=False).partition("\n")
        role = role.strip()
        texts = [first] + [None if p is None else tokenizer.decode(p, skip_special_tokens=False) for p in pieces[1:]]
        if not closed and len(texts) == 1 and not first.strip():
            continue  # the generation prompt: "<|im_start|>assistant\n"
        parts: list[dict[str, Any]] = []
        for text in texts:
            if text is None:
                url = next(images, None)
                if url is None:
                    raise ChatFormatError(f"the prompt has more image slots than the {len(image_urls)} images")
                used += 1
                parts.append({"type": "image_url", "image_url": {"url": url}})
            elif text:
                parts.append({"type": "text", "text": text})
        if role in ("system", "assistant") and all(p["type"] == "text" for p in parts):
            messages.append({"role": role, "content": "".join(p["text"] for p in parts)})
        else:
            messages.append({"role": role, "content": parts})
    if used != len(image_urls):
        raise ChatFormatError(f"the prompt has {used} image slots for {len(image_urls)} images")
    return messages


def _split(ids: list[int], marker: int) -> list[list[int]]:
    """``ids`` cut at every ``marker``, markers left out (the first part holds what precedes the first marker)."""
    parts: list[list[int]] = [[]]
    for token in ids:
        if token == marker:
            parts.append([])
        else:
            parts[-1].append(token)
    return parts


async def read_capped(chunks: AsyncIterator[bytes], limit: int) -> bytes:
    """The whole body, refused as soon as it passes ``limit`` bytes."""
    body = bytearray()
    async for chunk in chunks:
        body += chunk
        if len(body) > limit:
            raise ReplyTooLargeError(f"the reply passed {limit} bytes, more than a reply within max_tokens can take")
    return bytes(body)


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
        self.request_timeout = request_timeout
        self.client = AsyncOpenAI(base_url=base_url, api_key=api_key, timeout=request_timeout, max_retries=max_retries)
        self.end_id = tokenizer.convert_tokens_to_ids(IM_END)
        #: The longest token's text: a reply of m tokens has at most m times as many characters (and UTF-8 bytes).
        self.max_token_chars = max(len(token) for token in tokenizer.get_vocab())
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
        urls = [self._url(request_id, k, image) for k, image in enumerate(image_data or [])]
        body: dict[str, Any] = {
            "model": self.model_name,
            "messages": chat_messages(prompt_ids, self.tokenizer, urls),
            "temperature": float(sampling_params.get("temperature", 0.0)),
            "top_p": float(sampling_params.get("top_p", 1.0)),
            "max_tokens": int(sampling_params.get("max_tokens") or self.response_length),
        }
        top_k = int(sampling_params.get("top_k", -1) or -1)
        if top_k > 0:
            body["extra_body"] = {"top_k": top_k}  # vLLM and SGLang servers accept it; OpenAI's API has none
        return body

    async def complete(self, body: dict[str, Any]) -> tuple[str, str | None]:
        """The reply's text and finish reason, within ``request_timeout`` in all and a bounded reply size."""
        from openai.types.chat import ChatCompletion

        limit = _JSON_BYTES_PER_BYTE * body["max_tokens"] * self.max_token_chars + _ENVELOPE_BYTES

        async def exchange() -> bytes:
            async with self.client.chat.completions.with_streaming_response.create(**body) as response:
                return await read_capped(response.iter_bytes(), limit)

        async with self._slots:
            try:
                data = await asyncio.wait_for(exchange(), self.request_timeout)
            except asyncio.TimeoutError as e:
                raise TimeoutError(f"no complete reply within eval.request_timeout={self.request_timeout:g} s") from e
        choice = ChatCompletion.model_validate_json(data).choices[0]
        return choice.message.content or "", choice.finish_reason

    def reply_ids(self, text: str, finish_reason: str | None, max_tokens: int) -> list[int]:
        """The reply as token ids, tokenized as text (no special-token parsing), at most ``max_tokens`` of them; closed
        by ``<|im_end|>`` unless the reply was cut (by the server at ``max_tokens``, or here)."""
        cut = len(text) > max_tokens * self.max_token_chars
        text = text[: max_tokens * self.max_token_chars]  # a reply of max_tokens tokens is never longer
        ids = self.tokenizer.encode(text, add_special_tokens=False, split_special_tokens=True)
        cut |= len(ids) > max_tokens
        ids = ids[:max_tokens]
        if finish_reason != "length" and not cut:
            ids.append(self.end_id)
        return ids

    async def generate(
        self, request_id, *, prompt_ids: list[int], sampling_params: dict[str, Any], image_data=None, **kwargs: Any
    ) -> TokenOutput:
        """One assistant turn from the endpoint, as the token ids veRL's agent loop appends to the trajectory."""
        body = await asyncio.to_thread(self.request, request_id, prompt_ids, sampling_params, image_data)
        text, finish_reason = await self.complete(body)
        token_ids = await asyncio.to_thread(self.reply_ids, text, finish_reason, body["max_tokens"])
        return TokenOutput(token_ids=token_ids, stop_reason="completed", extra_fields={})
