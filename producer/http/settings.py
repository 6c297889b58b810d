"""``ServeSettings``: what ``conveyor serve`` decided from its flags, and the authentication rule.

A service that other machines can reach must not accept jobs from anyone: binding an address
that is not loopback needs a bearer token, unless the operator says ``--no-auth`` (for a
container whose port is published on the host's loopback only, say). ``check_auth`` applies
that rule and raises ``ConfigError`` with what to do.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field

from services.errors import ConfigError

DEFAULT_MAX_BODY_BYTES = 4 * 1024 * 1024
"""Largest request body accepted (a batch of ~10,000 small jobs), else 413."""
DEFAULT_MAX_BATCH = 10_000


@dataclass(frozen=True)
class ServeSettings:
    """How the HTTP service listens and what it accepts."""

    host: str = "127.0.0.1"
    port: int = 8000
    token: str | None = field(default=None, repr=False)
    """The bearer token every request but health checks must carry; None: no authentication."""
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
    max_batch: int = DEFAULT_MAX_BATCH
    """Most jobs one batch request may carry."""
    access_log: bool = True
    shutdown_timeout_s: float = 10.0
    """After SIGTERM, how long requests in flight may take before connections are closed."""
    dashboard: bool = True
    """Serve the dashboard's pages under ``/dashboard/`` (their data comes from the API)."""
    dashboard_read_only: bool = False
    """The dashboard shows no actions, and the API refuses state changes sent by a browser."""
    history_interval_s: float = 10.0
    """How often the service samples each queue into the backend's history (0: never)."""


def is_loopback(host: str) -> bool:
    """Whether binding ``host`` keeps the service reachable from this machine only.

    A host name other than ``localhost`` counts as reachable from elsewhere: what it resolves
    to is not this function's to know.
    """
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_auth(settings: ServeSettings, *, no_auth: bool) -> None:
    """Apply the authentication rule to ``settings`` (``no_auth``: the operator's explicit
    ``--no-auth``).

    Raises:
        ConfigError: a token and ``--no-auth`` together, an empty token, or no token for an
            address that is not loopback without ``--no-auth``.
    """
    token = settings.token
    if token is not None and not token.strip():
        raise ConfigError("the bearer token is empty: put the token in --token-file")
    if token is not None and no_auth:
        raise ConfigError("--no-auth and a bearer token contradict each other: give one")
    if token is None and not no_auth and not is_loopback(settings.host):
        raise ConfigError(
            f"conveyor serve would listen on {settings.host}, which other machines can reach: "
            "give it a bearer token with --token-file PATH (or the CONVEYOR_TOKEN variable), "
            "or pass --no-auth to serve without one (only where the port is not exposed)"
        )
