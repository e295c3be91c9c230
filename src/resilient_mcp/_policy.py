"""
The interface between the pipeline and its policies.

A policy is anything that judges calls: a bulkhead, a circuit breaker, a
timeout, and the ones to come (a rate limiter, an adaptive limit, client
side throttling).  The pipeline knows a policy only through the small
interface of :class:`Policy`, so that each policy's logic lives in its own
module, and a new policy is a new module plus its place in the order, with
no change to the pipeline's hot path.  The models are Polly v8's
``ResilienceStrategy`` and tower's ``Layer``, with one difference that
matters in Python: the pipeline does not nest one coroutine per policy.
It walks the policies' synchronous steps itself, in one coroutine, and
shares its clock reads with all of them.

A call meets a policy in three steps, like a ticket at a turnstile:

1. ``enter_nowait(now)`` admits the call at once and returns a *permit*
   (any object the policy wants back), or rejects it at once by raising
   its error (:class:`~resilient_mcp.CircuitBreakerError`, say).  The
   pipeline then makes a full checkpoint before the error propagates, as
   trio's conventions ask of every call into an async API.  A policy that
   can make the call wait raises :exc:`trio.WouldBlock` (or
   :exc:`anyio.WouldBlock`) instead.
2. ``await enter(now)`` is the waiting path, awaited only after
   ``enter_nowait`` raised ``WouldBlock``: a bulkhead's queue, a rate
   limiter's delay.  It returns the permit or raises the rejection (having
   made its own checkpoint).  *now* is still the time the call arrived.
3. ``leave(permit, now, elapsed, error)`` takes the outcome: *error* is
   ``None`` when the call returned, the :class:`Exception` it raised, or
   the :class:`BaseException` that cancelled it (a cancellation is never a
   failure).  *elapsed* is the seconds since ``enter_nowait``.

A policy may also limit time: ``time_limit`` is the seconds a call (or an
attempt) may run after it entered, ``None`` for no limit.  The pipeline
enters one cancel scope for the earliest limit of all its policies, and
when it is that policy's limit that passed, raises what
``expired(permit)`` returns (a :class:`~resilient_mcp.CallTimeout`,
counted by the policy).  A policy that does nothing but limit time (the
timeout) says so with ``passive = True``: the pipeline then never enters
it nor tells it the outcome, and hands ``expired`` a ``None`` permit.

Two optional steps keep the accounting exact and the retries honest
(:class:`PolicyBase` gives both a default that does nothing):

* ``withdraw(error)``: the pipeline makes a checkpoint before it raises a
  rejection, and a caller cancelled there gets its cancellation instead.
  The policy that counted *error* as a rejection is then told, so that
  it counts a cancelled call, as the pipeline does: one outcome per call.
* ``rejection_at(now, when)``: before the retry loop waits until *when*
  for the next attempt, it asks each attempt policy whether that attempt
  would surely be rejected (an open circuit breaker knows until when it
  stays open).  A policy that knows returns its rejection, counted as
  one, and the call ends with it at once (the last failure as its
  ``__cause__``) instead of waiting for nothing; ``None`` lets the wait
  begin.  It is asked only after a failed attempt, never on the success
  path.

Where a policy sits decides what it sees: the *call* policies (the
bulkhead) are entered once per call, outside the retry loop; the
*attempt* policies (the circuit breaker, the timeout) once per attempt,
inside it.  The retry loop itself asks the retry policy, after each
failed attempt, whether and when to try again.
"""

from __future__ import annotations

from typing import Protocol, TypeVar


P = TypeVar("P")


class Policy(Protocol[P]):
    """
    What the pipeline asks of a policy; see the module documentation.

    ``P`` is the type of the policy's permits.  :class:`PolicyBase` gives
    the optional parts their defaults, and the optional ``withdraw`` and
    ``rejection_at`` (see the module documentation), which the pipeline
    uses when a policy has them.

    .. versionadded:: 0.1.0
    """

    @property
    def name(self) -> str:
        """The policy's name, for errors and metrics."""

    @property
    def time_limit(self) -> float | None:
        """Seconds a call may run after entering, or ``None``."""

    @property
    def passive(self) -> bool:
        """Whether the policy only limits time (never entered nor told)."""

    def enter_nowait(self, now: float) -> P:
        """
        Admit a call arriving at *now*, or refuse it at once.

        Returns:
            The permit to hand back to :meth:`leave`.

        Raises:
            trio.WouldBlock: The call may wait: await :meth:`enter`.
            Exception: The policy's rejection, already counted.
        """

    async def enter(self, now: float) -> P:
        """Wait for admission, after :meth:`enter_nowait` would block."""

    def leave(
        self,
        permit: P,
        now: float,
        elapsed: float,
        error: BaseException | None,
    ) -> None:
        """The call *permit* admitted ended at *now* (see the module)."""

    def expired(self, permit: P) -> Exception:
        """The error for a call whose :attr:`time_limit` passed."""


class PolicyBase:
    """
    Defaults for the optional parts of :class:`Policy`.

    A policy that never waits and never limits time needs only ``name``,
    ``enter_nowait`` and ``leave``.

    .. versionadded:: 0.1.0
    """

    __slots__ = ()

    time_limit: float | None = None
    passive: bool = False

    async def enter(self, now: float) -> object:
        """Never awaited: ``enter_nowait`` of this policy never blocks."""
        msg = f"{type(self).__name__} has no waiting path"
        raise NotImplementedError(msg)

    def expired(self, permit: object) -> Exception:
        """Never called: this policy sets no time limit."""
        msg = f"{type(self).__name__} sets no time limit"
        raise NotImplementedError(msg)

    def withdraw(self, error: Exception) -> None:
        """
        The caller never got the rejection *error* (it was cancelled).

        Optional; the default does nothing.  A policy that counts its
        rejections counts a cancelled call instead.

        .. versionadded:: 0.1.0
        """

    def rejection_at(self, now: float, when: float) -> Exception | None:
        """
        The rejection an attempt at *when* would surely meet, seen at *now*.

        Optional; the default foresees nothing (``None``: the retry loop
        may wait).  A policy that returns its rejection counts it as one;
        the call then ends with it at once.

        .. versionadded:: 0.1.0
        """
        return None
