"""The README opens with the commands CI runs, and every script it names exists."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def readme_commands() -> list[str]:
    blocks = re.findall(r"```bash\n(.*?)```", (ROOT / "README.md").read_text(), flags=re.S)
    return [line.split("#")[0].strip() for block in blocks for line in block.replace("\\\n", " ").splitlines()]


def scripts(prefix: str) -> list[str]:
    return sorted({m for cmd in readme_commands() for m in re.findall(rf"{prefix}/[\w./-]+\.(?:py|sh)", cmd)})


def test_readme_opens_with_install_and_the_test_command_ci_runs():
    commands = [c for c in readme_commands() if c]
    assert commands[:2] == ['pip install -e ".[test]"', "pytest"]
    assert "pytest" in (ROOT / ".ci" / "run").read_text()


@pytest.mark.parametrize("script", scripts("data_prep") + scripts("benchmarks") + scripts("examples"))
def test_scripts_the_readme_names_exist(script):
    assert (ROOT / script).is_file()
