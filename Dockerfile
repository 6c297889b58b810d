# Conveyor in one image: the worker (the default command) and the HTTP producer service.
#
#   docker build -t conveyor .
#   docker build -t conveyor --build-arg BASE=my-debian-python .
#
# BASE is any Debian-like image with apt and Python 3.11 that can make a venv: python:3.11-slim
# (the default), or plain Debian with its python3.11 and python3-venv packages (the container
# test builds that one with debootstrap, as tests/container/images.py shows).
ARG BASE=python:3.11-slim
FROM ${BASE}

# tini is PID 1: it passes SIGTERM and SIGINT on to conveyor (which drains its jobs, then
# exits) and reaps any orphan that would otherwise stay a zombie. It is in the image rather
# than left to `docker run --init` / compose `init: true`, so plain `docker run`, Kubernetes
# and both compose versions get the same behaviour. No -g: the signal must reach the
# supervisor only; it stops its own worker processes in order.
RUN apt-get update \
 && apt-get install -y --no-install-recommends tini \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --user-group --home-dir /app --no-create-home conveyor \
 && mkdir /app && chown conveyor:conveyor /app

ENV VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python3 -m venv /opt/venv

# The dependencies first, and what builds the project, read from pyproject.toml: these layers
# are rebuilt only when that file changes, not on every edit of the code.
COPY pyproject.toml /src/
RUN python -c "import tomllib; p = tomllib.load(open('/src/pyproject.toml', 'rb')); print(*p['project']['dependencies'], *p['build-system']['requires'], sep='\n')" > /tmp/requirements.txt \
 && pip install -r /tmp/requirements.txt \
 && rm /tmp/requirements.txt

EXPOSE 8000 9100
ENTRYPOINT ["/usr/bin/tini", "--"]
CMD ["conveyor", "worker", "--url", "redis://redis:6379/0", "--jobs", "services.demo:registry"]
WORKDIR /app

# Then the project itself (.dockerignore lets only pyproject, README and the packages in),
# built with what the layer above installed: nothing is downloaded on a code change.
COPY . /src/
RUN pip install --no-deps --no-build-isolation /src
USER conveyor
