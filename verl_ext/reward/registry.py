"""The data_source -> answer scorer registry ``compute_score`` dispatches on.

Seeded from the project's table (:data:`verl_ext.data_sources.SCORERS`, data source -> scorer kind) and
:data:`KINDS` (kind -> scorer). A user adds a data source without editing either::

    from verl_ext.reward import register_data_source, score_vqa
    register_data_source("my_chartqa", score_vqa)

The registry lives in this package module only, so it is the same object whether ``compute_score``
is imported or its module is loaded by file path (``verl_ext/reward/entry.py``). Registration must run
in the reward worker process: do it in a module imported there (a ``verl.plugins`` entry point, or
``VERL_USE_EXTERNAL_MODULES``), or in your own reward file that then re-exports ``compute_score``.
"""

from __future__ import annotations

from verl_ext import data_sources
from verl_ext.reward.base import Scorer
from verl_ext.reward.grounding import score_grounding
from verl_ext.reward.vqa import score_vqa

#: Scorer of each kind named in the data-source table.
KINDS: dict[str, Scorer] = {data_sources.GROUNDING_SCORER: score_grounding, data_sources.VQA_SCORER: score_vqa}

_EXACT: dict[str, Scorer] = {}
_PREFIX: dict[str, Scorer] = {}


class UnknownDataSourceError(ValueError):
    """A row's data_source has no scorer: a configuration error, not a model output."""


def register_data_source(name: str, scorer: Scorer, *, prefix: bool = False) -> Scorer:
    """Score rows whose data_source is ``name`` (or starts with it, ``prefix=True``) with ``scorer``.

    Registering the same scorer again is a no-op; a different scorer for a taken name is an error.
    """
    table = _PREFIX if prefix else _EXACT
    if not isinstance(name, str) or not name:
        raise ValueError(f"data source name must be a non-empty string, got {name!r}")
    if table.get(name, scorer) is not scorer:
        raise ValueError(f"data source {name!r} already has scorer {table[name]!r}; refusing {scorer!r}")
    table[name] = scorer
    return scorer


def known_data_sources() -> list[str]:
    """Registered names; prefixes shown as ``prefix*``."""
    return sorted(_EXACT) + sorted(f"{p}*" for p in _PREFIX)


def scorer_for(data_source: object) -> Scorer:
    """The scorer of ``data_source``: an exact name first, else the longest registered prefix."""
    name = data_source if isinstance(data_source, str) else str(data_source)
    if name in _EXACT:
        return _EXACT[name]
    matches = [p for p in _PREFIX if name.startswith(p)]
    if matches:
        return _PREFIX[max(matches, key=len)]
    raise UnknownDataSourceError(f"no reward scorer for data_source {data_source!r}; known: {known_data_sources()}")


for _name, _kind in data_sources.SCORERS.items():
    register_data_source(_name.removesuffix("*"), KINDS[_kind], prefix=_name.endswith("*"))
