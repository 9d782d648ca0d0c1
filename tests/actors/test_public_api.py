"""``actors`` is the public face: ``from actors import *`` gives exactly ``__all__``, each
name is its defining module's object and works, importing it stays light (no scheduler,
no worker agent), and every error corral raises derives from ``CorralError``."""

from __future__ import annotations

import ast
import importlib
import inspect
import pkgutil
import subprocess
import sys
from pathlib import Path

import msgspec
import pytest

import actors
import actors.errors
import transport.errors
from actors import CorralError, JobSpec, context, job_spec, task
from actors.worker.executors import JobStopped
from actors.worker.tasks import OPTIONS, REGISTRY

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("actors", "transport", "strategies")
# Raised inside the worker only; a job's result carries their text, never the object.
INTERNAL_ERRORS = {"LeaseLapsed", "HandlerFailed"}
# Modules that show a user's code, so they import from the face as users do.
USER_CODE = {"actors/cli/demo.py", "actors/cli/demo_tasks.py"}
# Not CorralErrors on purpose: JobStopped must get past a handler's `except Exception`.
NOT_ERRORS = {JobStopped}


def _module_names() -> list[str]:
    names = list(PACKAGES)
    for package in PACKAGES:
        path = importlib.import_module(package).__path__
        for info in pkgutil.walk_packages(path, f"{package}."):
            if not info.name.endswith("__main__"):  # running it would run the CLI
                names.append(info.name)
    return names


def test_a_star_import_gives_exactly_the_names_in_all() -> None:
    namespace: dict[str, object] = {}
    exec("from actors import *", namespace)
    namespace.pop("__builtins__")
    assert sorted(namespace) == sorted(actors.__all__)
    assert len(set(actors.__all__)) == len(actors.__all__)


def test_each_public_name_is_the_object_its_defining_module_holds() -> None:
    homes = actors._HOME_OF
    assert set(homes) == set(actors.__all__)
    for name in actors.__all__:
        assert getattr(actors, name) is getattr(importlib.import_module(homes[name]), name)
    assert set(dir(actors)) >= set(actors.__all__)


def test_a_name_that_is_not_public_is_an_attribute_error() -> None:
    with pytest.raises(AttributeError, match="no attribute 'Worker'"):
        actors.Worker  # noqa: B018 - the attribute access is the test


def test_task_context_and_job_spec_work_from_the_face() -> None:
    @task(name="tests.public.add", queue="math")
    def add(a: int, b: int) -> int:
        return a + b

    try:
        assert REGISTRY["tests.public.add"] is add.fn
        assert add(2, 3) == 5, "a task called directly runs here"
        assert add.name == "tests.public.add"
        assert add.__name__ == "add"
        spec = job_spec("tests.public.add", [1, 2])
        assert isinstance(spec, JobSpec)
        assert spec.queue == "math"
    finally:
        REGISTRY.pop("tests.public.add", None)
        OPTIONS.pop("tests.public.add", None)
    with pytest.raises(RuntimeError, match="outside a running task"):
        context()


def test_the_client_classes_and_result_types_are_what_users_name() -> None:
    assert inspect.isclass(actors.Client)
    assert inspect.isclass(actors.AsyncClient)
    for name in ("JobOutcome", "JobView", "StatusView", "WorkflowView", "Event"):
        assert issubclass(getattr(actors, name), msgspec.Struct)


def test_importing_the_face_imports_neither_the_scheduler_nor_the_worker_agent() -> None:
    code = (
        "import sys\n"
        "import actors\n"
        "from actors import *\n"
        "heavy = ('actors.scheduler', 'actors.cli', 'actors.worker.agent', 'strategies')\n"
        "print([m for m in sys.modules if any(m == h or m.startswith(h + '.') for h in heavy)])\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, cwd=ROOT
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


@pytest.mark.parametrize("first", ["transport", "strategies", "actors.errors"])
def test_any_package_imports_first_in_a_fresh_process(first: str) -> None:
    """transport and strategies import actors.errors, which runs the face: it must not
    import them back half initialised."""
    code = f"import {first}\nfrom actors import *\nimport transport, strategies\n"
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, cwd=ROOT
    )
    assert done.returncode == 0, done.stderr


def test_every_error_class_in_the_errors_modules_derives_from_corral_error() -> None:
    for module in (actors.errors, transport.errors):
        classes = [
            c
            for _, c in inspect.getmembers(module, inspect.isclass)
            if issubclass(c, BaseException) and c.__module__ == module.__name__
        ]
        assert classes
        for cls in classes:
            assert issubclass(cls, CorralError), cls


def test_every_error_a_user_can_meet_is_exported() -> None:
    for module in (actors.errors, transport.errors):
        for name, cls in inspect.getmembers(module, inspect.isclass):
            if issubclass(cls, CorralError) and cls.__module__ == module.__name__:
                assert name in actors.__all__ or name in INTERNAL_ERRORS, name


def test_every_exception_class_corral_defines_derives_from_corral_error() -> None:
    for name in _module_names():
        module = importlib.import_module(name)
        for attr, cls in inspect.getmembers(module, inspect.isclass):
            if cls.__module__ != name or not issubclass(cls, BaseException):
                continue
            if cls in NOT_ERRORS or attr.startswith("_"):  # private: never leaves its module
                continue
            assert issubclass(cls, CorralError), f"{name}.{attr}"


def test_no_module_inside_corral_imports_the_face() -> None:
    """The face is for users; importing it from inside would make one import circle.
    (``from actors import metrics`` imports a submodule, not the face.) The demo is
    written as a user writes it, and nothing the face imports imports the demo."""
    public = set(actors.__all__)
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            if path.relative_to(ROOT).as_posix() in USER_CODE:
                continue
            for node in ast.walk(ast.parse(path.read_text(), str(path))):
                if isinstance(node, ast.ImportFrom) and node.module == "actors":
                    assert not public & {a.name for a in node.names}, path
                if isinstance(node, ast.Import):
                    assert all(a.name != "actors" for a in node.names), path
