"""``conveyor bench``'s http phase against a real ``conveyor serve`` and a real redis-server:
the figures, the jobs on the queue, and the failures that must stop it (exit 1, a clear line).

Speed is never asserted: only that each figure is a positive, finite number.
"""

from __future__ import annotations

import json
import re
import socket

from services.backends import open_queue
from services.settings import QueueSettings
from tests.test_bench_cli import bench, figures_of

SMALL = ["--jobs", "250", "--only", "http"]
HTTP = {"http_enqueue_single", "http_enqueue_batch"}


def test_bench_http_on_its_own_redis_server_measures_single_and_batched_posts() -> None:
    # When conveyor bench runs only its http phase on a redis-server it starts itself
    result = bench(*SMALL, "--redis-server", "auto", "--json")
    # Then both HTTP figures are measured, in jobs/s, and nothing else
    figures = figures_of(result)
    assert figures.keys() == HTTP
    document = json.loads(result.stdout)
    assert {document["figures"][name]["unit"] for name in HTTP} == {"jobs/s"}
    assert "keep-alive" in document["figures"]["http_enqueue_single"]["detail"]


def test_bench_http_puts_every_posted_job_on_the_queue(redis_url: str) -> None:
    # When conveyor bench runs its http phase on a server the test can read afterwards
    result = bench(*SMALL, "--url", redis_url, "--json")
    figures_of(result)
    # Then one queue of its own holds every job: the single ones, the batched ones (100 a
    # POST) and one warm-up POST per client (4)
    details = [f["detail"] for f in json.loads(result.stdout)["figures"].values()]
    assert [detail.split(" jobs")[0] for detail in details] == ["50", "200"]
    backend = open_queue(redis_url, QueueSettings())
    try:
        queues = [name for name in backend.queues() if name.endswith("-http")]
        assert len(queues) == 1
        assert backend.depth(queues[0]) == 50 + 200 + 4
    finally:
        backend.close()


def test_bench_http_fails_when_the_jobs_do_not_reach_the_queue(redis_url: str) -> None:
    # Given a conveyor serve that answers 202 but stores the jobs in another database
    elsewhere = redis_url.rsplit("/", 1)[0] + "/1"
    # When conveyor bench measures it
    result = bench(*SMALL, "--url", redis_url, f"--serve-arg=--url={elsewhere}")
    # Then there is no figure: it exits 1 and says the queue does not hold the jobs
    assert result.returncode == 1, result.stderr
    assert re.search(r"queue bench-\w+-http holds 0 jobs after 254 were POSTed", result.stderr)
    assert "http_enqueue" not in result.stdout


def test_bench_http_exits_1_when_conveyor_serve_rejects_an_option() -> None:
    # When the http phase's conveyor serve is given an option it does not know
    result = bench(*SMALL, "--redis-server", "auto", "--serve-arg=--no-such-option")
    # Then the bench exits 1 with serve's own complaint, and prints no figure
    assert result.returncode == 1
    assert "conveyor serve exited with code 2 before /healthz answered" in result.stderr
    assert "No such option '--no-such-option'" in result.stderr
    assert result.stdout == ""


def test_bench_http_exits_1_when_the_port_is_taken() -> None:
    # Given a port another program listens on
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        # When the http phase's conveyor serve is told to listen there
        result = bench(*SMALL, "--redis-server", "auto", f"--serve-arg=--port={port}")
    # Then the bench exits 1 and says the server could not start
    assert result.returncode == 1
    assert "conveyor serve exited with code" in result.stderr
    assert "address already in use" in result.stderr.lower()


def test_bench_http_asked_for_on_memory_is_a_usage_error() -> None:
    # When the http phase is asked for by name on memory://, which conveyor serve refuses
    result = bench(*SMALL)
    # Then the bench exits 2 and says why, before measuring anything
    assert result.returncode == 2
    assert "--only http: conveyor serve refuses memory://" in result.stderr
