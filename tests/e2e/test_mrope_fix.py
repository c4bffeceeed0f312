"""veRL 0.9.1's 3D position-id normalisation, with and without the equal-length workaround (fast, no Ray)."""

from __future__ import annotations

import pytest
import torch
import verl  # noqa: F401  (loads verl_ext.plugin, which installs the workaround)
from tensordict import TensorDict
from verl.utils import tensordict_utils
from verl.workers import engine_workers
from verl.workers.engine import base as engine_base

from verl_ext.compat.mrope import ragged_on_length


def _position_ids(lengths: list[int]) -> tuple[list[torch.Tensor], torch.Tensor]:
    samples = [torch.arange(4 * n).view(4, n) + 1000 * i for i, n in enumerate(lengths)]
    return samples, torch.nested.as_nested_tensor(samples, layout=torch.jagged)


@pytest.mark.parametrize("lengths", [[5, 5, 5], [7, 7], [3, 6, 4], [4], [4, 4, 4, 4]])
def test_normalised_position_ids_unbind_to_the_samples(lengths: list[int]) -> None:
    samples, nested = _position_ids(lengths)
    data = TensorDict({"position_ids": nested}, batch_size=[len(lengths)])
    engine_workers.maybe_fix_3d_position_ids(data)
    assert [t.shape for t in data["position_ids"].unbind()] == [s.shape for s in samples]
    for got, want in zip(data["position_ids"].unbind(), samples, strict=True):
        assert torch.equal(got, want)


def test_veRL_alone_breaks_equal_lengths() -> None:
    """The bug the workaround exists for: veRL's own fix on an equal-length batch cannot be unbound."""
    _, nested = _position_ids([5, 5, 5])
    data = TensorDict({"position_ids": nested}, batch_size=[3])
    engine_workers.maybe_fix_3d_position_ids.__wrapped__(data)
    with pytest.raises(RuntimeError):
        data["position_ids"].unbind()


@pytest.mark.parametrize("module", [tensordict_utils, engine_workers, engine_base], ids=lambda m: m.__name__)
def test_every_module_veRL_calls_it_from_fixes_equal_lengths(module) -> None:
    samples, nested = _position_ids([5, 5, 5])
    data = TensorDict({"position_ids": nested}, batch_size=[3])
    module.maybe_fix_3d_position_ids(data)
    for got, want in zip(data["position_ids"].unbind(), samples, strict=True):
        assert torch.equal(got, want)


def test_ragged_lengths_pass_through_unchanged() -> None:
    _, nested = _position_ids([3, 6])
    assert ragged_on_length(nested) is nested
