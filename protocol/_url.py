"""Broker URLs: ``mqtt://[user:pass@]host[:port][?qos=0|1]`` and ``mqtts://`` for TLS."""

from __future__ import annotations

import dataclasses
import ssl
from typing import Literal
from urllib.parse import parse_qs, unquote, urlsplit

from protocol.errors import ConfigError

DEFAULT_PORTS = {"mqtt": 1883, "mqtts": 8883}
_QUERY_KEYS = frozenset({"qos", "ca", "cert", "key", "insecure"})

QoS = Literal[0, 1]


@dataclasses.dataclass(frozen=True, slots=True)
class BrokerURL:
    """Where and how to reach an MQTT broker.

    Attributes:
        host: Broker host name or address.
        port: Broker TCP port.
        username: User name for the broker, if it wants one.
        password: Password for the broker, if it wants one.
        tls: Connect with TLS (``mqtts://``).
        qos: QoS of requests and replies (status messages are always QoS 1).
        ca_file: CA bundle that signs the broker's certificate (``?ca=PATH``).
        cert_file: Client certificate for mutual TLS (``?cert=PATH``).
        key_file: Key of the client certificate (``?key=PATH``).
        insecure: Skip the broker certificate's host name check (``?insecure=1``).
    """

    host: str
    port: int
    username: str | None = None
    password: str | None = dataclasses.field(default=None, repr=False)
    tls: bool = False
    qos: QoS = 1
    ca_file: str | None = None
    cert_file: str | None = None
    key_file: str | None = None
    insecure: bool = False

    @classmethod
    def parse(cls, url: str | BrokerURL) -> BrokerURL:
        """Parse ``mqtt://[user:pass@]host[:port][?qos=0|1&ca=...&cert=...&key=...]``.

        Raises:
            ConfigError: The URL is malformed or names an unknown scheme or option.
        """
        if isinstance(url, BrokerURL):
            return url
        parts = urlsplit(url)
        if parts.scheme not in DEFAULT_PORTS:
            msg = f"broker URL {url!r} must start with mqtt:// or mqtts://"
            raise ConfigError(msg)
        try:
            port = DEFAULT_PORTS[parts.scheme] if parts.port is None else parts.port
        except ValueError as exc:
            msg = f"broker URL {url!r} has an invalid port"
            raise ConfigError(msg) from exc
        host = parts.hostname or ""
        problem = _problem(host, port, parts.path, parts.fragment)
        if problem:
            msg = f"broker URL {url!r} {problem}"
            raise ConfigError(msg)
        query = _single_values(parts.query, url)
        return cls(
            host=host,
            port=port,
            username=unquote(parts.username) if parts.username else None,
            password=unquote(parts.password) if parts.password else None,
            tls=parts.scheme == "mqtts",
            qos=_parse_qos(query.get("qos", "1"), url),
            ca_file=query.get("ca"),
            cert_file=query.get("cert"),
            key_file=query.get("key"),
            insecure=query.get("insecure", "0") in {"1", "true", "yes"},
        )

    def tls_context(self) -> ssl.SSLContext | None:
        """An SSL context for ``mqtts://`` URLs, ``None`` for plain ``mqtt://``.

        Raises:
            ConfigError: A CA, certificate or key file cannot be loaded.
        """
        if not self.tls:
            return None
        try:
            context = ssl.create_default_context(cafile=self.ca_file)
        except (OSError, ssl.SSLError) as exc:
            ca = f"CA file {self.ca_file}: " if self.ca_file else ""
            msg = f"cannot set up TLS for {self}: {ca}{exc}"
            raise ConfigError(msg) from exc
        if self.cert_file:
            try:
                context.load_cert_chain(self.cert_file, self.key_file)
            except (OSError, ssl.SSLError) as exc:
                files = self.cert_file if self.key_file is None else f"{self.cert_file}, key {self.key_file}"
                msg = f"cannot set up TLS for {self}: certificate {files}: {exc}"
                raise ConfigError(msg) from exc
        if self.insecure:
            context.check_hostname = False
        return context

    def __str__(self) -> str:
        """The URL with the password left out, safe to log."""
        scheme = "mqtts" if self.tls else "mqtt"
        user = f"{self.username}:***@" if self.password else f"{self.username}@" if self.username else ""
        return f"{scheme}://{user}{self.host}:{self.port}?qos={self.qos}"


def _problem(host: str, port: int, path: str, fragment: str) -> str | None:
    """What makes a URL's parts unusable, or ``None``."""
    if not host:
        return "has no host"
    if port == 0:
        return "names port 0, which is not a broker's port"
    if path not in {"", "/"}:
        return f"has a path ({path!r}); a broker URL is scheme://[user:pass@]host[:port][?options]"
    if fragment:
        return f"has a fragment ({'#' + fragment!r})"
    return None


def _single_values(query: str, url: str) -> dict[str, str]:
    try:
        values = parse_qs(query, keep_blank_values=True, strict_parsing=bool(query))
    except ValueError as exc:
        msg = f"broker URL {url!r} has a malformed query"
        raise ConfigError(msg) from exc
    unknown = set(values) - _QUERY_KEYS
    if unknown:
        msg = f"broker URL {url!r} has unknown options {sorted(unknown)}; known: {sorted(_QUERY_KEYS)}"
        raise ConfigError(msg)
    return {key: items[-1] for key, items in values.items()}


def _parse_qos(value: str, url: str) -> QoS:
    if value == "0":
        return 0
    if value == "1":
        return 1
    msg = f"broker URL {url!r}: qos must be 0 or 1, not {value!r}"
    raise ConfigError(msg)
