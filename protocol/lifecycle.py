"""Running a hub or an agent service until SIGINT/SIGTERM: the first signal drains, a second forces.

Like :mod:`protocol.mqtt`, not imported by ``import protocol``.
"""

from protocol._lifecycle import Server, raise_forcing, serve_until_signalled

__all__ = ["Server", "raise_forcing", "serve_until_signalled"]
