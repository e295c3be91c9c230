"""
Which comparisons make up each suite, and how long each one runs.

A suite is a name (for ``--only``) and a function of the run's
:class:`Sizes` that returns comparisons; ``mcp`` adds the MCP round trips.
The scale measurements are separate (see :mod:`bench._scale`) because
they are not interleaved timings.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Final

import attrs

from . import _floors as floors
from . import _floors_overload as overload_floors
from . import _ours as ours
from . import _ours_overload as overload_ours
from . import _peers as peers
from ._harness import BACKENDS, Arm, Comparison, arms
from ._mcp import mcp_comparisons


@attrs.frozen(kw_only=True)
class Sizes:
    """How much to measure: the full run, or a quick smoke run."""

    quick: bool
    calls: int  # per arm per round
    rounds: int
    queued_callers: int
    queue_pairs: int
    tools: int
    million: int
    million_warmup: int
    rejections: int
    rejection_window: int
    profile_calls: int

    @classmethod
    def full(cls) -> Sizes:
        return cls(
            quick=False,
            calls=1000,
            rounds=50,
            queued_callers=10_000,
            queue_pairs=3,
            tools=10_000,
            million=1_000_000,
            million_warmup=20_000,
            rejections=100_000,
            rejection_window=1000,
            profile_calls=20_000,
        )

    @classmethod
    def smoke(cls) -> Sizes:
        return cls(
            quick=True,
            calls=20,
            rounds=2,
            queued_callers=200,
            queue_pairs=1,
            tools=200,
            million=2000,
            million_warmup=200,
            rejections=2000,
            rejection_window=100,
            profile_calls=0,
        )


def _comparison(  # noqa: PLR0917 (reads like the table it makes)
    group: str,
    title: str,
    backend: str,
    floor: str,
    items: tuple[Arm, ...],
    sizes: Sizes,
    note: str = "",
) -> Comparison:
    return Comparison(
        id=f"{group}-{backend}",
        title=title,
        backend=backend,
        floor=floor,
        arms=items,
        calls=sizes.calls,
        rounds=sizes.rounds,
        note=note,
    )


def floors_suite(sizes: Sizes) -> list[Comparison]:
    return [
        _comparison(
            "floors",
            "Floors: the raw parts",
            backend,
            floors.BARE,
            floors.floor_arms(backend),
            sizes,
        )
        for backend in BACKENDS
    ]


def breaker_suite(sizes: Sizes) -> list[Comparison]:
    found = []
    for backend in BACKENDS:
        found.append(
            _comparison(
                "breaker",
                "Circuit breaker, closed (success path)",
                backend,
                floors.BARE,
                arms(
                    floors.bare_floor(),
                    floors.breaker_floor(backend),
                    floors.scope_floor(backend),
                    ours.breaker_arms(floors.BREAKER),
                    ours.breaker_timeout_arm(floors.SCOPE),
                    peers.breaker_peers(),
                ),
                sizes,
            )
        )
        found.append(
            _comparison(
                "breaker-open",
                "Circuit breaker, open (fast fail)",
                backend,
                floors.BARE,
                arms(
                    floors.bare_floor(),
                    floors.checkpoint_floor(backend),
                    floors.open_floors(backend),
                    ours.open_arms(floors.OPEN),
                    peers.open_breaker_peers(),
                ),
                sizes,
                note="Each call is rejected; the variant catches the error.",
            )
        )
    return found


def retry_suite(sizes: Sizes) -> list[Comparison]:
    return [
        _comparison(
            "retry",
            "Retry, success on the first attempt",
            backend,
            floors.BARE,
            arms(
                floors.bare_floor(),
                floors.retry_floor(backend),
                ours.retry_arms(floors.RETRY),
                peers.retry_peers(),
            ),
            sizes,
        )
        for backend in BACKENDS
    ]


def bulkhead_suite(sizes: Sizes) -> list[Comparison]:
    return [
        _comparison(
            "bulkhead",
            "Bulkhead with a free slot",
            backend,
            floors.LIMITER,
            arms(
                floors.limiter_floors(backend),
                ours.bulkhead_arms(floors.LIMITER, floors.LIMITER_SCOPE),
                peers.bulkhead_peers(backend, floors.LIMITER),
            ),
            sizes,
        )
        for backend in BACKENDS
    ]


def timeout_suite(sizes: Sizes) -> list[Comparison]:
    found = []
    for backend in BACKENDS:
        extra = []
        if backend == "asyncio":
            extra.append(
                Arm(
                    label="asyncio.timeout(60) around op()",
                    factory=floors.asyncio_timeout,
                    kind="floor",
                )
            )
        found.append(
            _comparison(
                "timeout",
                "Timeout that does not fire",
                backend,
                floors.SCOPE,
                arms(
                    floors.scope_floor(backend),
                    floors.fail_after_floor(backend),
                    extra,
                    ours.timeout_arms(),
                    peers.timeout_peers(),
                ),
                sizes,
            )
        )
    return found


def recording_suite(sizes: Sizes) -> list[Comparison]:
    return [
        _comparison(
            "recording",
            "Latency recording, one value",
            backend,
            floors.BARE,
            arms(
                floors.bare_floor(),
                floors.recording_floors(),
                ours.recording_arms(),
            ),
            sizes,
            note="Synchronous calls, wrapped in an async def like the rest.",
        )
        for backend in BACKENDS
    ]


def _pipeline(sizes: Sizes, backend: str, runner: str = "anyio") -> Comparison:
    plain = backend == "asyncio" and runner == "asyncio"
    return attrs.evolve(
        _comparison(
            "pipeline",
            "Full pipeline: ours, the floor, and peer stacks",
            backend,
            floors.FLOOR_PIPELINE,
            arms(
                floors.floor_pipelines(backend),
                ours.pipeline_arms(
                    floors.FLOOR_PIPELINE, floors.FLOOR_NO_TIMEOUT
                ),
                peers.stack_arms(backend, floors.FLOOR_PIPELINE),
            ),
            sizes,
            note=(
                "Every stack: bulkhead( retry( breaker( timeout( op ) ) ) ) "
                "plus recording the call's latency."
            ),
        ),
        id=f"pipeline-{backend}-run" if plain else f"pipeline-{backend}",
        runner=runner,
    )


PIPELINE_ASYNCIO_RUN: Final = "pipeline-asyncio-run"
"""The pipeline under plain ``asyncio.run``: the asyncio target's."""


