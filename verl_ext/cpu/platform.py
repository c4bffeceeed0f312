"""A veRL platform for CPU-only machines: device ``cpu``, collectives on ``gloo``.

veRL 0.9.1 ships CUDA, NPU and ROCm platforms only, and with none of them available it falls back
to ``nvidia``: ``trainer.device=cpu`` becomes ``cuda`` and FSDP moves parameters to ``cuda:0``. This
platform is selected with ``VERL_PLATFORM=cpu`` once ``verl_ext.cpu`` is imported in every process
(``VERL_USE_EXTERNAL_MODULES=verl_ext.cpu.plugin``).

Ray scheduling keeps veRL's logical ``GPU`` resource: veRL's resource-pool check counts ``GPU``/``NPU``
only, so a CPU run declares one logical GPU (``+ray_kwargs.ray_init.num_gpus=1``) that nothing uses.
"""

from __future__ import annotations

import os
from contextlib import contextmanager
from types import ModuleType
from typing import Any

import torch
from verl.plugin.platform import PlatformBase, PlatformRegistry

from verl_ext.compat.registries import register_engine_on_device

NAME = "cpu"


class _CPUDeviceModule(ModuleType):
    """The ``torch.<device>`` namespace veRL expects (``get_torch_device()``), answered for the CPU."""

    def __init__(self) -> None:
        super().__init__("verl_ext.cpu.device")

    def __getattr__(self, name: str) -> Any:
        # torch.cpu has is_available/synchronize/current_device/...; memory calls veRL makes on the
        # device module (empty_cache, memory_allocated, ...) have no CPU counterpart: no-ops returning 0.
        if name.startswith("__"):
            raise AttributeError(name)
        if hasattr(torch.cpu, name):
            return getattr(torch.cpu, name)
        return _zero

    def manual_seed(self, seed: int) -> None:
        torch.manual_seed(seed)

    def manual_seed_all(self, seed: int) -> None:
        torch.manual_seed(seed)

    def set_device(self, device: Any) -> None:
        """There is one CPU device; selecting it is a no-op."""

    def current_device(self) -> str:
        return NAME

    def device_count(self) -> int:
        return 1

    def get_device_name(self, device: Any = None) -> str:
        # veRL's FLOPs counter matches this against its table, where "CPU" is a key.
        return "CPU"

    def mem_get_info(self, device: Any = None) -> tuple[int, int]:
        page = os.sysconf("SC_PAGE_SIZE")
        return os.sysconf("SC_AVPHYS_PAGES") * page, os.sysconf("SC_PHYS_PAGES") * page


def _zero(*args: Any, **kwargs: Any) -> int:
    return 0


@PlatformRegistry.register(platform=NAME)
class PlatformCPU(PlatformBase):
    """CPU platform: tensors stay on ``cpu``, process groups use ``gloo``, profiling hooks are no-ops."""

    _module = _CPUDeviceModule()

    @property
    def device_name(self) -> str:
        return NAME

    @property
    def vendor_name(self) -> str:
        return NAME

    @property
    def device_module(self) -> ModuleType:
        return self._module

    def is_available(self) -> bool:
        return True

    def is_platform_available(self, use_smi_check: bool = False) -> bool:
        # Never auto-detected: a CPU run opts in with VERL_PLATFORM=cpu.
        return False

    def current_device(self) -> str:
        # veRL moves modules with ``.to(get_device_id())``: "cpu" keeps them in host memory.
        return NAME

    def device_count(self) -> int:
        return 1

    def set_device(self, device_index: int) -> None:
        """One device: nothing to select."""

    def synchronize(self, device_index: int | None = None) -> None:
        """CPU kernels are synchronous."""

    def manual_seed(self, seed: int) -> None:
        torch.manual_seed(seed)

    def manual_seed_all(self, seed: int) -> None:
        torch.manual_seed(seed)

    def set_allocator_settings(self, settings: str) -> None:
        """The CPU allocator has no expandable segments."""

    def empty_cache(self) -> None:
        """No device cache to release."""

    def get_device_capability(self, device_index: int = 0) -> tuple[int | None, int | None]:
        return None, None

    def communication_backend_name(self) -> str:
        return "gloo"

    def visible_devices_envvar(self) -> str:
        return "CUDA_VISIBLE_DEVICES"

    @contextmanager
    def nvtx_range(self, msg: str):
        yield

    def profiler_start(self) -> None:
        """No device profiler on CPU."""

    def profiler_stop(self) -> None:
        """No device profiler on CPU."""

    def ray_resource_name(self) -> str:
        return "GPU"

    def ray_noset_envvars(self) -> list[str]:
        return []

    def is_ipc_supported(self) -> bool:
        return False

    def cudart(self) -> Any:
        return None


def register_engines() -> None:
    """Run veRL's FSDP/FSDP2 engines on device ``cpu`` (veRL registers them for cuda and npu only)."""
    from verl.workers.engine.fsdp.transformer_impl import FSDPEngineWithLMHead, FSDPEngineWithValueHead

    register_engine_on_device("language_model", FSDPEngineWithLMHead, NAME)
    register_engine_on_device("value_model", FSDPEngineWithValueHead, NAME)
