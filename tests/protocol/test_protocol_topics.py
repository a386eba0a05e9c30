"""MQTT topic names: building, parsing, rejecting ids that are not one topic level."""

from __future__ import annotations

import dataclasses

import pytest

from protocol import DEFAULT_SHARE_GROUP, MAX_ID_LENGTH, Topics

BAD_IDS = ["", "a/b", "+", "a+b", "#", "x#", "$SYS", "\0", "a\0b", "x" * (MAX_ID_LENGTH + 1)]


def test_default_topics() -> None:
    topics = Topics()
    assert topics.prefix == "edgecut"
    assert topics.request("cam-01") == "edgecut/v1/req/cam-01"
    assert topics.response("cam-01") == "edgecut/v1/resp/cam-01"
    assert topics.status("hub-a") == "edgecut/v1/status/hub-a"
    assert topics.all_requests() == "edgecut/v1/req/+"
    assert topics.all_responses() == "edgecut/v1/resp/+"
    assert topics.all_status() == "edgecut/v1/status/+"
    assert topics.shared_requests() == f"$share/{DEFAULT_SHARE_GROUP}/edgecut/v1/req/+"
    assert DEFAULT_SHARE_GROUP == "edgecut-hubs"
    assert topics.shared_requests("g1") == "$share/g1/edgecut/v1/req/+"
    assert topics.ping("cam-01") == "edgecut/v1/ping/cam-01"
    assert topics.all_pings() == "edgecut/v1/ping/+"
    assert topics.shared_pings("g1") == "$share/g1.pings/edgecut/v1/ping/+"


def test_multi_level_prefix() -> None:
    topics = Topics("test/abc123/edgecut")
    assert topics.request("a") == "test/abc123/edgecut/v1/req/a"
    assert topics.shared_requests("g") == "$share/g/test/abc123/edgecut/v1/req/+"
    assert topics.agent_of_request("test/abc123/edgecut/v1/req/a") == "a"


@pytest.mark.parametrize("agent", ["a", "cam-01", "ünïcødé", "x" * MAX_ID_LENGTH, "with space", "a$"])
def test_parse_what_was_built(agent: str) -> None:
    topics = Topics("p")
    assert topics.agent_of_request(topics.request(agent)) == agent
    assert topics.agent_of_response(topics.response(agent)) == agent
    assert topics.agent_of_ping(topics.ping(agent)) == agent
    assert topics.node_of_status(topics.status(agent)) == agent


@pytest.mark.parametrize("bad", BAD_IDS)
def test_invalid_ids_are_rejected(bad: str) -> None:
    topics = Topics()
    for build in (
        topics.request,
        topics.response,
        topics.ping,
        topics.status,
        topics.shared_requests,
        topics.shared_pings,
    ):
        with pytest.raises(ValueError, match="must"):
            build(bad)


@pytest.mark.parametrize(
    "topic",
    [
        "edgecut/v1/req/",
        "edgecut/v1/req/a/b",
        "edgecut/v1/req/+",
        "edgecut/v1/resp/a",
        "edgecut/v2/req/a",
        "other/v1/req/a",
        "xedgecut/v1/req/a",
        "edgecut/v1/req",
        "",
    ],
)
def test_parsing_foreign_topics_fails(topic: str) -> None:
    with pytest.raises(ValueError, match=r"topic|must"):
        Topics().agent_of_request(topic)


@pytest.mark.parametrize("prefix", ["", "/edgecut", "edgecut/", "a//b", "a/+/b", "#", "$SYS/x", "a\0"])
def test_invalid_prefixes_are_rejected(prefix: str) -> None:
    with pytest.raises(ValueError, match="prefix"):
        Topics(prefix)


def test_prefix_must_be_a_string() -> None:
    with pytest.raises(TypeError):
        Topics(5)  # type: ignore[arg-type]


def test_topics_are_frozen() -> None:
    topics = Topics()
    with pytest.raises(dataclasses.FrozenInstanceError):
        topics.prefix = "x"  # type: ignore[misc]
