"""Exit codes of the ``edgecut`` command, one meaning each."""

from enum import IntEnum


class ExitCode(IntEnum):
    """What an ``edgecut`` exit status means to a script (:attr:`meaning` says it in words)."""

    OK = 0
    FAILED = 1
    USAGE = 2
    MODEL = 3
    CONFIG = 4
    TRANSPORT = 5
    TIMEOUT = 6
    HUB = 7
    PROVIDER = 8
    INTERRUPTED = 130

    @property
    def meaning(self) -> str:
        """What the code means, as ``edgecut --help`` and the README list it."""
        return _MEANINGS[self]


_MEANINGS = {
    ExitCode.OK: "done",
    ExitCode.FAILED: "ran, but a check failed (results beyond tolerance, --verify, a needed broker-check)",
    ExitCode.USAGE: "bad command-line arguments",
    ExitCode.MODEL: "unknown or invalid model, cut or split",
    ExitCode.CONFIG: "bad setting (broker URL, path, TLS files, a local port already taken)",
    ExitCode.TRANSPORT: "broker unreachable or connection failed",
    ExitCode.TIMEOUT: "no reply before the deadline and no fallback",
    ExitCode.HUB: "the hub refused the request or sent an unusable reply, and no fallback applied",
    ExitCode.PROVIDER: "an execution provider asked for (--providers cuda) is not in the installed onnxruntime",
    ExitCode.INTERRUPTED: "interrupted (Ctrl+C)",
}
