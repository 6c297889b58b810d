"""``services.gauges``: the rate from a ring of samples and the stamp of a body, pure, on a
fixed clock."""

from __future__ import annotations

from services.codec import encode_job
from services.gauges import enqueued_at, rate_from, should_sample
from services.job import Job


def test_rate_is_growth_since_the_oldest_sample_inside_the_window() -> None:
    # Given samples at 100 s (10 done), 130 s (40), 159.5 s (70), newest first
    ring = [(159.5, 70), (130.0, 40), (100.0, 10)]
    # When read at 160 s with 100 done: (100 - 10) / 60 over the minute
    assert rate_from(ring, 160.0, 100, 60.0) == 1.5
    # Then a sample just outside the window is not used, nor one under a second old
    assert rate_from(ring, 161.0, 100, 60.0) == (100 - 40) / 31.0
    assert rate_from([(159.5, 70)], 160.0, 100, 60.0) is None
    assert rate_from([], 160.0, 100, 60.0) is None


def test_a_sample_is_added_at_most_once_a_second() -> None:
    assert should_sample([], 5.0)
    assert not should_sample([(4.5, 1)], 5.0)
    assert should_sample([(4.0, 1)], 5.0)


def test_enqueued_at_reads_a_job_body_and_refuses_others() -> None:
    job = Job(name="echo", args=(1,), queue="default", enqueued_at=1234.5)
    assert enqueued_at(encode_job(job)) == 1234.5
    assert enqueued_at(b"not json") is None
    assert enqueued_at(b"[1, 2]") is None
    assert enqueued_at(b'{"enqueued_at": "soon"}') is None
