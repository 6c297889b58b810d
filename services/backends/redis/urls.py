"""Redis URLs: which topology a URL names, checked before any client is built.

Forms (``[user:password@]`` optional everywhere; ports default to 6379, Sentinel's to 26379)::

    redis://host:port/db            one server (also rediss:// for TLS, unix:///path.sock)
    redis+cluster://host:port[,host:port...][/0]
                                    Redis Cluster; the hosts are startup nodes (one is
                                    enough, more survive one being down); db 0 only
    redis+sentinel://host:port[,host:port...]/<service>[/db]
                                    the master of Sentinel service <service>; the hosts
                                    are sentinels, the password is the data nodes'

``rediss+cluster://`` and ``rediss+sentinel://`` use TLS (to the sentinels too). Sentinels
that require a password of their own take it as ``?sentinel_password=`` (and
``?sentinel_username=``); ``redact`` in ``services.backends`` hides it like the password.

Query options are checked before redis-py sees them: ``from_url`` lets them override the
keyword arguments we pass, so ``?ssl_cert_reqs=none`` would silently turn off TLS verification
and ``?socket_timeout=...`` would undo the bounded calls. Only options that cannot weaken our
settings are accepted (``ALLOWED_QUERY``); any other is a ``ConfigError`` naming it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Literal
from urllib.parse import parse_qsl, unquote, urlsplit

from services.errors import ConfigError

ALLOWED_QUERY = frozenset(
    {"db", "ssl_ca_certs", "ssl_ca_path", "ssl_certfile", "ssl_keyfile", "client_name"}
)
"""URL query options that choose a database, name certificates or label the connection."""
SENTINEL_QUERY = frozenset({"sentinel_username", "sentinel_password"})
"""Extra options of a Sentinel URL: the sentinels' own credentials."""
CLUSTER_SCHEMES = frozenset({"redis+cluster", "rediss+cluster"})
SENTINEL_SCHEMES = frozenset({"redis+sentinel", "rediss+sentinel"})

_HOST = re.compile(r"^(?:\[(?P<v6>[0-9A-Fa-f:.]+)\]|(?P<name>[^:\[\]/]+))(?::(?P<port>\d+))?$")
_SENTINEL_FORM = "redis+sentinel://host:26379[,host:port...]/<service>[/db]"

Hosts = tuple[tuple[str, int], ...]
"""``(host, port)`` pairs in the order the URL lists them."""


@dataclass(frozen=True)
class Topology:
    """A cluster or Sentinel URL, parsed: what the client factories need."""

    kind: Literal["cluster", "sentinel"]
    tls: bool
    hosts: Hosts
    username: str | None = None
    password: str | None = None
    db: int = 0
    service: str = ""
    options: dict[str, str] = field(default_factory=dict)
    """Accepted query options other than ``db`` and the sentinels' credentials."""
    sentinel_username: str | None = None
    sentinel_password: str | None = None


def check_query(url: str) -> None:
    """Raise ``ConfigError`` for a query option of a one-server URL outside ``ALLOWED_QUERY``."""
    _query(url, ALLOWED_QUERY)


def _query(url: str, allowed: frozenset[str]) -> dict[str, str]:
    options = {}
    for name, value in parse_qsl(urlsplit(url).query, keep_blank_values=True):
        if name not in allowed:
            raise ConfigError(
                f"the queue URL option {name!r} is not accepted: it would override Conveyor's "
                "own connection settings (TLS verification, timeouts, retries); allowed "
                f"options: {', '.join(sorted(allowed))}"
            )
        options[name] = value
    return options


def parse(url: str) -> Topology | None:
    """The topology a ``redis+cluster://`` or ``redis+sentinel://`` URL names; None for any
    other scheme (one server: redis-py's ``from_url`` reads those).

    Raises:
        ConfigError: the URL is malformed, or names options or a database the topology
            does not have; the message shows the expected form.
    """
    scheme = urlsplit(url).scheme
    if scheme in CLUSTER_SCHEMES:
        return _cluster(url, tls=scheme.startswith("rediss"))
    if scheme in SENTINEL_SCHEMES:
        return _sentinel(url, tls=scheme.startswith("rediss"))
    return None


def _cluster(url: str, *, tls: bool) -> Topology:
    parts = urlsplit(url)
    options = _query(url, ALLOWED_QUERY)
    _check_tls(options, tls=tls, scheme=parts.scheme)
    segments = [unquote(s) for s in parts.path.split("/") if s]
    db = _db(segments[0] if segments else None, options.pop("db", None))
    if len(segments) > 1 or db != 0:
        raise ConfigError(
            "a Redis Cluster has one database, 0: use "
            "redis+cluster://host:port[,host:port...] without a database number"
        )
    username, password, hosts = _netloc(parts.netloc, default_port=6379)
    return Topology("cluster", tls, hosts, username, password, options=options)


def _sentinel(url: str, *, tls: bool) -> Topology:
    parts = urlsplit(url)
    options = _query(url, ALLOWED_QUERY | SENTINEL_QUERY)
    _check_tls(options, tls=tls, scheme=parts.scheme)
    segments = [unquote(s) for s in parts.path.split("/") if s]
    if not segments or len(segments) > 2:
        raise ConfigError(f"name the Sentinel service in the queue URL: {_SENTINEL_FORM}")
    db = _db(segments[1] if len(segments) > 1 else None, options.pop("db", None))
    username, password, hosts = _netloc(parts.netloc, default_port=26379)
    sentinel_username = options.pop("sentinel_username", None) or None
    sentinel_password = options.pop("sentinel_password", None) or None
    return Topology(
        "sentinel",
        tls,
        hosts,
        username,
        password,
        db=db,
        service=segments[0],
        options=options,
        sentinel_username=sentinel_username,
        sentinel_password=sentinel_password,
    )


def _check_tls(options: dict[str, str], *, tls: bool, scheme: str) -> None:
    named = sorted(name for name in options if name.startswith("ssl_"))
    if named and not tls:
        secure = "rediss+" + scheme.partition("+")[2]
        raise ConfigError(f"the queue URL option {named[0]!r} needs TLS: use {secure}://")


def _db(in_path: str | None, in_query: str | None) -> int:
    if in_path is not None and in_query is not None and in_path != in_query:
        raise ConfigError(f"the queue URL names two databases: /{in_path} and ?db={in_query}")
    given = in_path if in_path is not None else in_query
    if given is None:
        return 0
    if not given.isdigit():
        raise ConfigError(f"the queue URL's database must be a number, not {given!r}")
    return int(given)


def _netloc(netloc: str, *, default_port: int) -> tuple[str | None, str | None, Hosts]:
    """``user``, ``password`` and the ``(host, port)`` list of ``[user:pass@]h:p[,h:p...]``."""
    credentials, at, hostlist = netloc.rpartition("@")
    username = password = None
    if at:
        user, colon, secret = credentials.partition(":")
        username = unquote(user) or None
        password = unquote(secret) if colon else None
    hosts = tuple(_host(item, default_port) for item in hostlist.split(","))
    return username, password, hosts


def _host(item: str, default_port: int) -> tuple[str, int]:
    match = _HOST.match(item.strip())
    port = int(match.group("port") or default_port) if match else 0
    if match is None or not 0 < port < 65536:
        raise ConfigError(
            f"the queue URL lists {item!r} where a host[:port] belongs "
            "(several are separated by commas: host1:7000,host2:7000)"
        )
    return match.group("v6") or match.group("name"), port
