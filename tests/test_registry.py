"""The job registry, and loading registries and other objects from ``module:attribute`` paths."""

from __future__ import annotations

import functools
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from services.errors import (
    ConfigError,
    ConveyorError,
    JobArgumentsError,
    JobDefinitionError,
    UnknownJobError,
)
from services.loading import load_object, load_registry
from services.registry import DEFAULT_MAX_RETRIES, Registry


# -- registering ------------------------------------------------------------------------------
def test_bare_decorator_registers_by_function_name() -> None:
    # Given a registry
    registry = Registry()

    # When a function is decorated bare
    @registry.job
    def resize(path: str, width: int) -> str:
        return f"{path}@{width}"

    # Then it is registered under its __name__ with the defaults, and still callable as is
    spec = registry.get("resize")
    assert spec.func is resize
    assert (spec.name, spec.is_async) == ("resize", False)
    assert (spec.max_retries, spec.timeout_s) == (DEFAULT_MAX_RETRIES, None)
    assert resize("a.jpg", 10) == "a.jpg@10"
    assert "resize" in registry and len(registry) == 1


def test_decorator_with_options() -> None:
    # Given a registry
    registry = Registry()

    # When a function is decorated with a name and options
    @registry.job(name="mail.send", max_retries=5, timeout=30)
    async def send(to: str) -> None: ...

    # Then the options are on its spec, the function name is not registered
    spec = registry.get("mail.send")
    assert spec.func is send
    assert (spec.max_retries, spec.timeout_s, spec.is_async) == (5, 30, True)
    assert "send" not in registry
    assert registry.names() == ["mail.send"]


def test_sync_and_async_detection() -> None:
    # Given sync, async, and partial-of-async functions
    registry = Registry()

    def plain() -> None: ...

    async def coro() -> None: ...

    def gen() -> Iterator[int]:
        yield 1

    # When they are registered
    registry.add(plain)
    registry.add(coro)
    registry.add(gen)
    registry.add(functools.partial(coro), name="partial_coro")

    # Then only coroutine functions are async
    flags = {spec.name: spec.is_async for spec in registry}
    assert flags == {"plain": False, "coro": True, "gen": False, "partial_coro": True}


def test_names_are_sorted_and_iteration_yields_specs() -> None:
    registry = Registry()
    for name in ("b", "c", "a"):
        registry.add(lambda: None, name=name)
    assert registry.names() == ["a", "b", "c"]
    assert sorted(spec.name for spec in registry) == ["a", "b", "c"]


def test_duplicate_names_are_rejected() -> None:
    # Given a registered job
    registry = Registry()

    @registry.job
    def resize() -> None: ...

    # When another function takes the same name, bare or by name=
    # Then it is rejected, and the first registration stands
    with pytest.raises(JobDefinitionError, match=r"^job 'resize' is already registered$"):

        @registry.job
        def resize() -> None: ...

    with pytest.raises(JobDefinitionError, match="already registered"):
        registry.add(print, name="resize")
    assert len(registry) == 1


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"max_retries": -1}, r"^job 'work': max_retries must be >= 0$"),
        ({"timeout": 0}, r"^job 'work': timeout must be > 0 seconds$"),
        ({"timeout": -2.5}, r"^job 'work': timeout must be > 0 seconds$"),
    ],
)
def test_bad_options_are_rejected(options: dict[str, Any], message: str) -> None:
    # Given a registry
    registry = Registry()

    def work() -> None: ...

    # When a job is registered with a bad option / Then nothing is registered
    with pytest.raises(JobDefinitionError, match=message):
        registry.job(**options)(work)
    assert "work" not in registry


def test_zero_retries_is_a_valid_option() -> None:
    registry = Registry()
    assert registry.add(lambda: None, name="once", max_retries=0).max_retries == 0


def test_not_callable_is_rejected() -> None:
    registry = Registry()
    with pytest.raises(JobDefinitionError, match=r"^42 is not callable$"):
        registry.add(42)  # type: ignore[arg-type]
    assert len(registry) == 0


def test_callable_without_a_name_needs_name() -> None:
    # Given a callable that has no __name__
    registry = Registry()
    unnamed = functools.partial(print, "x")

    # When registered without name= / Then the error says to pass one
    with pytest.raises(JobDefinitionError, match=r"has no __name__; pass name=$"):
        registry.add(unnamed)
    assert registry.add(unnamed, name="say").name == "say"


def test_get_unknown_job() -> None:
    registry = Registry()
    registry.add(lambda: None, name="known")
    with pytest.raises(UnknownJobError, match=r"^unknown job 'nope'$"):
        registry.get("nope")
    assert "nope" not in registry


def test_registries_are_independent() -> None:
    # Nothing global: two registries may hold the same name
    first, second = Registry(), Registry()
    first.add(lambda: 1, name="same")
    second.add(lambda: 2, name="same")
    assert first.get("same").func() == 1 and second.get("same").func() == 2


