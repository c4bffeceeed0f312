"""What every answer scorer takes and returns, and the reward options read from ``reward_kwargs``."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any, Literal, NamedTuple, Protocol

from pydantic import BaseModel, ConfigDict, Field

from verl_ext.reward_keys import IOU_NOT_APPLICABLE

#: Keyword arguments veRL's reward managers add on their own (reward-model routing); not reward options.
VERL_KWARGS = frozenset({"reward_router_address", "reward_model_tokenizer"})


_logger = logging.getLogger("verl_ext.reward")
_warned: set[str] = set()


def warn_once(kind: str, detail: str) -> None:
    """Log a problem with row data (not model output) once per kind, so a bad dataset is seen, not flooding."""
    if kind not in _warned:
        _warned.add(kind)
        _logger.warning("%s (first occurrence: %s; further ones are not logged)", kind, detail)


class AnswerScore(NamedTuple):
    """``score``: answer reward in [0, 1]; ``acc``: 0/1 correctness; ``iou``: [0, 1], or IOU_NOT_APPLICABLE."""

    score: float
    acc: float
    iou: float = IOU_NOT_APPLICABLE


ZERO = AnswerScore(0.0, 0.0)

_STRICT = ConfigDict(extra="forbid", frozen=True, strict=True)


class JudgeOptions(BaseModel):
    """``reward_kwargs.judge``: an LLM judge for open answers (see docs/judge.md). Off by default.

    The endpoint is veRL's reward-model router when veRL passes ``reward_router_address``
    (``reward.reward_model.enable=true``), else ``base_url``; the API key comes from ``OPENAI_API_KEY``.
    """

    model_config = _STRICT

    enable: bool = False
    #: OpenAI-compatible API root of an external judge, e.g. ``http://judge-host:8000/v1``.
    base_url: str | None = None
    #: ``model`` field of each request; None omits it (a vLLM server then answers with its one model).
    model_name: str | None = None
    #: Seconds per request attempt, attempts after the first, and requests in flight per reward worker.
    timeout: float = Field(30.0, gt=0, allow_inf_nan=False)
    max_retries: int = Field(2, ge=0, le=10)
    max_concurrency: int = Field(32, ge=1)
    max_tokens: int = Field(8, ge=1)
    #: Bytes of a reply read at most; a longer reply is a failure (a verdict reply is a few hundred bytes).
    max_reply_bytes: int = Field(65536, ge=1024)
    #: Circuit breaker: this many endpoint failures in a row (timeouts, connection errors, 5xx) stop calls
    #: for ``circuit_open_s`` seconds (rows keep their rule score at once); then one probe decides.
    circuit_failures: int = Field(5, ge=1)
    circuit_open_s: float = Field(60.0, gt=0, allow_inf_nan=False)


class RewardOptions(BaseModel):
    """Options from ``reward.custom_reward_function.reward_kwargs``, validated by pydantic (strict types).

    score = answer_weight * answer score + format_weight * format (defaults sum to 1, EasyR1 style).
    """

    model_config = _STRICT

    answer_weight: float = Field(0.9, ge=0, allow_inf_nan=False)
    format_weight: float = Field(0.1, ge=0, allow_inf_nan=False)
    #: Grounding answer score: continuous IoU, or the Acc@0.5 indicator.
    grounding_mode: Literal["iou", "acc@0.5"] = "iou"
    #: Evidence scale from the first or the last valid zoom; ``evidence_missing`` (a relative area) when none.
    evidence_mode: Literal["first", "last"] = "first"
    evidence_missing: float = Field(1.0, ge=0, le=1, allow_inf_nan=False)
    #: Seconds a single math verification may take.
    math_timeout: float = Field(5.0, gt=0, allow_inf_nan=False)
    judge: JudgeOptions = JudgeOptions()

    @classmethod
    def from_kwargs(cls, kwargs: Mapping[str, Any]) -> RewardOptions:
        """Validated options; a ValueError names the bad key (a configuration error, raised on the first row)."""
        return cls.model_validate(_plain({k: v for k, v in kwargs.items() if k not in VERL_KWARGS}))


def _plain(value: Any) -> Any:
    """Nested mappings (OmegaConf's DictConfig inside reward_kwargs) as dicts, for strict validation."""
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    return value


class Scorer(Protocol):
    """Scores the final answer (None when the response has none) of one row against its ground truth."""

    def __call__(
        self, answer: str | None, ground_truth: Any, extra_info: Mapping[str, Any], options: RewardOptions
    ) -> AnswerScore: ...
