"""The public face is typed for users' type checkers: ``actors`` re-exports the result
types and transport errors from ``transport`` (``JobView``, ``JobOutcome``, ``Closed``, ...),
so every package it takes names from ships a ``py.typed`` marker in the wheel. Without
one, mypy treats that package as untyped and each of those names is ``Any`` to a user
(``Client.job()`` returned ``Any | None``)."""

from __future__ import annotations

import tomllib

import actors
from tests.helpers.procs import ROOT


def test_every_package_the_public_face_takes_names_from_ships_py_typed() -> None:
    homes = {module.partition(".")[0] for module in actors._HOMES}
    assert homes == {"actors", "transport"}
    package_data = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"][
        "package-data"
    ]
    for package in sorted(homes | {"strategies"}):  # strategies: typed like the others
        assert (ROOT / package / "py.typed").is_file(), package
        assert "py.typed" in package_data.get(package, []), package
