"""Every command the README shows names something that exists and answers --help (the rest run in CI)."""

from __future__ import annotations

import re
import subprocess
import sys
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


@pytest.mark.parametrize("script", scripts("data_prep") + scripts("benchmarks"))
def test_python_scripts_in_the_readme_answer_help(script):
    out = subprocess.run([sys.executable, script, "--help"], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "usage:" in out.stdout


@pytest.mark.parametrize("script", scripts("examples"))
def test_launch_scripts_in_the_readme_exist(script):
    path = ROOT / script
    assert path.is_file()
    assert subprocess.run(["bash", "-n", str(path)]).returncode == 0  # parses
