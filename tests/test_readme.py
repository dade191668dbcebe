"""README's commands and Python example run as written (pip install lines excepted: CI has installed us)."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest

README = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "README.md")


def _blocks(language: str) -> list[str]:
    with open(README) as f:
        return re.findall(rf"```{language}\n(.*?)```", f.read(), flags=re.S)


def test_readme_has_the_two_commands_and_ci_runs_the_test_command():
    shell = _blocks("sh")
    assert any("pip install -e '.[build]'" in b and "edgert run" in b for b in shell)
    test_block = next(b for b in shell if "pytest" in b)
    test_command = [line for line in test_block.splitlines() if "pytest" in line][0].replace("python ", "python3 ")
    with open(os.path.join(os.path.dirname(README), ".ci", "run")) as f:
        assert test_command in f.read()


@pytest.mark.slow
def test_readme_shell_examples_run(tmp_path):
    bindir = os.path.dirname(sys.executable)
    script = "set -euo pipefail\n"
    for block in _blocks("sh"):
        if "pytest" in block:
            continue  # the test command runs this very test
        script += "\n".join(line for line in block.splitlines() if "pip install" not in line) + "\n"
    env = dict(os.environ, PATH=bindir + os.pathsep + os.environ.get("PATH", ""))
    done = subprocess.run(["bash", "-c", script], cwd=tmp_path, capture_output=True, text=True, env=env,
                          timeout=600)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert (tmp_path / "resnet50.plan").exists() and (tmp_path / "out.npz").exists()


def test_readme_python_examples_run(tmp_path):
    """Both APIs: edgert's own (``edgert.build``) and TensorRT's (``import edgert as trt``)."""
    blocks = _blocks("python")
    assert len(blocks) == 2 and "import edgert as trt" in blocks[1]
    for block in blocks:
        done = subprocess.run([sys.executable, "-c", block], cwd=tmp_path, capture_output=True, text=True,
                              timeout=600)
        assert done.returncode == 0, done.stderr[-2000:]
    assert (tmp_path / "squeezenet.plan").exists()
    assert done.stdout.strip().splitlines()[-1] == "(3, 16)"
