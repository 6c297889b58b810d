"""Load user objects named by ``module:attribute`` strings (``--jobs``, ``--feed``)."""

from __future__ import annotations

import importlib
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


def load_registry(path: str) -> Registry:
    """The ``Registry`` at ``path`` (``--jobs myapp.jobs:registry``)."""
    registry = load_object(path, what="--jobs")
    if not isinstance(registry, Registry):
        kind = type(registry).__name__
        raise ConfigError(f"--jobs {path!r} is a {kind}, not a conveyor Registry")
    return registry
