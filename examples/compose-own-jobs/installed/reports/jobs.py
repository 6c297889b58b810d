"""The jobs of the ``reports`` package: installed into the image, found by ``--jobs
reports.jobs:registry``."""

from services.registry import Registry

registry = Registry()


@registry.job
def word_count(text: str) -> int:
    return len(text.split())
