"""The README's examples run as written: its tasks module on a real worker, its SDK snippet
against a real scheduler."""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers.cluster import Cluster
from tests.helpers.procs import ROOT

pytestmark = pytest.mark.slow


def python_blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", (ROOT / "README.md").read_text(), re.S)


def test_readme_sdk_example_runs_against_its_tasks_module(cluster: Cluster, tmp_path: Path) -> None:
    tasks_code, sdk_code = python_blocks()[:2]
    (tmp_path / "tasks.py").write_text(tasks_code)
    cluster.start()
    procs = cluster.procs
    procs.env["PYTHONPATH"] = f"{tmp_path}:{procs.env['PYTHONPATH']}"
    procs.spawn("worker", "worker", "tasks", "--connect", cluster.address)
    script = tmp_path / "sdk.py"
    script.write_text(sdk_code.replace("tcp://127.0.0.1:5555", cluster.address))
    done = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, timeout=60, cwd=ROOT
    )
    assert done.returncode == 0, done.stderr + procs.log_text()
    lines = done.stdout.splitlines()
    assert lines[0] == "5"
    assert lines[1] == "9"
    assert "'SUCCEEDED': 100" in lines[2]  # 1002 to 1004: the last two may still run
    assert lines[3] == "1"


def test_readme_imports_corral_only_from_its_public_face() -> None:
    """Users write ``from actors import task, context, Client``: no example and no sentence
    sends them to a module inside the package."""
    for block in python_blocks():
        for node in ast.walk(ast.parse(block)):
            if isinstance(node, ast.ImportFrom) and node.module:
                if node.module.partition(".")[0] in ("actors", "transport", "strategies"):
                    assert node.module == "actors", ast.unparse(node)
            elif isinstance(node, ast.Import):
                assert not [a.name for a in node.names if a.name.startswith("actors.")]
    text = (ROOT / "README.md").read_text()
    assert not re.findall(r"\bactors\.(?:worker|client|scheduler|cli|errors)\b", text)
