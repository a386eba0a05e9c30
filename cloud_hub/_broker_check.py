"""``edgecut broker-check``: verify, against any broker, what edgecut relies on.

:func:`check_broker` connects as two hubs and an agent and runs every probe of
:mod:`cloud_hub._broker_probes` in turn, each bounded in time and messages:
MQTT 5, shared subscriptions, response topics, retained status, last will, the
largest message that passes; and then what edgecut copes without
(:mod:`cloud_hub._broker_quirks`): persistent sessions, clients' packet limits,
share groups kept apart.
"""

from __future__ import annotations

import asyncio
import dataclasses
from typing import TYPE_CHECKING

from cloud_hub._broker_probes import BrokerCheck, BrokerProbes, Outcome, failed
from cloud_hub._broker_quirks import packet_limit, persistent_session, share_groups
from protocol import DEFAULT_MAX_MESSAGE_BYTES
from protocol.errors import ConfigError, EdgecutError, TransportError
from protocol.mqtt import BrokerURL

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

MIN_PROBE_BYTES = 1024
"""The smallest message the size search tries."""


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class BrokerReport:
    """What :func:`check_broker` found.

    Attributes:
        url: The broker, password left out.
        prefix: The topic prefix every probe used.
        checks: One per check, in the order they ran.
    """

    url: str
    prefix: str
    checks: tuple[BrokerCheck, ...]

    @property
    def ok(self) -> bool:
        """Every check edgecut requires passed."""
        return all(check.ok for check in self.checks)

    def to_dict(self) -> dict[str, object]:
        """The report as plain JSON values."""
        return {
            "url": self.url,
            "prefix": self.prefix,
            "ok": self.ok,
            "checks": [dataclasses.asdict(check) for check in self.checks],
        }


@dataclasses.dataclass(frozen=True, slots=True)
class SizeSearch:
    """The outcome of :func:`largest_passing`.

    Attributes:
        largest: The largest size that passed (``None``: not even the smallest).
        smallest_failed: The smallest size that failed (``None``: none did).
        probes: How many sizes were tried.
    """

    largest: int | None
    smallest_failed: int | None
    probes: int


async def largest_passing(
    passes: Callable[[int], Awaitable[bool]], *, low: int, high: int, max_probes: int, resolution: int
) -> SizeSearch:
    """Binary-search the largest size in ``[low, high]`` for which ``passes(size)`` holds.

    Tries ``high`` first (a broker with no limit below it costs one probe),
    then ``low``, then halves the gap until it is at most ``resolution``
    bytes or ``max_probes`` sizes were tried.
    """
    if await passes(high):
        return SizeSearch(high, None, 1)
    if not await passes(low):
        return SizeSearch(None, low, 2)
    good, bad, probes = low, high, 2
    while bad - good > resolution and probes < max_probes:
        middle = (good + bad) // 2
        probes += 1
        if await passes(middle):
            good = middle
        else:
            bad = middle
    return SizeSearch(good, bad, probes)


async def check_broker(
    url: BrokerURL | str,
    *,
    timeout_s: float = 5.0,
    requests: int = 20,
    min_message_bytes: int = 64 * 1024,
    max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
    max_size_probes: int = 16,
) -> BrokerReport:
    """Check what edgecut needs of the broker at ``url``.

    Args:
        url: The broker, in the CLI's URL forms (``mqtt://``, ``mqtts://``, TLS options).
        timeout_s: The most any one step of a check waits.
        requests: Requests the agent sends to the two hubs' shared subscription.
        min_message_bytes: The largest message your deployment sends: the size
            check fails when less passes.
        max_message_bytes: Where the size search starts: the largest message
            it tries.
        max_size_probes: The most sizes the search tries.

    Raises:
        TransportError: The broker is unreachable, or refused the connection
            for another reason than MQTT 5 (credentials, TLS).
        ConfigError: The URL is malformed, a TLS file unusable, or
            ``min_message_bytes`` outside ``[1024, max_message_bytes]``.
    """
    broker = BrokerURL.parse(url)
    if not MIN_PROBE_BYTES <= min_message_bytes <= max_message_bytes:
        msg = (
            f"the size needed ({min_message_bytes:,} bytes) must lie between {MIN_PROBE_BYTES:,} bytes"
            f" and the largest size tried ({max_message_bytes:,} bytes)"
        )
        raise ConfigError(msg)
    broker.tls_context()  # a bad TLS file is a setting to fix, not a broker to report on
    await _reach(broker, timeout_s)
    probes = BrokerProbes(broker, timeout_s=timeout_s)
    hello = await probes.mqtt5()
    checks = [hello]
    if hello.outcome == "pass":
        checks += await _guarded(("shared_subscriptions", "response_topic"), probes.requests(requests))
        checks += await _guarded(("retained",), _one(probes.retained()))
        checks += await _guarded(("last_will",), _one(probes.last_will()))
        size = _size_check(probes, min_message_bytes, max_message_bytes, max_size_probes)
        checks += await _guarded(("largest_message",), _one(size))
        for quirk in (persistent_session, packet_limit, share_groups):
            checks += await _guarded((quirk.__name__,), _one(quirk(probes)), required=False)
    return BrokerReport(url=str(broker), prefix=probes.topics.prefix, checks=tuple(checks))


async def _reach(broker: BrokerURL, timeout_s: float) -> None:
    """Open and close a TCP connection: an unreachable broker fails here, before any check."""
    try:
        _, writer = await asyncio.wait_for(asyncio.open_connection(broker.host, broker.port), timeout_s)
    except (OSError, TimeoutError) as exc:
        reason = str(exc) or f"no answer within {timeout_s:g} s"
        msg = f"cannot reach the broker at {broker}: {reason}"
        raise TransportError(msg) from exc
    writer.close()
    await writer.wait_closed()


async def _one(check: Awaitable[BrokerCheck]) -> tuple[BrokerCheck]:
    return (await check,)


async def _guarded(
    names: tuple[str, ...], checks: Awaitable[tuple[BrokerCheck, ...]], *, required: bool = True
) -> tuple[BrokerCheck, ...]:
    """Run ``checks``; if they cannot be carried out, each of ``names`` fails with the reason."""
    try:
        return await checks
    except (EdgecutError, TimeoutError) as exc:
        return tuple(failed(name, required=required, error=exc) for name in names)


async def _size_check(probes: BrokerProbes, need: int, high: int, max_probes: int) -> BrokerCheck:
    count = iter(range(max_probes))
    async with probes.receiver("sizes", probes.size_topics(), high) as inbox:
        search = await largest_passing(
            lambda size: probes.deliverable(size, next(count), inbox),
            low=MIN_PROBE_BYTES,
            high=high,
            max_probes=max_probes,
            resolution=MIN_PROBE_BYTES,
        )
    largest, failed_at = search.largest, search.smallest_failed
    if largest is None:
        figure = f"not even {MIN_PROBE_BYTES:,} bytes"
    elif failed_at is None:
        figure = f"{largest:,} bytes, the largest tried"
    else:
        figure = f"{largest:,} bytes ({failed_at:,} failed)"
    data: dict[str, object] = {
        "largest_bytes": largest,
        "smallest_failed_bytes": failed_at,
        "needed_bytes": need,
        "probes": search.probes,
    }
    outcome: Outcome = "pass" if largest is not None and largest >= need else "fail"
    return BrokerCheck(name="largest_message", outcome=outcome, required=True, figure=figure, data=data)
