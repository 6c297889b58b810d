"""The seams the design depends on, checked by walking the import statements of every module.

* Only the Redis backend modules import ``redis``; only the backends package imports a backend.
* The consumer and producer never import a backend module: they see ``services.protocol``.
* Importing any package module starts nothing: no thread, no process, no signal handler.
"""

from __future__ import annotations

import ast
import importlib
import signal
import threading
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("services", "producer", "consumer")


def modules() -> list[Path]:
    return sorted(path for package in PACKAGES for path in (ROOT / package).rglob("*.py"))


def imported_names(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def module_name(path: Path) -> str:
    return ".".join(path.relative_to(ROOT).with_suffix("").parts)


@pytest.mark.parametrize("path", modules(), ids=module_name)
def test_only_redis_backend_modules_import_redis(path: Path) -> None:
    redis_imports = {n for n in imported_names(path) if n == "redis" or n.startswith("redis.")}
    if module_name(path).startswith("services.backends.redis."):
        return
    assert not redis_imports, f"{module_name(path)} imports {redis_imports}"


@pytest.mark.parametrize("path", modules(), ids=module_name)
def test_no_module_outside_the_backends_imports_a_backend(path: Path) -> None:
    name = module_name(path)
    if name.startswith("services.backends"):
        return
    backends = {n for n in imported_names(path) if n.startswith("services.backends.")}
    assert not backends, f"{name} imports backend modules {backends}; use open_queue()"


@pytest.mark.parametrize("path", modules(), ids=module_name)
def test_the_consumer_never_imports_a_backend_or_rq(path: Path) -> None:
    if not module_name(path).startswith("consumer"):
        return
    names = imported_names(path)
    forbidden = {n for n in names if n.split(".")[0] in {"redis", "rq", "fakeredis"}}
    assert not forbidden, f"{module_name(path)} imports {forbidden}"


def test_importing_every_module_starts_nothing() -> None:
    # Given the threads and signal handlers before the imports
    threads_before = threading.active_count()
    handlers_before = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGINT)}
    # When every module of the packages is imported
    for path in modules():
        importlib.import_module(module_name(path).removesuffix(".__init__"))
    # Then no thread was started and no signal handler installed
    assert threading.active_count() == threads_before
    assert {s: signal.getsignal(s) for s in handlers_before} == handlers_before
