"""Running a hub or an agent service until SIGINT/SIGTERM (the first drains, a second forces); stopping tasks.

Like :mod:`protocol.mqtt`, not imported by ``import protocol``.
"""

from protocol._lifecycle import Server, cancel_and_wait, raise_forcing, serve_until_signalled

__all__ = ["Server", "cancel_and_wait", "raise_forcing", "serve_until_signalled"]
