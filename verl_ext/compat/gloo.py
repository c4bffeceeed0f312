"""Process groups on the CPU platform: veRL's ``"cpu:gloo,{device}:{backend}"`` with device ``cpu`` (see compat)."""

from __future__ import annotations

import functools
from typing import Any

import torch.distributed

_DUPLICATE = "cpu:gloo,cpu:gloo"


def plain_gloo(init_process_group):
    """Wrap ``init_process_group`` so veRL's backend string naming ``cpu`` twice becomes plain ``gloo``.

    With device ``cpu`` and backend ``gloo`` veRL's string says the same thing twice, which torch rejects as a
    duplicate device type.
    """

    @functools.wraps(init_process_group)
    def wrapper(*args: Any, **kwargs: Any):
        backend = kwargs.get("backend", args[0] if args else None)
        if isinstance(backend, str) and backend.replace(" ", "") == _DUPLICATE:
            if args:
                args = ("gloo", *args[1:])
            else:
                kwargs["backend"] = "gloo"
        return init_process_group(*args, **kwargs)

    wrapper.__verl_ext_cpu__ = True
    return wrapper


def install() -> None:
    """Install the wrapper on ``torch.distributed.init_process_group`` (idempotent)."""
    if not getattr(torch.distributed.init_process_group, "__verl_ext_cpu__", False):
        torch.distributed.init_process_group = plain_gloo(torch.distributed.init_process_group)
