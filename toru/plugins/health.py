"""The health rules: when a running plugin is judged unhealthy, and its run ended.

One :class:`Rule` per run counts failures in a row: a pass resets it and marks
the plugin healthy, a failure marks it unhealthy and records an ``unhealthy``
event naming the rule, and the failure that reaches the limit ends the run
(the runner then stops the process and restarts it through backoff).

- ``pings`` (modern plugins, :func:`judge_pings`): the first ping is due one
  interval after ``init``, then one every interval on a fixed schedule; a ping
  without a valid pong (the same ``request_id``) within the timeout is a miss
  **from the very first one**. So a plugin that never answers, answers with the
  wrong id or blocks its event loop is judged like one that stopped answering,
  within ``interval * limit + timeout``.
- ``legacy exchanges`` (legacy plugins, never pinged, :func:`judge_exchanges`):
  an exchange that timed out while in flight, or a connection the socket
  refused, is a failure; any answer resets the count.
"""

from __future__ import annotations

import contextlib
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

import attrs
import trio

from toru.plugins.connection import ConnectionLost, PluginChannel, RequestTimeout
from toru.plugins.messages import Ping, is_pong

PINGS = "pings"
LEGACY_EXCHANGES = "legacy exchanges"


class Finish(Protocol):
    """How a run's task says the run is over: the reason, and the health rule if one fired."""

    def __call__(self, reason: str, rule: str | None = None) -> None: ...


@attrs.define(eq=False)
class Rule:
    """Failures in a row of one rule, and what they mean for the run."""

    name: str
    limit: int
    #: The ``unhealthy`` event's field for the count (``missed_pings``, ...).
    count_field: str
    #: The run's end reason once the limit is reached, given the count.
    verdict: Callable[[int], str]
    set_healthy: Callable[[bool], None]
    record: Callable[..., Awaitable[None]]
    finish: Finish
    failures: int = 0

    def passed(self) -> None:
        self.failures = 0
        self.set_healthy(True)

    async def failed(self, reason: str) -> bool:
        """Count a failure; True when it reached the limit and ended the run."""
        self.failures += 1
        self.set_healthy(False)
        details: dict[str, Any] = {self.count_field: self.failures}
        await self.record("unhealthy", rule=self.name, **details, limit=self.limit, reason=reason)
        if self.failures >= self.limit:
            self.finish(f"unhealthy: {self.verdict(self.failures)}", self.name)
            return True
        return False


async def judge_pings(
    channel: PluginChannel, rule: Rule, *, interval: float, timeout: float
) -> None:
    """Modern plugins: a ping every *interval* from ``init`` on; every unanswered one counts."""
    due = trio.current_time() + interval
    while True:
        await trio.sleep_until(due)
        due = trio.current_time() + interval
        try:
            # A ping frame is tiny: if the plugin reads so little that even it cannot be
            # written within the timeout, that is a miss, and the write (shielded, so that
            # no frame is cut) holds up a stop by at most that long.
            reply = await channel.request(Ping(), timeout=timeout, write_limit=timeout)
        except RequestTimeout:
            problem: str | None = f"no pong within {timeout:g} s"
        except ConnectionLost as exc:
            rule.finish(f"connection lost: {exc}")
            return
        else:
            problem = None if is_pong(reply) else "answered the ping with something else"
        if problem is None:
            rule.passed()
        elif await rule.failed(problem):
            return


async def judge_exchanges(outcomes: trio.MemoryReceiveChannel[str | None], rule: Rule) -> None:
    """Legacy plugins: consecutive timed-out or refused exchanges make it unhealthy."""
    async for failure in outcomes:
        if failure is None:
            rule.passed()
        elif await rule.failed(failure):
            return


def exchange_reporter(channel: trio.MemorySendChannel[str | None]) -> Callable[[str | None], None]:
    """A sync callback that hands exchange outcomes to :func:`judge_exchanges` (dropped if it
    lags: a legacy plugin's exchanges are one at a time, so 64 queued is far behind)."""

    def report(failure: str | None) -> None:
        with contextlib.suppress(
            trio.WouldBlock, trio.ClosedResourceError, trio.BrokenResourceError
        ):
            channel.send_nowait(failure)

    return report
