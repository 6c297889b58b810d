"""The dashboard in a real headless Chromium (Debian's ``chromium``, driven by Playwright; never
a downloaded browser), served by a real ``conveyor serve`` on a real ``redis-server``, with a
real ``conveyor worker``: pages load without console errors, charts hold the history of jobs
that ran, and the page's actions change the backend; read-only mode hides and refuses them.

Without ``/usr/bin/chromium`` these tests fail (``.ci/run`` installs it), they never skip.
"""

from __future__ import annotations

import struct
import tempfile
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import BrowserContext, ConsoleMessage, Page, sync_playwright

from services.backends import open_queue
from tests.redis_fixtures import MakeQueue
from tests.test_http_fixtures import TOKEN, StartServe, serve, wait_for
from tests.test_redis_system import WorkerProcess

pytestmark = [pytest.mark.redis]
__all__ = ["serve"]  # the fixture, imported for pytest

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
DONE_BLUE = (0x25, 0x63, 0xEB)
"""The done/s series' stroke (static/charts.js)."""
PAGES = ("overview", "queues", "workers", "dead", "periodic", "limits")


@contextmanager
def chromium(width: int = 1280, height: int = 900) -> Iterator[BrowserContext]:
    """Debian's Chromium, headless, with a fresh profile of its own (also for the screenshots
    script)."""
    assert Path(CHROMIUM).exists(), "chromium is missing: apt-get install chromium"
    with tempfile.TemporaryDirectory() as profile, sync_playwright() as driver:
        context = driver.chromium.launch_persistent_context(
            profile,
            executable_path=CHROMIUM,
            args=CHROMIUM_ARGS,
            viewport={"width": width, "height": height},
        )
        try:
            yield context
        finally:
            context.close()


@pytest.fixture(scope="module")
def browser() -> Iterator[BrowserContext]:
    """One Chromium for the module."""
    with chromium() as context:
        yield context


@pytest.fixture
def errors() -> list[str]:
    """What the page logged as errors (console errors and uncaught exceptions)."""
    return []


@pytest.fixture
def page(browser: BrowserContext, errors: list[str]) -> Iterator[Page]:
    tab = browser.new_page()

    def console(message: ConsoleMessage) -> None:
        if message.type == "error":
            errors.append(message.text)

    tab.on("console", console)
    tab.on("pageerror", lambda error: errors.append(str(error)))
    yield tab
    tab.close()


def open_page(page: Page, base: str, route: str) -> None:
    page.goto(f"{base}/dashboard/#/{route}")
    shown = f"main[data-ready='1'][data-route='{route.split('/', maxsplit=1)[0]}']"
    page.wait_for_selector(shown, timeout=15_000)


def pixels_of(png: bytes, colour: tuple[int, int, int], within: int = 40) -> int:
    """Pixels of an 8-bit RGB(A) PNG (Chromium's screenshots) close to ``colour``."""
    width, height, depth, png_type = struct.unpack(">IIBB", png[16:26])
    assert depth == 8 and png_type in (2, 6), (depth, png_type)  # RGB or RGBA
    size = 4 if png_type == 6 else 3
    raw, pos, chunks = b"", 8, []
    while pos < len(png):
        length, kind = struct.unpack(">I4s", png[pos : pos + 8])
        if kind == b"IDAT":
            chunks.append(png[pos + 8 : pos + 8 + length])
        pos += 12 + length
    raw = zlib.decompress(b"".join(chunks))
    stride, rows, prev = width * size, [], bytearray(width * size)
    for y in range(height):
        kind, line = (
            raw[y * (stride + 1)],
            bytearray(raw[y * (stride + 1) + 1 : (y + 1) * (stride + 1)]),
        )
        for i in range(stride):
            a = line[i - size] if i >= size else 0
            b, c = prev[i], prev[i - size] if i >= size else 0
            line[i] = (line[i] + _predict(kind, a, b, c)) & 0xFF
        rows.append(line)
        prev = line
    return sum(
        1
        for line in rows
        for x in range(0, stride, size)
        if all(abs(line[x + k] - colour[k]) <= within for k in range(3))
    )


