"""Broker URLs: what parses, what is refused, and what is safe to log."""

from __future__ import annotations

import ssl
from typing import TYPE_CHECKING

import pytest

from protocol.errors import ConfigError
from protocol.mqtt import BrokerURL

if TYPE_CHECKING:
    from pathlib import Path


@pytest.mark.parametrize(
    ("url", "host", "port", "tls"),
    [
        ("mqtt://broker.example", "broker.example", 1883, False),
        ("mqtts://broker.example", "broker.example", 8883, True),
        ("mqtt://127.0.0.1:1999", "127.0.0.1", 1999, False),
        ("mqtts://10.0.0.2:443", "10.0.0.2", 443, True),
        ("mqtt://[::1]:1884", "::1", 1884, False),
    ],
)
def test_defaults_and_explicit_ports(url: str, host: str, port: int, tls: bool) -> None:  # noqa: FBT001
    parsed = BrokerURL.parse(url)
    assert (parsed.host, parsed.port, parsed.tls) == (host, port, tls)
    assert parsed.qos == 1
    assert (parsed.username, parsed.password) == (None, None)
    assert (parsed.ca_file, parsed.cert_file, parsed.key_file, parsed.insecure) == (None, None, None, False)


def test_a_lone_slash_is_not_a_path() -> None:
    assert BrokerURL.parse("mqtt://host:1999/").port == 1999


def test_a_parsed_url_passes_through_unchanged() -> None:
    parsed = BrokerURL.parse("mqtt://h:1")
    assert BrokerURL.parse(parsed) is parsed


def test_user_and_password_are_percent_decoded() -> None:
    parsed = BrokerURL.parse("mqtt://dev%40site:p%3Ass%2Fw%40rd@host:1884")
    assert parsed.username == "dev@site"
    assert parsed.password == "p:ss/w@rd"  # noqa: S105 - a test fixture, not a secret
    assert (parsed.host, parsed.port) == ("host", 1884)


def test_user_without_password() -> None:
    parsed = BrokerURL.parse("mqtt://alice@host")
    assert (parsed.username, parsed.password) == ("alice", None)
    assert str(parsed) == "mqtt://alice@host:1883?qos=1"


@pytest.mark.parametrize(("query", "qos"), [("?qos=0", 0), ("?qos=1", 1), ("", 1), ("?qos=1&qos=0", 0)])
def test_qos_option(query: str, qos: int) -> None:
    assert BrokerURL.parse(f"mqtt://host{query}").qos == qos


def test_tls_options() -> None:
    parsed = BrokerURL.parse("mqtts://host?ca=/etc/ca.pem&cert=/etc/me.crt&key=/etc/me.key&insecure=1&qos=0")
    assert parsed.tls
    assert parsed.port == 8883
    assert (parsed.ca_file, parsed.cert_file, parsed.key_file) == ("/etc/ca.pem", "/etc/me.crt", "/etc/me.key")
    assert parsed.insecure
    assert parsed.qos == 0


@pytest.mark.parametrize(("value", "insecure"), [("1", True), ("true", True), ("yes", True), ("0", False), ("", False)])
def test_insecure_flag_values(value: str, insecure: bool) -> None:  # noqa: FBT001
    assert BrokerURL.parse(f"mqtts://host?insecure={value}").insecure is insecure


def test_str_and_repr_leave_the_password_out() -> None:
    parsed = BrokerURL.parse("mqtts://bob:hunter2@host:8884?qos=0")
    assert str(parsed) == "mqtts://bob:***@host:8884?qos=0"
    assert "hunter2" not in str(parsed)
    assert "hunter2" not in repr(parsed)
    assert parsed.password == "hunter2"  # noqa: S105 - a test fixture, not a secret


@pytest.mark.parametrize(
    ("url", "fragment"),
    [
        ("http://host:1883", "must start with mqtt:// or mqtts://"),
        ("host:1883", "must start with mqtt:// or mqtts://"),
        ("tcp://host", "must start with mqtt:// or mqtts://"),
        ("mqtt://host:notaport", "invalid port"),
        ("mqtt://host:70000", "invalid port"),
        ("mqtt://host:0", "names port 0, which is not a broker's port"),
        ("mqtt://host:1883/edgecut", "has a path ('/edgecut')"),
        ("mqtt://host:1883#frag", "has a fragment ('#frag')"),
        ("mqtt://:1883", "no host"),
        ("mqtt://", "no host"),
        ("mqtt://user:pw@:1883", "no host"),
        ("mqtt://host?retain=1", "unknown options ['retain']"),
        ("mqtt://host?qos=2", "qos must be 0 or 1, not '2'"),
        ("mqtt://host?qos=", "qos must be 0 or 1, not ''"),
        ("mqtt://host?qos=one", "qos must be 0 or 1"),
        ("mqtt://host?qos", "malformed query"),
        ("mqtt://host?qos=1&&ca=x", "malformed query"),
    ],
)
def test_bad_urls_are_config_errors_naming_the_problem(url: str, fragment: str) -> None:
    with pytest.raises(ConfigError) as caught:
        BrokerURL.parse(url)
    assert fragment in str(caught.value)


def test_unknown_option_error_lists_the_known_ones() -> None:
    with pytest.raises(ConfigError, match="known: \\['ca', 'cert', 'insecure', 'key', 'qos'\\]"):
        BrokerURL.parse("mqtt://host?tls=1")


def test_plain_mqtt_has_no_tls_context() -> None:
    assert BrokerURL.parse("mqtt://host?ca=/does/not/matter").tls_context() is None


def test_mqtts_gets_a_verifying_context() -> None:
    context = BrokerURL.parse("mqtts://host").tls_context()
    assert isinstance(context, ssl.SSLContext)
    assert context.verify_mode == ssl.CERT_REQUIRED
    assert context.check_hostname


def test_insecure_turns_the_host_name_check_off_but_still_verifies() -> None:
    context = BrokerURL.parse("mqtts://host?insecure=1").tls_context()
    assert context is not None
    assert not context.check_hostname
    assert context.verify_mode == ssl.CERT_REQUIRED


def test_missing_ca_file_is_a_config_error(tmp_path: Path) -> None:
    missing = tmp_path / "nope.pem"
    url = BrokerURL.parse(f"mqtts://user:secret@host?ca={missing}")
    with pytest.raises(ConfigError, match="cannot set up TLS") as caught:
        url.tls_context()
    assert "secret" not in str(caught.value)
    assert f"CA file {missing}" in str(caught.value)  # which of the files


def test_unreadable_client_certificate_is_a_config_error(tmp_path: Path) -> None:
    cert = tmp_path / "me.crt"
    cert.write_text("not a certificate")
    with pytest.raises(ConfigError, match=f"cannot set up TLS .*: certificate {cert}"):
        BrokerURL.parse(f"mqtts://host?cert={cert}").tls_context()
