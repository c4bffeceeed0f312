"""veRL's private surfaces: every one exists on the checked release, and another release is refused at start."""

from __future__ import annotations

import importlib

import pytest
import verl

from verl_ext import compat


def test_every_private_surface_listed_exists_on_the_checked_release():
    assert verl.__version__ == compat.VERIFIED_VERL_VERSION
    assert compat.missing_surfaces() == []


def test_a_listed_surface_that_disappears_is_named(monkeypatch):
    from verl.workers.rollout import base

    monkeypatch.delattr(base, "_ROLLOUT_REGISTRY")
    with pytest.raises(compat.VerlVersionError, match=r"verl.workers.rollout.base._ROLLOUT_REGISTRY"):
        compat.check_surfaces()


def test_another_release_is_refused_with_what_to_check(monkeypatch):
    monkeypatch.delenv(compat.ALLOW_ENV, raising=False)
    with pytest.raises(compat.VerlVersionError, match=r"checked against veRL 0\.9\.1, but veRL 0\.10\.0.*compat"):
        compat.check_version("0.10.0")
    monkeypatch.setenv(compat.ALLOW_ENV, "0.10.0")
    compat.check_version("0.10.0")
    with pytest.raises(compat.VerlVersionError):
        compat.check_version("0.11.0")


def test_importing_the_package_on_another_release_stops_at_once(monkeypatch):
    """The recipe entrypoint and the plugin import verl_ext.compat first: the import itself refuses."""
    monkeypatch.delenv(compat.ALLOW_ENV, raising=False)
    monkeypatch.setattr(verl, "__version__", "0.10.0")
    try:
        with pytest.raises(ImportError, match="but veRL 0.10.0 is installed"):
            importlib.reload(compat)
    finally:
        monkeypatch.undo()
        importlib.reload(compat)
