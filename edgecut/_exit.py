"""Exit codes of the ``edgecut`` command, one meaning each."""

from enum import IntEnum


class ExitCode(IntEnum):
    """What an ``edgecut`` exit status means to a script."""

    OK = 0
    """The command did what it was asked."""
    FAILED = 1
    """It ran, but a check failed (for example results beyond tolerance)."""
    USAGE = 2
    """Bad command-line arguments (argparse's own code)."""
    MODEL = 3
    """An unknown or invalid model, cut or split."""
    CONFIG = 4
    """A bad setting: broker URL, path, TLS files."""
    TRANSPORT = 5
    """The broker could not be reached or the connection failed."""
    TIMEOUT = 6
    """A request got no reply before its deadline and no fallback was possible."""
    HUB = 7
    """The hub refused a request (an error reply) or sent an unusable reply, and no fallback applied."""
    PROVIDER = 8
    """An execution provider asked for (``--providers cuda``) is not in the installed onnxruntime."""
    INTERRUPTED = 130
    """Stopped by Ctrl+C."""
