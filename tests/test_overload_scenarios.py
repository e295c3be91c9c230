"""
The overload scenarios' machinery (``bench/overload``), in a tiny size.

The summaries are checked on made-up records; the runs go for real,
scaled down to a second or two of load, against the flaky server on
127.0.0.1, only to show that they work and stop by themselves (no timing
is asserted: ``nox -s overload`` measures, this only runs).
"""

from __future__ import annotations

import importlib
import json
import sys

from pathlib import Path

import pytest
import trio

from resilient_mcp import HedgingConfig


ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # bench/ is not installed: it sits beside
    sys.path.insert(0, str(ROOT))

scenarios = importlib.import_module("bench.overload._scenarios")
driver = importlib.import_module("bench.overload._driver")
summary = importlib.import_module("bench.overload._summary")
cli = importlib.import_module("bench.overload.__main__")

HANG_GUARD = 120  # seconds; never a timing assertion
TINY = 0.03  # scale: a 60 s scenario runs 1.8 s


def made_up_run(ends, limits=(), duration=4.0):
    """A run with the given request ends and limit samples."""
    return driver.Run(
        scenario="made-up",
        config="static",
        duration=duration,
        ends=list(ends),
        limits=list(limits),
        offered=len(ends),
    )


def test_series_buckets_successes_by_end_time():
    """Goodput and p99 per second count only successes, by end time."""
    run = made_up_run(
        [(0.1, 0.2, True), (0.5, 0.4, True), (1.2, 9.0, False), (4.5, 1, True)]
    )

    points = summary.series(run)

    assert [2.0, 0.0, 0.0, 0.0] == [p["goodput"] for p in points]
    assert [0.4, None, None, None] == [p["p99"] for p in points]
    assert [0.0, 1.0, 0.0, 0.0] == [p["failed"] for p in points]


def test_recovery_is_the_start_of_the_last_good_stretch():
    """Recovery: from the first 3-s window after which goodput stays up."""
    good = [(t + 0.5, 0.1, True) for t in (0, 1, 3, 4, 5, 6, 7)]
    run = made_up_run(good, duration=8.0)

    assert 1.0 == summary.recovery(run, after=2.0, rate=1.0)
    assert summary.recovery(made_up_run([], duration=8.0), 2.0, 1.0) is None


def test_convergence_reaches_then_settles_within_a_quarter_of_its_level():
    """Reached: first within 25 % of its level; settled: within it since."""
    limits = [(t, limit, 0) for t, limit in enumerate([20, 14, 9, 5, 9, 4, 4])]
    run = made_up_run([], limits=limits, duration=7.0)
    jumps = [(t, limit, 0) for t, limit in enumerate([20] + [4] * 11 + [12])]
    jumping = made_up_run([], limits=jumps, duration=13.0)

    assert (3.0, 5.0) == summary.convergence(run, change=0.0, until=7.0)
    assert (1.0, None) == summary.convergence(jumping, change=0.0, until=13.0)


def test_scaling_keeps_rates_and_shortens_times():
    """A scaled scenario keeps its rates; its times shrink."""
    spike = scenarios.SCENARIOS["spike"].scaled(0.5)
    brownout = scenarios.SCENARIOS["brownout"].scaled(0.5)

    assert (30.0, 5.0, 2.5) == (
        spike.duration,
        spike.spike.start,
        spike.spike.duration,
    )
    assert scenarios.SCENARIOS["spike"].rate == spike.rate
    assert [5.0, 20.0] == [event.at for event in brownout.events]


def test_the_tail_counts_every_success_and_the_hedges():
    """The tail summary: quantiles of all successes, hedges per call."""
    ends = [(i / 100, 0.1, True) for i in range(998)]
    ends += [(9.0, 1.0, True), (9.5, 1.0, True), (9.9, 5.0, False)]
    run = made_up_run(ends, duration=10.0)
    run.calls, run.server_requests = 1001, 2002
    run.hedging = {"calls": 1000, "hedges": 50, "hedge_wins": 7}

    tail = summary.tail(run)

    assert (0.1, 0.1, 1.0, 1.0) == (
        tail["p50"],
        tail["p99"],
        tail["p999"],
        tail["max"],
    )
    assert (0.05, 2.0, 7) == (
        tail["hedges_per_call"],
        tail["server_requests_per_request"],
        tail["hedge_wins"],
    )


def test_the_slow_tail_compares_hedging_off_and_on():
    """The slow-tail scenario: a 1 % 10x slow share, hedging off then on."""
    scenario = scenarios.SCENARIOS["slow-tail"]
    hedged = scenarios.client_config(scenario, "hedged")
    tuned = scenarios.client_config(scenario, "hedged-p97")

    assert {"slow_rate": 0.01, "slow_factor": 10} == dict(scenario.server)
    assert scenario.rate * scenario.duration >= 2000
    assert scenario.rate <= scenarios.CAPACITY_RATE / 2
    assert scenarios.client_config(scenario, "adaptive").hedging is None
    assert HedgingConfig() == hedged.hedging
    assert HedgingConfig(percentile=0.97) == tuned.hedging