def pipeline_suite(sizes: Sizes) -> list[Comparison]:
    # On asyncio twice: under anyio.run, as the other asyncio comparisons,
    # and under plain asyncio.run, where anyio has to find its backend
    # on every call (sniffio's context variable is not set), as in most
    # asyncio applications.  The asyncio target is judged on the second.
    return [
        _pipeline(sizes, "trio"),
        _pipeline(sizes, "asyncio"),
        _pipeline(sizes, "asyncio", runner="asyncio"),
    ]


def overload_suite(sizes: Sizes) -> list[Comparison]:
    """The overload policies of issue 13, success path, vs their floors."""
    found = []
    for backend in BACKENDS:
        found.extend(
            (
                _comparison(
                    "retry-budget",
                    "Retry budget, success on the first attempt",
                    backend,
                    overload_floors.BUDGET,
                    arms(
                        overload_floors.budget_floors(backend),
                        overload_ours.budget_arms(),
                    ),
                    sizes,
                ),
                _comparison(
                    "rate-limit",
                    "Rate limiter, a conforming call",
                    backend,
                    overload_floors.GCRA,
                    arms(
                        overload_floors.rate_floors(backend),
                        overload_ours.rate_arms(),
                    ),
                    sizes,
                    note="rate=1e9/s, burst=1: every call conforms.",
                ),
                _comparison(
                    "throttling",
                    "Adaptive throttling, an admitted call",
                    backend,
                    overload_floors.SRE,
                    arms(
                        overload_floors.throttle_floors(backend),
                        overload_ours.throttle_arms(),
                    ),
                    sizes,
                    note="Every call succeeds: the drop probability is 0.",
                ),
                _comparison(
                    "adaptive",
                    "Adaptive bulkhead with a free slot",
                    backend,
                    overload_floors.GRADIENT,
                    arms(
                        overload_floors.adaptive_floors(backend),
                        overload_ours.adaptive_arms(),
                    ),
                    sizes,
                    note=(
                        "Every call is a sample of the limit's algorithm "
                        "(window_size=None)."
                    ),
                ),
            )
        )
    return found


def mcp_suite(sizes: Sizes) -> list[Comparison]:
    return mcp_comparisons(BACKENDS, quick=sizes.quick)


SUITES: Final[dict[str, Callable[[Sizes], list[Comparison]]]] = {
    "floors": floors_suite,
    "breaker": breaker_suite,
    "retry": retry_suite,
    "bulkhead": bulkhead_suite,
    "timeout": timeout_suite,
    "recording": recording_suite,
    "pipeline": pipeline_suite,
    "overload": overload_suite,
    "mcp": mcp_suite,
}
"""Interleaved comparisons, by suite name, in the order they run."""

SCALE: Final = ("queue", "tools", "million", "open", "compat")
"""The other measurements, also selectable with ``--only``."""