def _predict(kind: int, a: int, b: int, c: int) -> int:
    if kind == 0:
        return 0
    if kind == 1:
        return a
    if kind == 2:
        return b
    if kind == 3:
        return (a + b) // 2
    p = a + b - c
    pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
    return a if pa <= pb and pa <= pc else (b if pb <= pc else c)


def chart_data(page: Page, chart: str) -> list[list[Any]]:
    return page.evaluate(f"window.conveyor.charts[{chart!r}].data")  # type: ignore[no-any-return]


def test_pages_load_and_charts_show_the_jobs_that_ran(
    serve: StartServe, redis_url: str, page: Page, errors: list[str], tmp_path: Path
) -> None:
    # Given a service sampling history twice a second, 30 jobs it saw waiting, then a worker
    service = serve("--history-interval", "0.5").wait_ready()
    for i in range(30):
        answer = service.call("POST", "/v1/queues/charted/jobs", {"job": "echo", "args": [i]})
        assert answer[0] == 202

    def hour(series: str) -> list[Any]:
        return service.call("GET", "/v1/dashboard")[1]["charts"]["hour"][series]  # type: ignore[no-any-return]

    wait_for("the sampler to see the backlog", lambda: any(hour("backlog")))
    worker = WorkerProcess(
        redis_url,
        tmp_path / "worker.log",
        ["--queue", "charted", "-c", "1"],
        jobs="tests.jobs:registry",
    )
    try:
        wait_for("30 jobs done", lambda: service.call("GET", "/v1/queues/charted")[1]["done"] == 30)
        wait_for("the sampler to see them done", lambda: any(hour("done_per_s")))
        wait_for("the worker to push their latency", lambda: any(hour("start_p50_s")))
        # When every page is opened
        for route in PAGES:
            open_page(page, service.base, route)
        open_page(page, service.base, "overview")
        # Then none logged an error, and the hour's throughput chart holds the jobs
        assert errors == []
        t, done_per_s, _dead = chart_data(page, "hour-throughput")
        assert len(t) == 60
        assert max(v or 0 for v in done_per_s) > 0
        backlog = chart_data(page, "hour-backlog")
        assert len(backlog) == 3
        # And the enqueue-to-start chart holds the jobs' p50/p95/p99 (the worker's pushes)
        _t, p50, p95, p99 = chart_data(page, "hour-latency")
        top = [max(v or 0 for v in column) for column in (p50, p95, p99)]
        assert 0 < top[0] <= top[1] <= top[2]
        assert len(chart_data(page, "hour-waiting")) == 2  # the oldest waiting age, apart
        # And the chart drawn is not blank: its done/s series (blue) is on the screenshot
        shot = page.locator("#chart-hour-throughput canvas").screenshot()  # no legend
        assert pixels_of(shot, DONE_BLUE) >= 8  # at least one drawn point (5 px across)
        control = page.locator("#chart-hour-latency canvas").screenshot()
        assert pixels_of(control, DONE_BLUE) == 0  # that blue is the done/s series' alone
        assert page.locator("tr[data-queue='charted']").count() == 1
    finally:
        worker.cleanup()


