"""data_prep tests: makes the fixture writers in dp_fixtures.py importable (tests are not a package here)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from dp_fixtures import write_refcoco  # noqa: E402


@pytest.fixture
def refcoco(tmp_path: Path) -> dict[str, Path]:
    return write_refcoco(tmp_path)
