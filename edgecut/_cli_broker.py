"""``edgecut broker-check``: what edgecut relies on, verified against a broker before deploying."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import TYPE_CHECKING

from edgecut._cli_runtime import BROKER_HELP, env, parse_size, setup_logging
from edgecut._cli_text import out, print_table
from edgecut._cli_values import at_least_one, positive
from edgecut._exit import ExitCode
from edgecut._output import print_json

if TYPE_CHECKING:
    import argparse
    from collections.abc import Iterator

    from cloud_hub import BrokerReport

# The probes break connections on purpose (oversized messages, a dropped socket): the clients'
# own logs would report each break again. The report says what failed.
_CLIENT_LOGGERS = ("edgecut.mqtt", "mqtt")

_DESCRIPTION = """\
Connect to a broker as two hubs and an agent and verify what edgecut relies on,
on topics under a random prefix (edgecut-check/<hex>/), so it never disturbs a
live deployment. Needed: MQTT 5; requests spread across two hubs by a shared
subscription ($share/...) with none lost; ResponseTopic and CorrelationData
intact on the replies; a retained status reaching a later subscriber; the last
will of a client that drops its socket; messages of --min-message bytes (a
binary search reports the largest that passes, up to --max-message). Reported
but not needed: QoS 1 messages kept for a persistent session while it was away,
a client's Maximum Packet Size honoured, two filters shared under one group
name kept apart. Every step waits at most --timeout seconds. Exit 0 when every
needed check passes, 1 when one fails, 5 when the broker cannot be reached or
refuses the connection (docs/broker.md#checking-a-broker)."""


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``broker-check`` to the ``edgecut`` parser."""
    parser = commands.add_parser(
        "broker-check",
        help="verify that a broker does what edgecut relies on",
        description=_DESCRIPTION,
    )
    parser.add_argument(
        "url", nargs="?", default=env("BROKER", "mqtt://127.0.0.1:1883"), metavar="URL", help=BROKER_HELP
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object with every check")
    parser.add_argument("--timeout", type=positive, default=5.0, help="seconds any one step waits (default 5)")
    parser.add_argument(
        "--requests", type=at_least_one, default=20, help="requests spread across the two hubs (default 20)"
    )
    parser.add_argument(
        "--min-message",
        type=parse_size,
        default="64K",
        metavar="SIZE",
        help="the largest message you send: the size check fails below it (default 64K;"
        " `edgecut models cuts MODEL` lists the bytes of each cut)",
    )
    parser.add_argument(
        "--max-message",
        type=parse_size,
        default="16M",
        metavar="SIZE",
        help="the largest message the size search tries (default 16M, edgecut's limit)",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log the clients' connections")
    parser.set_defaults(handler=_broker_check)


def _broker_check(args: argparse.Namespace) -> ExitCode:
    from cloud_hub import check_broker  # noqa: PLC0415 - keeps `edgecut --help` light

    setup_logging(args.verbose)
    with contextlib.nullcontext() if args.verbose else _quiet(_CLIENT_LOGGERS):
        report = asyncio.run(
            check_broker(
                args.url,
                timeout_s=args.timeout,
                requests=args.requests,
                min_message_bytes=args.min_message,
                max_message_bytes=args.max_message,
            )
        )
    if args.json:
        print_json(report.to_dict())
    else:
        _print_report(report)
    return ExitCode.OK if report.ok else ExitCode.FAILED


@contextlib.contextmanager
def _quiet(names: tuple[str, ...]) -> Iterator[None]:
    """Silence loggers ``names`` for a while, then give them back their levels."""
    loggers = [logging.getLogger(name) for name in names]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        for logger, level in zip(loggers, levels, strict=True):
            logger.setLevel(level)


def _print_report(report: BrokerReport) -> None:
    out(f"{report.url}, topics under {report.prefix}/")
    rows = [(c.name, "yes" if c.required else "no", c.outcome, c.figure) for c in report.checks]
    print_table(("check", "needed", "result", "figure"), rows)
    failed = [check.name for check in report.checks if not check.ok]
    out(f"failed: {', '.join(failed)}" if failed else "every check edgecut needs passed")
