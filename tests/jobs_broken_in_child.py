"""A registry that imports in the parent but not in a worker process: a child that cannot boot."""

import multiprocessing

from services.registry import Registry

if multiprocessing.parent_process() is not None:
    raise RuntimeError("this registry refuses to load in a worker process")

registry = Registry()
