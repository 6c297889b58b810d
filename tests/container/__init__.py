"""The container tests: a private Docker engine, the images built from a Debian base, and the
compose stack run on them (``pytest -m container tests/container``)."""
