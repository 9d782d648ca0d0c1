"""The README's map of the code and its install notes follow the code: every module of the
store is named where the README lists the store's folder, and every runtime dependency
in pyproject.toml is among those the Install section names."""

from __future__ import annotations

import re
import tomllib

from tests.helpers.procs import ROOT

README = (ROOT / "README.md").read_text()


def test_the_store_row_names_every_module_of_the_store() -> None:
    row = next(
        line for line in README.splitlines() if line.startswith("| `actors/scheduler/store/`")
    )
    modules = sorted(p.name for p in (ROOT / "actors/scheduler/store").glob("*.py"))
    missing = [m for m in modules if m != "__init__.py" and f"`{m}`" not in row]
    assert missing == [], f"not in the README's store row: {missing}"


def test_the_install_section_names_every_runtime_dependency() -> None:
    install = README.split("## Install", 1)[1].split("\n## ", 1)[0]
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    names = [re.split(r"[<>=;\[ ]", dep, maxsplit=1)[0] for dep in project["dependencies"]]
    missing = [name for name in names if name not in install]
    assert missing == [], f"runtime dependencies the Install section does not name: {missing}"
