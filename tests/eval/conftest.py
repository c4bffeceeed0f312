"""Evaluation tests: the fixture helpers in eval_fixtures.py (tests are not a package here) and shared fixtures."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Tokenizer, processor (tiny pixel bounds) and config of a tiny Qwen2.5-VL: what the agent loop needs of the
    served model (the openai back end generates elsewhere)."""
    from verl_ext.testing.tiny_qwen import build_tiny_qwen25vl

    return build_tiny_qwen25vl(tmp_path_factory.mktemp("tiny-qwen"), with_model=False)


@pytest.fixture(autouse=True)
def no_proxy_for_local_servers(monkeypatch: pytest.MonkeyPatch) -> None:
    """The test servers listen on 127.0.0.1: an HTTP(S)_PROXY from the environment must not route requests away."""
    for name in ("NO_PROXY", "no_proxy"):
        monkeypatch.setenv(name, ",".join(filter(None, ["127.0.0.1,localhost", os.environ.get(name)])))


@pytest.fixture
def vstar(tmp_path: Path) -> tuple[Path, list[dict]]:
    """A V* evaluation parquet written by the real converter, and its rows."""
    import pyarrow.parquet as pq
    from eval_fixtures import vstar_parquet

    path = vstar_parquet(tmp_path)
    return path, pq.read_table(path).to_pylist()