# -- checking arguments -----------------------------------------------------------------------
def add(a: int, b: int, *, scale: int = 1) -> int:
    return (a + b) * scale


def anything(*args: Any, **kwargs: Any) -> None: ...


@pytest.mark.parametrize(
    ("args", "kwargs"),
    [((1, 2), {}), ((1,), {"b": 2}), ((), {"a": 1, "b": 2, "scale": 3})],
)
def test_check_arguments_accepts_what_binds(args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
    spec = Registry().add(add)
    spec.check_arguments(args, kwargs)  # does not raise
    assert add(*args, **kwargs) >= 3  # the same call really works


@pytest.mark.parametrize(
    ("args", "kwargs", "detail"),
    [
        ((1,), {}, "missing a required argument: 'b'"),
        ((), {}, "missing a required argument: 'a'"),
        ((1, 2, 3), {}, "too many positional arguments"),
        ((1, 2), {"colour": "red"}, "got an unexpected keyword argument 'colour'"),
        ((1, 2), {"a": 1}, "multiple values for argument 'a'"),
        ((1, 2, 3), {"scale": 2}, "too many positional arguments"),
    ],
)
def test_check_arguments_rejects_what_does_not_bind(
    args: tuple[Any, ...], kwargs: dict[str, Any], detail: str
) -> None:
    # Given a registered job with two required arguments and a keyword-only one
    spec = Registry().add(add)

    # When the arguments do not fit / Then the error names the job and what is wrong
    with pytest.raises(JobArgumentsError) as caught:
        spec.check_arguments(args, kwargs)
    assert str(caught.value) == f"job 'add': {detail}"
    assert isinstance(caught.value, ConveyorError)


def test_check_arguments_of_variadic_job_accepts_anything() -> None:
    spec = Registry().add(anything)
    spec.check_arguments((1, "two", [3]), {"four": 4})


# -- loading ----------------------------------------------------------------------------------
@pytest.fixture
def user_modules(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A directory on sys.path where a test writes the modules it loads."""
    monkeypatch.syspath_prepend(str(tmp_path))
    yield tmp_path
    for name in [n for n in sys.modules if n.startswith("conveyor_user_")]:
        del sys.modules[name]


def test_load_registry_of_the_demo() -> None:
    from services import demo

    registry = load_registry("services.demo:registry")
    assert registry is demo.registry
    assert "checksum" in registry


def test_load_object_walks_dotted_attributes() -> None:
    assert load_object("services.registry:Registry.get", what="--x") is Registry.get


@pytest.mark.parametrize("path", ["services.demo", "services.demo:", ":registry", ""])
def test_malformed_paths(path: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_registry(path)
    assert str(caught.value) == f"--jobs {path!r} must look like 'package.module:attribute'"


def test_missing_module() -> None:
    with pytest.raises(ConfigError) as caught:
        load_registry("conveyor_no_such_module.jobs:registry")
    message = str(caught.value)
    assert message.startswith(
        "--jobs 'conveyor_no_such_module.jobs:registry': "
        "cannot import 'conveyor_no_such_module.jobs': "
    )
    assert "No module named 'conveyor_no_such_module'" in message
    assert "\n" not in message


def test_module_that_fails_to_import(user_modules: Path) -> None:
    # Given a module that raises while it is imported
    (user_modules / "conveyor_user_broken.py").write_text("raise RuntimeError('boom at import')\n")

    # When it is loaded / Then the import error is wrapped, with its message
    with pytest.raises(
        ConfigError, match=r"cannot import 'conveyor_user_broken': .*boom at import"
    ):
        load_object("conveyor_user_broken:thing", what="--feed")


def test_missing_attribute() -> None:
    with pytest.raises(ConfigError) as caught:
        load_registry("services.demo:no_such_registry")
    assert str(caught.value) == (
        "--jobs 'services.demo:no_such_registry': 'services.demo' has no 'no_such_registry'"
    )


def test_missing_nested_attribute() -> None:
    with pytest.raises(ConfigError, match=r"has no 'registry\.nope'$"):
        load_object("services.demo:registry.nope", what="--jobs")


@pytest.mark.parametrize(
    ("path", "kind"),
    [("services.demo:feed", "function"), ("services.registry:Registry", "type")],
)
def test_object_that_is_not_a_registry(path: str, kind: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_registry(path)
    assert str(caught.value) == f"--jobs {path!r} is a {kind}, not a conveyor Registry"


def test_loading_a_user_registry(user_modules: Path) -> None:
    # Given a user module with a registry
    (user_modules / "conveyor_user_jobs.py").write_text(
        "from services.registry import Registry\n"
        "registry = Registry()\n"
        "@registry.job\n"
        "def hello(name):\n"
        "    return 'hi ' + name\n"
    )

    # When it is loaded by path / Then its jobs are there
    registry = load_registry("conveyor_user_jobs:registry")
    assert registry.get("hello").func("bob") == "hi bob"
