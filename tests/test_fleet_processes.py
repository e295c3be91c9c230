"""
Fleet mode with eight worker processes: probes, and Redis killed mid-run.

As tests/test_fleet.py: a real redis-server on a free port of 127.0.0.1,
workers started as scripts (tests/fleet_worker.py), every wait bounded;
the only numbers judged are the issue's counts.
"""

from __future__ import annotations

import time

from collections import Counter

import pytest

from test_fleet import PROCESSES, _finish, _start


pytestmark = pytest.mark.slow

BACKENDS = ("trio", "asyncio")  # half the fleet on each


def _go(workers, delay: float = 0.5) -> float:
    """Wait until every worker is ready; send them a common start."""
    for worker in workers:
        assert worker.stdout is not None
        assert "ready\n" == worker.stdout.readline()
    start = time.time() + delay
    for worker in workers:
        assert worker.stdin is not None
        worker.stdin.write(f"{start!r}\n")
        worker.stdin.flush()
    return start


@pytest.mark.timeout(90)
def test_one_probe_per_half_open_period_across_processes(redis_server):
    """
    Eight processes on a dead server: one probe per half-open period.

    Every process keeps calling for 1.5 s, five recovery timeouts; once
    the fleet's circuit is open, each probe that reaches the server holds
    the probe lease of one generation of the fleet's circuit, and no two
    probes, of any processes, share one; a failed probe opens the next.
    """
    threshold, seconds = 2, 1.5
    workers = [
        _start(
            "probe",
            redis_server.url,
            "-",
            repr(seconds),
            backend=BACKENDS[i % 2],
        )
        for i in range(PROCESSES)
    ]
    _go(workers)
    outputs = _finish(workers)

    before = sum(int(out[2]) for out in outputs)
    probes = Counter(int(g) for out in outputs for g in out[3:])
    print(  # noqa: T201
        f"fleet probes: {before} calls before the circuit opened "
        f"(bound {threshold + PROCESSES}); probes per generation "
        f"{dict(sorted(probes.items()))}"
    )

    assert [["store_errors", "0"]] * PROCESSES == [o[:2] for o in outputs]
    assert threshold <= before <= threshold + PROCESSES
    assert len(probes) >= 2, probes  # several half-open periods passed
    assert {1} == set(probes.values()), probes


@pytest.mark.timeout(120)
def test_redis_killed_and_restarted_under_eight_processes(redis_server):
    """
    Redis killed mid-run and restarted: no call lost or failed; shared.

    Eight processes call through a shared rate limiter and breaker; the
    test kills Redis 1.5 s in and restarts it (on the same port, empty)
    a second later.  Every call that started ended, none failed, every
    process counted store errors, and after the restart the fleet again
    holds the limiter's rate, within 5 %.
    """
    rate, seconds = 200.0, 6.0
    workers = [
        _start(
            "outage",
            redis_server.url,
            "-",
            repr(seconds),
            backend=BACKENDS[i % 2],
        )
        for i in range(PROCESSES)
    ]
    start = _go(workers)
    time.sleep(max(0.0, start + 1.5 - time.time()))
    redis_server.stop()
    time.sleep(1.0)
    redis_server.start()
    outputs = _finish(workers)

    calls = [[int(n) for n in out[1:4]] for out in outputs]
    errors = [[int(n) for n in out[5:7]] for out in outputs]
    times = sorted(float(t) for out in outputs for t in out[7:])
    # A second after the restart, to half a second before the end.
    low, high = start + 3.5, start + seconds - 0.5
    after = sum(low <= t < high for t in times) / (high - low)
    print(  # noqa: T201
        f"fleet outage: {sum(c[0] for c in calls)} calls, "
        f"store errors (limiter, breaker) per process {errors}; "
        f"rate after the restart {after:.1f}/s for {rate:.0f}/s"
    )

    for started, ended, failed in calls:
        assert started > 0
        assert started == ended
        assert 0 == failed
    # Whichever policy met the outage first counted it (the store is then
    # left alone until its reconnect interval): each process saw it.
    assert all(sum(both) > 0 for both in errors), errors
    assert abs(after - rate) <= 0.05 * rate, after
