"""veRL's private surfaces: every one exists on the checked release, and another release is refused at start."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import verl

from verl_ext import compat

REPO = Path(__file__).resolve().parents[2]


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


def test_the_recipe_entrypoint_stops_before_any_work_on_another_release():
    code = (
        "import verl, runpy, sys\n"
        "verl.__version__ = '0.10.0'\n"
        "for name in [m for m in sys.modules if m.startswith('verl_ext')]:\n"
        "    del sys.modules[name]\n"
        "sys.argv = ['main_ground_r1']\n"
        "runpy.run_module('recipe.ground_r1.main_ground_r1', run_name='__main__')\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO)
    assert out.returncode != 0
    assert "VerlVersionError" in out.stderr and "but veRL 0.10.0 is installed" in out.stderr
