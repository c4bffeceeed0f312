"""Routes per-trajectory evidence scales from the trainer hook to the SRPO estimator.

veRL 0.9.1 calls custom estimators from ``compute_advantage`` with only rewards, mask, uid and config
(docs/design.md, section 2). The recipe's trainer reads each trajectory's ``evidence_scale`` from its reward
extra info and opens :func:`routed_evidence_scales` around veRL's own advantage step; the estimator
picks the scales up with :func:`current_routing`. The context is scoped to that one call.
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class Routing:
    """Evidence scales for the rows of one advantage computation, in the batch's row order.

    ``final_rows``/``row_to_final`` describe sessions that returned several outputs: only the final
    output of each session is scored, and its advantage is broadcast to the session's other outputs,
    as veRL's v1 trainer does for GRPO.
    """

    scales: torch.Tensor  # (bs,) float64
    final_rows: torch.Tensor  # (n_sessions,) long: the row holding each session's final output
    row_to_final: torch.Tensor  # (bs,) long: position in final_rows of each row's session


_ROUTING: contextvars.ContextVar[Routing | None] = contextvars.ContextVar("srpo_routing", default=None)


def parse_key(key: str) -> tuple[str, str, int]:
    """``(uid, session_id, output_index)`` of a v1 TransferQueue key ``{uid}_{session_id}_{output_index}``.

    The one parser of veRL's key layout in this project (veRL 0.9.1 inlines ``key.rsplit("_", 2)`` where it needs
    it and exports no function). A key of another shape is its own session with output index 0.
    """
    parts = str(key).rsplit("_", 2)
    if len(parts) == 3 and parts[2].isdigit():
        return parts[0], parts[1], int(parts[2])
    return str(key), "", 0


def session_layout(keys: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor]:
    """Final output row per session and each row's session, from v1 keys ``{uid}_{session_id}_{output_index}``."""
    final: dict[tuple[str, str], tuple[int, int]] = {}
    sessions: list[tuple[str, str]] = []
    for row, key in enumerate(keys):
        uid, session_id, output_index = parse_key(key)
        session = (uid, session_id)
        sessions.append(session)
        if session not in final or final[session][0] < output_index:
            final[session] = (output_index, row)
    order = {session: i for i, session in enumerate(final)}
    final_rows = torch.tensor([row for _, row in final.values()], dtype=torch.long)
    row_to_final = torch.tensor([order[s] for s in sessions], dtype=torch.long)
    return final_rows, row_to_final


@contextlib.contextmanager
def routed_evidence_scales(scales: Sequence[float] | torch.Tensor, keys: Sequence[str] | None = None) -> Iterator[None]:
    """Make ``scales`` (one per batch row, in row order) visible to the SRPO estimator within this block."""
    scales = torch.as_tensor(scales, dtype=torch.float64).reshape(-1)
    if keys is None:
        rows = torch.arange(scales.numel(), dtype=torch.long)
        final_rows, row_to_final = rows, rows
    else:
        if len(keys) != scales.numel():
            raise ValueError(f"{scales.numel()} evidence scales for {len(keys)} batch keys")
        final_rows, row_to_final = session_layout(keys)
    token = _ROUTING.set(Routing(scales, final_rows, row_to_final))
    try:
        yield
    finally:
        _ROUTING.reset(token)


def current_routing() -> Routing | None:
    """The scales routed for the advantage computation in progress, or None outside the trainer hook."""
    return _ROUTING.get()
