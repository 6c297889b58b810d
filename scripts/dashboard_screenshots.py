"""Screenshots of the dashboard's main pages for the README (``docs/dashboard/*.png``), taken
in Debian's headless Chromium from a real run: a redis-server on a free port, ``conveyor
serve`` sampling history every second, two ``conveyor worker`` supervisors in a group, and a
feed of real jobs (``scripts/dashboard_jobs.py``: image resizes under a concurrency limit,
emails under a rate limit, reports that sometimes fail and end as dead letters, a periodic
clean-up) for ``--minutes`` minutes, so the charts hold that many minutes of history.

Usage (from the repo root; needs /usr/bin/chromium and the dev extra's playwright)::

    .venv/bin/python scripts/dashboard_screenshots.py [--minutes 4] [--out docs/dashboard]
"""

from __future__ import annotations

import argparse
import random
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.redis_fixtures import benchmark_server
from tests.test_dashboard_browser import chromium, open_page
from tests.test_http_fixtures import ServeProcess
from tests.test_redis_system import WorkerProcess

JOBS = "scripts.dashboard_jobs:registry"
PAGES = ("overview", "queues", "queue/mail", "workers", "dead", "periodic", "limits")


def feed(service: ServeProcess, seconds: float) -> None:
    """Jobs into three queues, in waves, for ``seconds``."""
    call = service.call
    deadline, n = time.monotonic() + seconds, 0
    while time.monotonic() < deadline:
        wave = 40 if int(time.monotonic() / 30) % 2 else 10
        jobs = [{"job": "resize", "args": [random.randint(20, 120)]} for _ in range(wave)]
        call("POST", "/v1/queues/images/batches", {"jobs": jobs})
        mails = [{"job": "email", "args": [f"user{n + i}@example.com"]} for i in range(wave)]
        call("POST", "/v1/queues/mail/batches", {"jobs": mails})
        call("POST", "/v1/queues/reports/jobs", {"job": "report", "args": [n]})
        n += wave
        time.sleep(2)


def shoot(base: str, out: Path) -> None:
    with chromium(width=1400) as context:
        page = context.new_page()
        for route in PAGES:
            open_page(page, base, route)
            if route == "dead":
                page.select_option("#dead-queue", "reports")
                page.wait_for_selector("tr[data-letter]", timeout=15_000)
            path = out / f"{route.replace('/', '-')}.png"
            page.screenshot(path=str(path), full_page=True)
            print(f"wrote {path}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=4.0)
    parser.add_argument("--out", type=Path, default=Path("docs/dashboard"))
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    with benchmark_server(None) as server, tempfile.TemporaryDirectory() as folder:
        logs = Path(folder)
        service = ServeProcess(
            server.url, logs / "serve.log", ["--jobs", JOBS, "--history-interval", "1"]
        )
        queues = [
            "--queue",
            "images",
            "--queue",
            "mail",
            "--queue",
            "reports",
            "--queue",
            "maintenance",
        ]
        pool = ["-c", "3", "--group", "web"]
        workers = [
            WorkerProcess(server.url, logs / f"worker-{i}.log", [*queues, *pool], JOBS)
            for i in range(2)
        ]
        try:
            service.wait_ready()
            service.call("PUT", "/v1/groups/web", {"processes": 6})
            feed(service, args.minutes * 60)
            service.call("PUT", "/v1/queues/mail/pause")
            # The pictures are taken while jobs still flow, so the tables show work in hand.
            busy = threading.Thread(target=feed, args=(service, 30.0), daemon=True)
            busy.start()
            time.sleep(5)
            shoot(service.base, args.out)
            busy.join()
        finally:
            for worker in workers:
                worker.cleanup()
            service.kill()


if __name__ == "__main__":
    main()
