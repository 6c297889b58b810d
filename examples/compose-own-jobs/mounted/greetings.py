"""Job functions that live outside the image: compose mounts this folder at /jobs and puts it
on PYTHONPATH (mount.yml), and the consumers run ``--jobs greetings:registry``."""

from services.registry import Registry

registry = Registry()


@registry.job
def greet(name: str) -> str:
    return f"hello, {name}"
