"""
Pure delay arithmetic for the retry policy: no awaits, no clock.

Kept apart from the retry loop so that it can be tested exhaustively
(hypothesis checks that delays never exceed the cap and, without jitter,
never decrease).  The jitter strategies follow Marc Brooker's AWS
architecture blog post "Exponential Backoff And Jitter" (2015).
"""

from __future__ import annotations

import random

from typing import TYPE_CHECKING, Final


if TYPE_CHECKING:
    from ._config import RetryConfig


PROPORTIONAL_JITTER: Final = 0.1  # +-10 %, the default jitter


def base_delay(config: RetryConfig, retry: int) -> float:
    """
    The un-jittered delay before retry number *retry* (0-based).

    ``initial_delay * backoff_factor ** retry``, capped at ``max_delay``.
    """
    try:
        delay = config.initial_delay * config.backoff_factor**retry
    except OverflowError:
        return config.max_delay
    return min(delay, config.max_delay)


def compute_delay(
    config: RetryConfig,
    retry: int,
    previous: float,
    rng: random.Random,
) -> float:
    """
    The delay before retry number *retry* (0-based), jitter included.

    Args:
        config: The retry configuration.
        retry: 0 for the wait after the first failed attempt, and so on.
        previous: The delay used before the previous retry (only the
            decorrelated strategy uses it; pass ``initial_delay`` at first).
        rng: The random source, injectable for repeatable runs.

    Returns:
        Seconds to wait, in ``[0, max_delay]``.
    """
    jitter = config.jitter
    if jitter is False:
        return base_delay(config, retry)
    if jitter is True or jitter == "proportional":
        delay = base_delay(config, retry)
        delay *= rng.uniform(1 - PROPORTIONAL_JITTER, 1 + PROPORTIONAL_JITTER)
    elif jitter == "full":
        delay = rng.uniform(0, base_delay(config, retry))
    else:  # "decorrelated": sleep = min(cap, uniform(base, sleep * 3))
        low = config.initial_delay
        delay = rng.uniform(low, max(low, previous * 3))
    return min(delay, config.max_delay)
