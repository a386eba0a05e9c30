"""The ``edgecut`` command: one thin layer over the packages' public functions.

Each subcommand module registers its parser and a handler; handlers return an
:class:`~edgecut._exit.ExitCode`. Errors from the :class:`EdgecutError` tree map
to their exit codes here, in one place.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import TYPE_CHECKING

from edgecut._exit import ExitCode
from edgecut._version import __version__
from protocol.errors import ConfigError, EdgecutError, ModelError, ProviderUnavailableError, TransportError

if TYPE_CHECKING:
    from collections.abc import Sequence

_ERROR_EXITS: tuple[tuple[type[EdgecutError], ExitCode], ...] = (
    (ModelError, ExitCode.MODEL),
    (ProviderUnavailableError, ExitCode.PROVIDER),  # a ConfigError: before it
    (ConfigError, ExitCode.CONFIG),
    (TransportError, ExitCode.TRANSPORT),
)


def build_parser() -> argparse.ArgumentParser:
    """The full argument parser, with every subcommand registered."""
    from edgecut import _cli_agent, _cli_broker, _cli_models, _cli_runtime, _cli_service, _cli_sim  # noqa: PLC0415 - keeps `import edgecut` light

    parser = argparse.ArgumentParser(
        prog="edgecut",
        description="Edge-cloud split inference over MQTT.",
        epilog="exit codes:\n" + "\n".join(f"  {code.value:<5}{code.meaning}" for code in ExitCode),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"edgecut {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    _cli_models.register(commands)
    _cli_runtime.register(commands)
    _cli_agent.register(commands)
    _cli_service.register(commands)
    _cli_broker.register(commands)
    _cli_sim.register(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line and return its exit code."""
    from edgecut._cli_service import argv_with_serve  # noqa: PLC0415 - keeps `import edgecut` light

    parser = build_parser()
    args = parser.parse_args(argv_with_serve(list(sys.argv[1:] if argv is None else argv)))
    try:
        return int(args.handler(args))
    except KeyboardInterrupt:
        return ExitCode.INTERRUPTED
    except BrokenPipeError:  # `edgecut ... | head` closed our stdout: not an error
        # Point stdout at /dev/null so the interpreter's final flush does not fail again.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return ExitCode.OK
    except EdgecutError as exc:
        print(f"edgecut: error: {exc}", file=sys.stderr)  # noqa: T201
        return _exit_code(exc)
    except OSError as exc:  # what no layer below turned into an EdgecutError: a path, a host, a port in use
        print(f"edgecut: error: {exc}", file=sys.stderr)  # noqa: T201
        return ExitCode.TRANSPORT if isinstance(exc, ConnectionError) else ExitCode.CONFIG


def _exit_code(exc: EdgecutError) -> ExitCode:
    from edge_agent import HubError, InvalidReplyError, RequestTimeoutError  # noqa: PLC0415 - only on this path

    if isinstance(exc, RequestTimeoutError):  # a TransportError, with a code of its own
        return ExitCode.TIMEOUT
    if isinstance(exc, HubError | InvalidReplyError):
        return ExitCode.HUB
    for kind, code in _ERROR_EXITS:
        if isinstance(exc, kind):
            return code
    return ExitCode.FAILED
