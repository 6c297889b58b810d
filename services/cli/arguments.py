"""How words from the shell become Python values: ``ARG`` and ``KEY=VALUE``.

``conveyor enqueue resize photo.jpg 640`` calls ``resize("photo.jpg", 640)``: a word that
parses as JSON is that value, any other word is the string itself.
"""

from __future__ import annotations

import json
from typing import Any

import click


def parse_arg(text: str) -> Any:
    """An ARG that parses as JSON is that value (``3``, ``[1,2]``, ``"x"``); else the string."""
    try:
        return json.loads(text)
    except ValueError:
        return text


def parse_kwarg(text: str, option: str = "--kwarg") -> tuple[str, Any]:
    """``key=value`` with the value parsed like an ARG; errors name ``option``, the flag it came
    from."""
    key, sep, value = text.partition("=")
    if not sep or not key.isidentifier():
        raise click.BadParameter(f"{text!r} is not key=value", param_hint=option)
    return key, parse_arg(value)