def test_retries_count_the_steady_window_apart_from_the_whole_run():
    """
    The retry summary: attempts per call over the run and the steady half.

    The start spends the budget's reserve at once (3 attempts a call), the
    steady half makes 1.5; the bound is the budget's rule at the steady
    half's rate of calls (40 a second: 1 + 0.2 + 10 / 40).
    """
    scenario = scenarios.SCENARIOS["total-failure"]
    run = made_up_run(
        [(t / 10, 0.1, False) for t in range(200)], duration=20.0
    )
    run.config = "budget"
    run.calls, run.attempts = 600, 1400
    run.retries = [(0.0, 0, 0), (10.0, 200, 600), (20.0, 600, 1200)]
    run.failures = {"retry_budget_exhausted": 450}

    numbers = summary.retries(scenario, run)

    assert (1400 / 600, 1.5, 1.45) == (
        numbers["attempts_per_call"],
        numbers["steady_attempts_per_call"],
        numbers["steady_bound"],
    )
    assert (40.0, 0.0, 450) == (
        numbers["steady_calls_per_second"],
        numbers["success_rate"],
        numbers["refused_by_budget"],
    )
    table = summary.retries_markdown(
        "total-failure", [numbers | {"config": "budget"}]
    )
    assert (
        "| budget | 0.2 + 10/s over 10 s | 0.00 % | 2.33 | 1.50 |"
        in (table[-1])
    )


def test_the_retry_scenarios_compare_budgets():
    """100 % failure at two rates and 5 % transient failures, budgeted."""
    fast = scenarios.SCENARIOS["total-failure-fast"]
    transient = scenarios.SCENARIOS["transient-5pct"]
    tight = scenarios.client_config(fast, "tight-budget")

    assert {"failure_rate": 0.05} == dict(transient.server)
    assert {"static", "budget", "tight-budget"} <= set(transient.configs)
    assert 0 == fast.server["capacity"] == fast.server["base_latency"]
    assert scenarios.FAST_LIMIT == (
        tight.bulkheads["tools"].max_concurrent_requests
    )
    budget = tight.retry_budget
    assert 1.2 >= 1 + budget.percent_can_retry + (
        budget.min_retries_per_second
        / scenarios.SCENARIOS["total-failure"].rate
    )
    assert all(
        scenarios.SCENARIOS[name].retries
        for name in ("total-failure", "total-failure-fast", "transient-5pct")
    )


@pytest.mark.slow
@pytest.mark.parametrize(
    ("name", "config"),
    [
        ("total-failure", "tight-budget"),
        ("total-failure-fast", "budget"),
        ("transient-5pct", "static"),
    ],
)
async def test_a_tiny_retry_run_counts_its_attempts(name, config):
    """A tiny run of a retry scenario samples the counts it summarizes."""
    scenario = scenarios.SCENARIOS[name].scaled(TINY)
    with trio.fail_after(HANG_GUARD):
        run = await driver.run_scenario(scenario, config)
    numbers = summary.retries(scenario, run)

    assert run.offered == len(run.ends) + run.shed + run.unfinished
    assert (run.calls, run.attempts) == run.retries[-1][1:]
    assert run.attempts == run.server_executions
    assert numbers["calls"] <= numbers["offered"]


@pytest.mark.slow
@pytest.mark.parametrize("name", ["spike", "brownout"])
async def test_a_tiny_run_accounts_for_every_request(name):
    """Every request offered ends, is shed or unfinished; the run ends."""
    scenario = scenarios.SCENARIOS[name].scaled(TINY)
    with trio.fail_after(HANG_GUARD):
        run = await driver.run_scenario(scenario, "adaptive")

    assert run.offered == len(run.ends) + run.shed + run.unfinished
    assert run.offered > 0
    assert run.limits  # the adaptive limit was sampled
    assert run.calls >= sum(ok for _, _, ok in run.ends)


@pytest.mark.slow
async def test_a_tiny_slow_tail_run_accounts_for_the_hedges():
    """
    A tiny hedged slow-tail run accounts for every request and hedge.

    The server sees each attempt the client made, and at most the hedges
    on top; its slow requests are among them.
    """
    scenario = scenarios.SCENARIOS["slow-tail"].scaled(0.02)  # 50 calls
    with trio.fail_after(HANG_GUARD):
        run = await driver.run_scenario(scenario, "hedged")
    hedges = run.hedging["hedges"]

    assert run.offered == len(run.ends) + run.shed + run.unfinished
    assert run.offered > 0
    assert run.calls >= sum(ok for _, _, ok in run.ends)
    assert run.attempts <= run.server_requests <= run.attempts + hedges
    assert run.slow_requests <= run.server_requests
    assert hedges <= run.hedging["calls"]


@pytest.mark.slow
def test_main_writes_the_summaries(tmp_path):
    """The command runs the reference and a scenario, and writes both."""
    status = cli.main(
        [
            "--scale",
            "0.02",
            "--only",
            "overload-3x",
            "--no-plot",
            "--out",
            str(tmp_path),
        ]
    )
    data = json.loads((tmp_path / "summary.json").read_text())

    assert 0 == status
    assert ["uncontended", "overload-3x"] == list(data["results"])
    assert ["static", "adaptive"] == [
        r["config"] for r in data["results"]["overload-3x"]
    ]
    assert "| overload-3x | static |" in (tmp_path / "summary.md").read_text()
