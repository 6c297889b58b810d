"""Load user objects named by ``module:attribute`` strings (``--jobs``, ``--feed``).

The current working directory is put first on the import path before a module is imported,
as ``python -m`` does (and RQ and Celery): ``conveyor worker --jobs myapp.jobs:registry``
run from the project folder finds ``myapp`` there. Worker and producer processes load their
objects through here too, so spawned children get the same path.
"""

from __future__ import annotations

import importlib
import os
import sys
from typing import Any

from services.errors import ConfigError
from services.registry import Registry


def load_object(path: str, *, what: str) -> Any:
    """Import ``module`` and return its ``attribute`` (dots walk into nested attributes).

    Raises:
        ConfigError: the path is malformed, the module fails to import, or the name is missing.
    """
    module_name, sep, attribute = path.partition(":")
    if not sep or not module_name or not attribute:
        raise ConfigError(f"{what} {path!r} must look like 'package.module:attribute'")
    _working_directory_importable()
    try:
        target: Any = importlib.import_module(module_name)
    except Exception as exc:
        raise ConfigError(f"{what} {path!r}: cannot import {module_name!r}: {exc!r}") from exc
    for part in attribute.split("."):
        try:
            target = getattr(target, part)
        except AttributeError:
            raise ConfigError(f"{what} {path!r}: {module_name!r} has no {attribute!r}") from None
    return target


def _working_directory_importable() -> None:
    cwd = os.getcwd()
    # "" is how ``python -m`` and the interactive interpreter spell the working directory.
    if "" not in sys.path and cwd not in sys.path:
        sys.path.insert(0, cwd)


def load_registry(path: str, *, max_result_bytes: int | None = None) -> Registry:
    """The ``Registry`` at ``path`` (``--jobs myapp.jobs:registry``).

    With ``max_result_bytes``, a copy whose jobs may return at most that many bytes.
    """
    registry = load_object(path, what="--jobs")
    if not isinstance(registry, Registry):
        kind = type(registry).__name__
        raise ConfigError(f"--jobs {path!r} is a {kind}, not a conveyor Registry")
    if max_result_bytes is not None:
        return registry.with_result_cap(max_result_bytes)
    return registry
