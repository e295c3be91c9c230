"""
The stages of a plan: the policies of one level, entered as one.

A :class:`Stage` holds the call policies, or the attempt policies, of a
:class:`~._engine.Plan`, ready to enter: one policy's own bound methods,
or those of :class:`_Two` or :class:`_Many` when there are several.
:func:`admit` and :func:`admit_slowly` enter a stage (or one policy), and
:func:`refuse` is the checkpoint every rejection makes before it is
raised.

Several policies are entered as one, at once when each admits the call
at once (the common case: no coroutine, no exception), in order,
outermost first.  When one of them does not (it would block, or it
rejects the call) after the ones before it admitted it, the stage hands
back a :class:`Slow` that *resumes* there: that policy's own waiting
path, or its rejection after the checkpoint every rejection makes, then
the policies after it.  A call that does not get in leaves the policies
that admitted it with the reason, innermost first.
"""

from __future__ import annotations

import functools
import math

from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Final, Protocol, final

import attrs

from ._policy import Policy, PolicyBase
from ._timeouts import WOULD_BLOCK, checkpoint, current_time


AnyPolicy = Policy[Any]


@final
@attrs.frozen(eq=False)
class Stage:
    """
    The policies of one level (the call, or the attempt), ready to use.

    The engine enters a stage as it would one policy: ``enter_nowait``,
    ``enter``, ``leave`` and ``expire`` are the policy's own bound methods
    when the stage has one policy that admits calls (the common case: no
    loop, no list), or those of :class:`_Many` when it has several.
    Policies that are ``passive`` (they only limit time) are never
    entered; their limit still counts.
    """

    gated: bool
    """Whether any policy of the stage admits calls."""
    enter_nowait: Callable[[float], Any]
    enter: Callable[[float], Awaitable[Any]]
    leave: Callable[[Any, float, float, BaseException | None], None]
    limit: float
    """The earliest time limit of the stage's policies (``inf``: none)."""
    expire: Callable[[Any], Exception]
    """The error of the policy whose limit is :attr:`limit`."""
    withdraw: Callable[[Exception], None]
    """Told when a rejection of ``enter_nowait`` was not delivered."""
    foresee: tuple[Any, ...]
    """The policies that may foresee a rejection (``rejection_at``)."""

    @classmethod
    def of(cls, policies: Sequence[AnyPolicy]) -> Stage:
        """The stage of *policies*, outermost first."""
        gates = tuple(p for p in policies if not p.passive)
        limit, owner = math.inf, None
        for policy in policies:
            seconds = policy.time_limit
            if seconds is not None and seconds < limit:
                limit, owner = seconds, policy
        # Only the outermost policy's rejection is raised by the stage's
        # enter_nowait itself: a later policy's goes through the resumed
        # Slow, where admit_slowly tells that policy (see _enter_rest).
        withdraw: Callable[[Exception], None] = _ignore
        if gates:
            withdraw = getattr(gates[0], "withdraw", _ignore)
        entry: Any
        if len(gates) == 1:
            (entry,) = gates
        elif len(gates) == 2:  # the fast path of two
            entry = _Two(*gates)
        else:
            entry = _Many(gates)
        if owner is None:
            expire: Callable[[Any], Exception] = _never_expires
        elif owner not in gates:
            expire = functools.partial(_expire_passive, owner)
        elif len(gates) == 1:
            expire = owner.expired
        else:
            expire = functools.partial(_expire_nth, owner, gates.index(owner))
        return cls(
            gated=bool(gates),
            enter_nowait=entry.enter_nowait,
            enter=entry.enter,
            leave=entry.leave,
            limit=limit,
            expire=expire,
            withdraw=withdraw,
            foresee=tuple(p for p in gates if _foresees(p)),
        )


def _foresees(policy: AnyPolicy) -> bool:
    """Whether *policy* has a ``rejection_at`` of its own."""
    method = getattr(type(policy), "rejection_at", PolicyBase.rejection_at)
    return method is not PolicyBase.rejection_at


def _ignore(error: Exception) -> None:
    pass


def _never_expires(permit: object) -> Exception:  # pragma: no cover
    raise AssertionError


def _expire_passive(policy: AnyPolicy, permit: object) -> Exception:
    return policy.expired(None)


def _expire_nth(policy: AnyPolicy, index: int, permits: Any) -> Exception:
    return policy.expired(permits[index])


@final
@attrs.frozen(eq=False)
class _Two:
    """
    Two policies entered in order, as one; permits in a pair.

    The stage of two call policies (a throttle or a rate limiter outside
    a bulkhead): each policy's own ``enter_nowait``, one after the other,
    and nothing else when both admit the call at once.
    """

    first: AnyPolicy
    second: AnyPolicy

    def enter_nowait(self, now: float) -> Any:
        # The first's WouldBlock or rejection propagates as the stage's:
        # nothing is held yet (admit and admit_slowly deal with it).
        held = self.first.enter_nowait(now)
        try:
            return (held, self.second.enter_nowait(now))
        except WOULD_BLOCK:
            # Returned from inside the except blocks: no frame keeps the
            # reason (and its traceback) alive while the call waits.
            return Slow(None, self._resume(held, WAIT))
        except Exception as exc:
            return Slow(None, self._resume(held, Slow(exc)))
        except BaseException as exc:
            self.first.leave(held, current_time(), 0.0, exc)
            raise

    def _resume(self, held: Any, slow: Slow) -> Callable[[float], Any]:
        return functools.partial(
            _enter_rest, (self.first, self.second), [held], slow
        )

    async def enter(self, now: float) -> list[Any]:
        # The first would block (its enter_nowait said so): wait for it.
        return await _enter_rest((self.first, self.second), [], WAIT, now)

    def leave(
        self,
        permits: Sequence[Any],
        now: float,
        elapsed: float,
        error: BaseException | None,
    ) -> None:
        self.second.leave(permits[1], now, elapsed, error)
        self.first.leave(permits[0], now, elapsed, error)


