"""A local MQTT 5 broker process for the zero-setup default, demos and tests.

``mosquitto`` is used when it is on ``PATH`` (it is the broker the tests and CI
run), else the embedded rumqttd broker that the ``iotcore`` package ships. Both
get a generated config: loopback only, TCP_NODELAY where the broker has the
setting, no silent queue limit, and a packet size limit that fits the largest
protocol message. docs/broker.md compares the two.

Either broker process dies with the process that started it, even one killed
with SIGKILL: mosquitto runs under a small watchdog (``_watchdog.py``) that
stops it when its stdin pipe from the parent closes, as iotcore's child does.
"""

from __future__ import annotations

import contextlib
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Literal, Self

from protocol import DEFAULT_MAX_MESSAGE_BYTES, PACKET_OVERHEAD_BYTES
from protocol.errors import ConfigError, TransportError
from protocol.mqtt import ACKS_AT_ONCE

if TYPE_CHECKING:
    from types import TracebackType

BrokerKind = Literal["auto", "mosquitto", "iotcore"]

_WATCHDOG = Path(__file__).with_name("_watchdog.py")

_MOSQUITTO_CONF = """\
listener {port} {host}
allow_anonymous true
# Without it small request/reply round trips stall for 40+ ms (Nagle's algorithm).
set_tcp_nodelay true
# The default (1000) silently drops QoS 1 messages to slow subscribers. Not 0 (unlimited):
# mosquitto 2.0.11 then drops the connection of a client whose publish the ACL denies.
max_queued_messages 100000
max_queued_bytes 268435456
max_inflight_messages 0
max_packet_size {max_packet}
persistence false
log_dest stderr
log_type error
log_type warning
"""

_RUMQTTD_CONF = """\
id = 0

[router]
id = 0
max_connections = 10010
max_outgoing_packet_count = 200
max_segment_size = 104857600
max_segment_count = 10

[v5.1]
name = "v5-1"
listen = "{host}:{port}"
next_connection_delay_ms = 1
    [v5.1.connections]
    connection_timeout_ms = 60000
    max_payload_size = {max_packet}
    max_inflight_count = 100
"""


