"""The pure delay arithmetic behind the retry policy."""

from __future__ import annotations

import random

from hypothesis import given
from hypothesis import strategies as st

from resilient_mcp import RetryConfig
from resilient_mcp._backoff import base_delay, compute_delay


configs = st.builds(
    lambda initial, factor, extra: RetryConfig(
        initial_delay=initial,
        backoff_factor=factor,
        max_delay=initial + extra,
        jitter=False,
    ),
    st.floats(0, 100, allow_nan=False),
    st.floats(1, 10, allow_nan=False),
    st.floats(0, 1000, allow_nan=False),
)


def test_seed_formula_without_jitter():
    """delay(n) = initial * factor**n, capped at max_delay."""
    config = RetryConfig(initial_delay=1, backoff_factor=2, max_delay=30)

    delays = [base_delay(config, n) for n in range(7)]

    assert [1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 30.0] == delays


@given(configs, st.integers(0, 2000))
def test_backoff_never_decreases_and_stays_under_the_cap(config, retry):
    """Without jitter delays grow monotonically and never exceed the cap."""
    delay = base_delay(config, retry)
    following = base_delay(config, retry + 1)

    assert 0 <= delay <= config.max_delay
    assert delay <= following


@given(configs, st.integers(0, 60), st.sampled_from([True, "full"]))
def test_jittered_delays_stay_under_the_cap(config, retry, jitter):
    """Every jitter strategy keeps the delay within [0, max_delay]."""
    config = RetryConfig(
        initial_delay=config.initial_delay,
        max_delay=config.max_delay,
        backoff_factor=config.backoff_factor,
        jitter=jitter,
    )

    delay = compute_delay(
        config, retry, config.initial_delay, random.Random(1)
    )

    assert 0 <= delay <= config.max_delay


@given(st.integers(0, 4), st.integers(0, 2**32))
def test_proportional_jitter_is_within_ten_percent(retry, seed):
    """jitter=True varies the delay by at most +-10 %, as the seed says."""
    config = RetryConfig(initial_delay=1, max_delay=1000, jitter=True)
    base = base_delay(config, retry)

    delay = compute_delay(config, retry, 1.0, random.Random(seed))

    assert base * 0.9 <= delay <= base * 1.1


@given(st.integers(0, 10), st.integers(0, 2**32))
def test_full_jitter_is_uniform_below_the_base(retry, seed):
    """Full jitter draws from [0, base delay]."""
    config = RetryConfig(initial_delay=1, max_delay=50, jitter="full")

    delay = compute_delay(config, retry, 1.0, random.Random(seed))

    assert 0 <= delay <= base_delay(config, retry)


@given(st.floats(0.5, 100), st.integers(0, 2**32))
def test_decorrelated_jitter_bounds(previous, seed):
    """Decorrelated jitter draws from [initial, 3 * previous], capped."""
    config = RetryConfig(
        initial_delay=0.5, max_delay=60, jitter="decorrelated"
    )

    delay = compute_delay(config, 3, previous, random.Random(seed))

    assert 0.5 <= delay <= min(60, 3 * previous)


def test_jitter_is_repeatable_with_a_seeded_rng():
    """The same seed gives the same delays."""
    config = RetryConfig(jitter="full")

    first = [compute_delay(config, n, 1, random.Random(7)) for n in range(5)]
    again = [compute_delay(config, n, 1, random.Random(7)) for n in range(5)]

    assert first == again


def test_huge_retry_numbers_do_not_overflow():
    """An overflowing power is simply the cap."""
    config = RetryConfig(backoff_factor=10, max_delay=30, jitter=False)

    assert 30.0 == base_delay(config, 10_000)