def test_actions_on_the_page_change_the_backend(
    serve: StartServe, redis_url: str, make_queue: MakeQueue, page: Page, errors: list[str]
) -> None:
    # Given a group with a total, a queue with a job, and a dead letter
    service = serve().wait_ready()
    backend = open_queue(redis_url)
    try:
        assert service.call("PUT", "/v1/groups/pool", {"processes": 1})[0] == 200
        assert service.call("POST", "/v1/queues/acted/jobs", {"job": "echo"})[0] == 202
        taker = make_queue()
        [delivery] = taker.get(["acted"], max_count=1, timeout_s=5)
        taker.dead_letter(delivery, "boom")
        assert backend.counts("acted").dead == 1

        # When the group is scaled to 3 on the workers page
        open_page(page, service.base, "workers")
        row = page.locator("tr[data-group='pool']")
        row.locator("[data-processes]").fill("3")
        row.locator("[data-scale]").click()

        # Then the backend holds the new total
        def desired() -> int | None:
            found = backend.fleet().desired("pool")
            return None if found is None else found.processes

        wait_for("desired 3", lambda: desired() == 3)

        # When autoscale bounds are set on the same row, once the page shows the new total
        # (it redraws after an action: inputs filled before that would be wiped)
        row = page.locator("tr[data-group='pool']")
        page.wait_for_selector("tr[data-group='pool'] td[data-desired]:text-is('3')")
        row.locator("[data-min]").fill("2")
        row.locator("[data-max]").fill("5")
        row.locator("[data-per]").fill("10")
        row.locator("[data-auto]").click()

        # Then the group is autoscaled within them
        def bounds() -> tuple[int, int, int] | None:
            found = backend.fleet().desired("pool")
            scale = found.autoscale if found else None
            return (scale.minimum, scale.maximum, scale.backlog_per_worker) if scale else None

        wait_for("autoscale bounds", lambda: bounds() == (2, 5, 10))

        # When the queue is paused on the overview
        open_page(page, service.base, "overview")
        page.locator("[data-pause='acted']").click()
        wait_for("paused", lambda: "acted" in backend.fleet().paused())
        page.wait_for_selector("[data-resume='acted']")

        # When the dead letter is requeued on the dead letters page
        open_page(page, service.base, "dead")
        page.select_option("#dead-queue", "acted")
        page.locator(f"[data-requeue='{delivery.job_id}']").click()
        wait_for("requeued", lambda: backend.counts("acted").waiting == 1)
        assert backend.dead_letters("acted") == []

        # When the job, waiting again, is cancelled from its queue's page
        open_page(page, service.base, "queue/acted")
        page.locator(f"[data-cancel='{delivery.job_id}']").click()
        # Then it is dead, cancelled, and waits no more
        wait_for("cancelled", lambda: backend.counts("acted").waiting == 0)
        status = backend.status(delivery.job_id)
        assert status is not None and (status.status, status.error) == ("dead", "cancelled")
        assert errors == []
    finally:
        backend.close()


def test_read_only_mode_hides_actions_and_refuses_them(serve: StartServe, page: Page) -> None:
    # Given a read-only dashboard and a queue
    service = serve("--dashboard-read-only").wait_ready()
    assert service.call("POST", "/v1/queues/watched/jobs", {"job": "echo"})[0] == 202
    # When the overview is shown
    open_page(page, service.base, "overview")
    # Then it says read-only and offers no pause
    assert page.locator("#mode").inner_text() == "read-only"
    assert page.locator("tr[data-queue='watched']").count() == 1
    assert page.locator("[data-pause]").count() == 0
    # And a change sent from the page anyway is refused, while a script's passes
    status = page.evaluate("fetch('/v1/queues/watched/pause', {method: 'PUT'}).then(r => r.status)")
    assert status == 403
    assert service.call("PUT", "/v1/queues/watched/pause")[0] == 200


def test_a_service_with_a_token_asks_for_it_once(
    serve: StartServe, page: Page, tmp_path: Path
) -> None:
    # Given a service that needs a bearer token
    token_file = tmp_path / "token"
    token_file.write_text(TOKEN)
    service = serve("--token-file", str(token_file)).wait_ready()
    auth = {"Authorization": f"Bearer {TOKEN}"}
    assert service.call("POST", "/v1/queues/guarded/jobs", {"job": "echo"}, auth)[0] == 202
    # When the page is opened, it asks for the token; once given, the page shows the queue
    page.goto(f"{service.base}/dashboard/#/overview")
    page.locator("#token").fill(TOKEN)
    page.locator("#token-save").click()
    page.wait_for_selector("main[data-ready='1'][data-route='overview']", timeout=15_000)
    assert page.locator("tr[data-queue='guarded']").count() == 1
    # And its actions carry the token (a pause goes through)
    page.locator("[data-pause='guarded']").click()
    wait_for(
        "paused", lambda: service.call("GET", "/v1/fleet", headers=auth)[1]["queues"][0]["paused"]
    )
