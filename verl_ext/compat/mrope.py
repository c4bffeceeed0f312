"""Work around a veRL 0.9.1 bug: VLM updates crash when every sample of a batch has the same length.

Qwen2.5-VL's mrope ``position_ids`` are (4, L_i) per sample. veRL stacks them into a jagged nested
tensor with ``torch.nested.as_nested_tensor``, which infers the ragged dimension from the data: with
different L_i it is the length (the one veRL wants), but when every L_i is equal it picks the leading
dimension of size 4. ``verl.utils.tensordict_utils.maybe_fix_3d_position_ids`` (veRL's normalisation
point, called before every actor/engine pass) then forces ``_ragged_idx = 2`` onto offsets that count
4s, and ``update_actor`` dies in ``split_with_sizes expects split_sizes to sum exactly to ...``.
Greedy or length-capped rollouts (every response hits ``max_response_length``) trigger it easily.

The fix wraps that normalisation point: a tensor that is ragged on the leading dimension is rebuilt
ragged on the length, then veRL's own fix runs. Correctly built tensors pass through unchanged. It is
installed on ``import verl`` (``verl_ext.plugin``), before veRL's worker modules import the function.
"""

from __future__ import annotations

import functools
import sys
from typing import Any

import torch
import verl.utils.tensordict_utils as tensordict_utils

#: Modules that bind ``maybe_fix_3d_position_ids`` by name (rebound here if already imported).
_IMPORTERS = ("verl.workers.engine_workers", "verl.workers.engine.base", "verl.workers.engine_workers_tinker")


def ragged_on_length(position_ids: torch.Tensor) -> torch.Tensor:
    """Return 3D jagged ``position_ids`` ragged on the length dimension (dim 2), rebuilding if needed."""
    if not (position_ids.is_nested and position_ids.dim() == 3):
        return position_ids
    values, offsets = position_ids.values(), position_ids.offsets()
    batch = offsets.numel() - 1
    total = int(offsets[-1])
    if values.dim() != 2 or batch == 0 or values.shape[1] == total or values.shape[0] != total:
        return position_ids  # already laid out along the length (veRL's fix sets the index)
    widths = offsets.diff()
    if not bool((widths == widths[0]).all()):
        return position_ids
    mrope, length = int(widths[0]), values.shape[1]
    per_sample = values.reshape(batch, mrope, length)
    return torch.nested.nested_tensor_from_jagged(
        per_sample.permute(1, 0, 2).reshape(mrope, batch * length),
        offsets=torch.arange(batch + 1, dtype=offsets.dtype, device=offsets.device) * length,
        jagged_dim=2,
    )


def _wrap(original):
    @functools.wraps(original)
    def maybe_fix_3d_position_ids(data: Any) -> None:
        if "position_ids" in data.keys():
            fixed = ragged_on_length(data["position_ids"])
            if fixed is not data["position_ids"]:
                data["position_ids"] = fixed
        original(data)

    maybe_fix_3d_position_ids.__verl_ext_fixed__ = True
    return maybe_fix_3d_position_ids


def install() -> None:
    """Replace veRL's ``maybe_fix_3d_position_ids`` with the wrapped one (idempotent)."""
    current = tensordict_utils.maybe_fix_3d_position_ids
    if getattr(current, "__verl_ext_fixed__", False):
        return
    fixed = _wrap(current)
    tensordict_utils.maybe_fix_3d_position_ids = fixed
    for name in _IMPORTERS:
        module = sys.modules.get(name)
        if module is not None and getattr(module, "maybe_fix_3d_position_ids", None) is current:
            module.maybe_fix_3d_position_ids = fixed


install()
