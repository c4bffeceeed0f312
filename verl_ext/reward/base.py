"""What every answer scorer takes and returns, and the reward options read from ``reward_kwargs``."""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any, NamedTuple, Protocol

from verl_ext.reward_keys import IOU_NOT_APPLICABLE

GROUNDING_MODES = ("iou", "acc@0.5")
EVIDENCE_MODES = ("first", "last")
#: Keyword arguments veRL's reward managers add on their own (reward-model routing); not reward options.
_VERL_KWARGS = frozenset({"reward_router_address", "reward_model_tokenizer"})


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


@dataclass(frozen=True)
class RewardOptions:
    """Options from ``reward.custom_reward_function.reward_kwargs``.

    score = answer_weight * answer score + format_weight * format (defaults sum to 1, EasyR1 style).
    """

    answer_weight: float = 0.9
    format_weight: float = 0.1
    #: Grounding answer score: continuous IoU, or the Acc@0.5 indicator.
    grounding_mode: str = "iou"
    #: Evidence scale from the first or the last valid zoom; ``evidence_missing`` when none.
    evidence_mode: str = "first"
    evidence_missing: float = 1.0
    #: Pixel bounds of the processor, used only when a row's extra_info lacks resized_width/height.
    min_pixels: int | None = None
    max_pixels: int | None = None
    #: Seconds a single math verification may take.
    math_timeout: float = 5.0

    @classmethod
    def from_kwargs(cls, kwargs: Mapping[str, Any]) -> RewardOptions:
        """Validated options; a ValueError names the bad key (a configuration error, raised on the first row)."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(kwargs) - known - _VERL_KWARGS)
        if unknown:
            raise ValueError(f"unknown reward kwargs {unknown}; known: {sorted(known)}")
        options = cls(**{k: v for k, v in kwargs.items() if k in known})
        options._validate()
        return options

    def _validate(self) -> None:
        for name in ("answer_weight", "format_weight", "evidence_missing", "math_timeout"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
                raise ValueError(f"reward kwarg {name} must be a finite number >= 0, got {value!r}")
        if self.evidence_missing > 1:
            raise ValueError(f"reward kwarg evidence_missing is a relative area in [0, 1], got {self.evidence_missing}")
        if self.grounding_mode not in GROUNDING_MODES:
            raise ValueError(f"reward kwarg grounding_mode must be in {GROUNDING_MODES}, got {self.grounding_mode!r}")
        if self.evidence_mode not in EVIDENCE_MODES:
            raise ValueError(f"reward kwarg evidence_mode must be in {EVIDENCE_MODES}, got {self.evidence_mode!r}")
        for name in ("min_pixels", "max_pixels"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value <= 0):
                raise ValueError(f"reward kwarg {name} must be a positive integer or null, got {value!r}")


class Scorer(Protocol):
    """Scores the final answer (None when the response has none) of one row against its ground truth."""

    def __call__(
        self, answer: str | None, ground_truth: Any, extra_info: Mapping[str, Any], options: RewardOptions
    ) -> AnswerScore: ...