@final
@attrs.frozen(eq=False)
class _Many:
    """Several policies entered in order, as one; permits in a list."""

    policies: tuple[AnyPolicy, ...]

    def enter_nowait(self, now: float) -> Any:
        policies = self.policies
        # As _Two: the first's WouldBlock or rejection is the stage's.
        permits = [policies[0].enter_nowait(now)]
        for index in range(1, len(policies)):
            try:
                permits.append(policies[index].enter_nowait(now))
            except WOULD_BLOCK:
                return Slow(None, self._resume(permits, WAIT))
            except Exception as exc:
                return Slow(None, self._resume(permits, Slow(exc)))
            except BaseException as exc:
                _leave_all(policies, permits, current_time(), 0.0, exc)
                raise
        return permits

    def _resume(
        self, permits: list[Any], slow: Slow
    ) -> Callable[[float], Any]:
        return functools.partial(_enter_rest, self.policies, permits, slow)

    async def enter(self, now: float) -> list[Any]:
        # The first would block (its enter_nowait said so): wait for it.
        return await _enter_rest(self.policies, [], WAIT, now)

    def leave(
        self,
        permits: list[Any],
        now: float,
        elapsed: float,
        error: BaseException | None,
    ) -> None:
        _leave_all(self.policies, permits, now, elapsed, error)


def _leave_all(
    policies: Sequence[AnyPolicy],
    permits: Sequence[Any],
    now: float,
    elapsed: float,
    error: BaseException | None,
) -> None:
    """Hand each admitted policy its outcome, innermost first."""
    for index in range(len(permits) - 1, -1, -1):
        policies[index].leave(permits[index], now, elapsed, error)


async def _enter_rest(
    policies: Sequence[AnyPolicy],
    permits: list[Any],
    slow: Slow,
    now: float,
) -> list[Any]:
    """
    Enter the policies after the ones *permits* holds, the next one slowly.

    *slow* is what the next policy's ``enter_nowait`` said: wait
    (:data:`WAIT`), or its rejection, raised after a checkpoint (a caller
    cancelled there gets its cancellation, and that policy is told:
    :func:`admit_slowly`).  Whatever keeps the call out leaves the
    policies that admitted it, innermost first, with that reason.
    """
    following = len(permits) + 1
    try:
        permit: Any = await admit_slowly(policies[following - 1], now, slow)
        permits.append(permit)
        for policy in policies[following:]:
            permit = admit(policy, now)
            if type(permit) is Slow:
                permit = await admit_slowly(policy, now, permit)
            permits.append(permit)
    except BaseException as exc:
        _leave_all(policies, permits, current_time(), 0.0, exc)
        raise
    return permits


@final
class Slow:
    """
    A call that a stage could not admit at once.

    *error* is the policy's rejection, or ``None`` when the call may wait.
    The engine deals with it outside the ``except`` block that caught the
    reason: there, a waiting call would keep the WouldBlock and its
    traceback alive for the whole wait (about 1.4 KB per queued caller).

    *resume*, when set, continues a stage of several policies where one
    of them did not admit the call at once (see the module documentation):
    awaited with the arrival time, it returns the stage's permits.
    """

    __slots__ = ("error", "resume")

    def __init__(
        self,
        error: Exception | None,
        resume: Callable[[float], Awaitable[Any]] | None = None,
    ) -> None:
        self.error = error
        self.resume = resume


WAIT: Final = Slow(None)


class Entry(Protocol):
    """A stage, or one policy: what can be entered."""

    def enter_nowait(self, now: float, /) -> Any: ...

    def enter(self, now: float, /) -> Awaitable[Any]: ...


def admit(stage: Entry, now: float) -> Any:
    """
    Enter *stage* at once: its permit, or a :class:`Slow` to deal with.

    Admission at once is the common case, and it costs no coroutine: the
    rejection and the wait go to :func:`admit_slowly`.
    """
    try:
        return stage.enter_nowait(now)
    except WOULD_BLOCK:
        return WAIT
    except Exception as exc:
        return Slow(exc)


async def admit_slowly(stage: Entry, now: float, slow: Slow) -> Any:
    """
    Wait to enter *stage*, or raise its rejection after a checkpoint.

    Every rejection is a full checkpoint, as trio's conventions ask of
    every call into an async API: a cancelled caller gets its
    cancellation, and other tasks get to run.
    """
    error = slow.error
    if error is None:
        resume = slow.resume
        if resume is not None:
            slow.resume = None
            return await resume(now)
        return await stage.enter(now)
    try:
        # refuse(), inline: one coroutine frame fewer per rejection.
        try:
            await checkpoint()
        except BaseException:
            withdraw(stage, error)
            raise
        raise error
    finally:
        # The frame would hold the error, whose traceback holds the frame.
        error = slow.error = None


async def refuse(entry: object, rejection: Exception) -> None:
    """
    The checkpoint of *entry*'s *rejection*, before it is raised.

    A caller cancelled there gets its cancellation, not the rejection:
    the policy is told (:func:`withdraw`), so that it counts a cancelled
    call as the pipeline does, not a rejection.  One outcome per call.
    """
    try:
        await checkpoint()
    except BaseException:
        withdraw(entry, rejection)
        raise


def withdraw(entry: object, rejection: Exception) -> None:
    """Tell *entry* (a stage or a policy) its *rejection* was withdrawn."""
    method = getattr(entry, "withdraw", None)
    if method is not None:
        method(rejection)