_LISTEN_PORTS = range(20000, 32768)
"""Where :func:`free_port` looks: below Linux's default ephemeral range (32768-60999)."""
_PORT_TRIES = 100


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port on ``host`` that nothing listens on right now.

    The port is drawn below the kernel's ephemeral range, not handed out by
    binding to port 0: a client that keeps reconnecting to a port of that range
    while its broker is down can be given the very same port as its own and
    connect to itself (TCP simultaneous open), holding the port the broker
    means to listen on again.
    """
    for port in random.sample(_LISTEN_PORTS, _PORT_TRIES):
        with socket.socket() as sock, contextlib.suppress(OSError):
            sock.bind((host, port))
            return port
    with socket.socket() as sock:  # a host with all of them taken: any free port
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def resolve_kind(kind: BrokerKind) -> Literal["mosquitto", "iotcore"]:
    """The broker ``kind`` names: for ``"auto"``, mosquitto if installed, else iotcore.

    Raises:
        ConfigError: The chosen broker is not installed.
    """
    if kind in {"auto", "mosquitto"} and shutil.which("mosquitto"):
        return "mosquitto"
    if kind == "mosquitto":
        msg = "mosquitto is not on PATH (Debian/Ubuntu: apt-get install mosquitto)"
        raise ConfigError(msg)
    try:
        import iotcore  # noqa: F401, PLC0415 - optional dependency
    except ImportError as exc:
        msg = "no local broker: install mosquitto, or the embedded one with pip install 'edgecut[broker]'"
        raise ConfigError(msg) from exc
    return "iotcore"


class LocalBroker:
    """An MQTT 5 broker child process listening on loopback.

    Args:
        kind: ``"mosquitto"``, ``"iotcore"`` or ``"auto"`` (mosquitto when on PATH).
        port: TCP port; 0 picks a free one.
        host: Address to listen on.
        max_message_bytes: Largest payload the broker must carry.
        extra_config: mosquitto settings appended to the generated config;
            they apply to its one listener (TLS files, ``password_file``,
            ``acl_file``, ``allow_anonymous false``: see docs/security.md).
            Not available with the embedded broker.
    """

    def __init__(
        self,
        *,
        kind: BrokerKind = "auto",
        port: int = 0,
        host: str = "127.0.0.1",
        max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
        extra_config: str = "",
    ) -> None:
        self.kind = resolve_kind(kind)
        if extra_config and self.kind != "mosquitto":
            msg = "extra_config is mosquitto configuration: ask for kind='mosquitto'"
            raise ConfigError(msg)
        self._extra_config = extra_config
        self.host = host
        self.port = port or free_port(host)
        self._max_packet = max_message_bytes + PACKET_OVERHEAD_BYTES
        self._workdir = Path(tempfile.mkdtemp(prefix="edgecut-broker-"))
        self._process: subprocess.Popen[bytes] | None = None
        self._iotcore: object | None = None

    @property
    def url(self) -> str:
        """The broker URL clients use. The embedded broker's carries ``?qos=0`` where acks cannot be made quick.

        rumqttd leaves Nagle's algorithm on and so holds back a small QoS 1
        message until the receiver's delayed acknowledgement, ~44 ms, unless
        the receiver acknowledges at once (edgecut's connections do, on
        Linux: ``protocol.mqtt.ACKS_AT_ONCE``; docs/broker.md). Elsewhere
        requests and replies go at QoS 0, guarded by request deadlines.
        """
        qos = "?qos=0" if self.kind == "iotcore" and not ACKS_AT_ONCE else ""
        return f"mqtt://{self.host}:{self.port}{qos}"

    @property
    def is_running(self) -> bool:
        """True while the broker process is alive."""
        if self._iotcore is not None:
            return bool(self._iotcore.is_running)  # type: ignore[attr-defined]
        return self._process is not None and self._process.poll() is None

    def start(self, timeout: float = 10.0) -> Self:
        """Start the broker and wait until it accepts connections.

        Raises:
            ConfigError: Its port is taken (a local setting to change, not a broker to reach).
            TransportError: It did not come up within ``timeout`` seconds.
        """
        if self.is_running:
            return self
        self._check_port_free()
        if self.kind == "mosquitto":
            self._start_mosquitto()
        else:
            self._start_iotcore(timeout)
        self._wait_listening(timeout)
        return self

    def stop(self) -> None:
        """Stop the broker process. Safe to call twice."""
        if self._iotcore is not None:
            self._iotcore.stop()  # type: ignore[attr-defined]
            self._iotcore = None
        process, self._process = self._process, None
        if process is None:
            return
        if process.poll() is None:
            process.terminate()  # the watchdog passes it on to mosquitto and waits for it
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(5)
        _close_pipe(process)

    def kill(self) -> None:
        """Kill the broker abruptly (SIGKILL), as a crash would."""
        process, self._process = self._process, None
        if process is None:
            iotcore = self._iotcore
            child = getattr(iotcore, "_process", None)  # iotcore has no kill(): kill its child process
            if child is not None:
                child.kill()
            self.stop()
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)  # the watchdog and mosquitto, in their own session
        process.wait(5)
        _close_pipe(process)
        self._wait_port_free(5.0)  # mosquitto, reparented, may hold the port a moment longer

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
        shutil.rmtree(self._workdir, ignore_errors=True)

    def __repr__(self) -> str:
        state = "running" if self.is_running else "stopped"
        return f"<LocalBroker {self.kind} {self.host}:{self.port} {state}>"

    def _wait_port_free(self, seconds: float) -> None:
        """Wait until the port can be bound again (bounded by ``seconds``)."""
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            try:
                self._check_port_free()
            except ConfigError:
                time.sleep(0.005)
            else:
                return

    def _check_port_free(self) -> None:
        """Refuse a taken port up front: a connect test alone would find the other listener."""
        with socket.socket() as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as mosquitto does: TIME_WAIT is fine
            try:
                probe.bind((self.host, self.port))
            except OSError as exc:
                msg = f"cannot start {self.kind} on {self.host}:{self.port}: {exc.strerror or exc}"
                raise ConfigError(msg) from exc

    def _start_mosquitto(self) -> None:
        conf = self._workdir / "mosquitto.conf"
        settings = _MOSQUITTO_CONF.format(port=self.port, host=self.host, max_packet=self._max_packet)
        if os.geteuid() == 0:
            # As root, mosquitto switches to user 'mosquitto' and could no longer read the files
            # extra_config names; a child process keeps its parent's privileges.
            settings += "user root\n"
        conf.write_text(settings + self._extra_config)
        mosquitto = shutil.which("mosquitto") or "mosquitto"
        with (self._workdir / "mosquitto.log").open("ab") as log:  # the child keeps its own handle
            self._process = subprocess.Popen(  # noqa: S603 - fixed argv, generated config
                [sys.executable, "-I", str(_WATCHDOG), mosquitto, "-c", str(conf)],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.PIPE,  # the watchdog stops mosquitto when this pipe closes
                start_new_session=True,  # Ctrl+C in a terminal reaches us, and we stop the broker
            )

    def _start_iotcore(self, timeout: float) -> None:
        from iotcore import Broker  # noqa: PLC0415 - optional dependency

        conf = self._workdir / "rumqttd.toml"
        conf.write_text(_RUMQTTD_CONF.format(port=self.port, host=self.host, max_packet=self._max_packet))
        broker = Broker(port=self.port, listen=self.host, config_path=str(conf))
        try:
            broker.start(timeout=timeout)
        except (OSError, RuntimeError) as exc:
            msg = f"embedded broker did not start on {self.host}:{self.port}: {exc}"
            raise TransportError(msg) from exc
        self._iotcore = broker

    def _wait_listening(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.is_running:
                break
            with contextlib.suppress(OSError), socket.create_connection((self.host, self.port), timeout=0.2):
                return
            time.sleep(0.02)
        log = self._workdir / "mosquitto.log"
        detail = log.read_text(errors="replace").strip() if log.exists() else ""
        self.stop()
        msg = f"{self.kind} did not start listening on {self.host}:{self.port} within {timeout} s. {detail}"
        raise TransportError(msg.strip())


def _close_pipe(process: subprocess.Popen[bytes]) -> None:
    if process.stdin is not None:
        process.stdin.close()
