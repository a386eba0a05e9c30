"""MQTT topic names of the protocol."""

from __future__ import annotations

import dataclasses
from typing import Final

from protocol._checks import check_topic_id
from protocol._limits import PROTOCOL_VERSION

DEFAULT_PREFIX: Final = "edgecut"
"""The topic prefix unless configured otherwise."""

DEFAULT_SHARE_GROUP: Final = "edgecut-hubs"
"""The MQTT5 shared-subscription group hubs join unless configured otherwise."""

_PING_SHARE_SUFFIX: Final = ".pings"
"""Added to the share group's name for the hubs' shared subscription to pings."""

_WILDCARDS: Final = ("+", "#", "\0")


@dataclasses.dataclass(frozen=True, slots=True)
class Topics:
    """The topics of one deployment, all under ``<prefix>/v1/``.

    Every id put in a topic must be one valid topic level: non-empty, at most
    ``MAX_ID_LENGTH`` characters, without ``/``, ``+``, ``#`` or NUL, and not
    starting with ``$``; otherwise the methods raise ``ValueError``.

    Attributes:
        prefix: One or more topic levels, e.g. ``"edgecut"`` or
            ``"test/abc123/edgecut"``; no wildcards, no empty level, no
            leading ``$``.
    """

    prefix: str = DEFAULT_PREFIX

    def __post_init__(self) -> None:
        prefix = self.prefix
        if not isinstance(prefix, str):
            msg = f"prefix must be a string, not {type(prefix).__name__}"
            raise TypeError(msg)
        bad_level = "" in prefix.split("/")
        if bad_level or prefix.startswith("$") or any(c in prefix for c in _WILDCARDS):
            msg = (
                "prefix must be topic levels joined by '/', none empty, without"
                f" '+', '#', NUL or a leading '$': {prefix!r}"
            )
            raise ValueError(msg)

    @property
    def _root(self) -> str:
        return f"{self.prefix}/v{PROTOCOL_VERSION}"

    def request(self, agent_id: str) -> str:
        """Where agent ``agent_id`` publishes its requests."""
        return f"{self._root}/req/{check_topic_id(agent_id, 'agent_id')}"

    def response(self, agent_id: str) -> str:
        """Where hubs publish the replies for agent ``agent_id``."""
        return f"{self._root}/resp/{check_topic_id(agent_id, 'agent_id')}"

    def ping(self, agent_id: str) -> str:
        """Where agent ``agent_id`` publishes its pings (link probes)."""
        return f"{self._root}/ping/{check_topic_id(agent_id, 'agent_id')}"

    def status(self, node_id: str) -> str:
        """Where node ``node_id`` publishes its retained status."""
        return f"{self._root}/status/{check_topic_id(node_id, 'node_id')}"

    def offer(self, node_id: str, model: str) -> str:
        """Where node ``node_id`` publishes its retained offer of model ``model``."""
        return f"{self._root}/models/{check_topic_id(node_id, 'node_id')}/{check_topic_id(model, 'model')}"

    def all_offers(self, model: str) -> str:
        """Filter matching every node's offer of model ``model``."""
        return f"{self._root}/models/+/{check_topic_id(model, 'model')}"

    def fetch(self, node_id: str, agent_id: str) -> str:
        """Where agent ``agent_id`` asks node ``node_id`` for blocks."""
        return f"{self._root}/fetch/{check_topic_id(node_id, 'node_id')}/{check_topic_id(agent_id, 'agent_id')}"

    def all_fetches(self, node_id: str) -> str:
        """Filter matching every agent's fetches to node ``node_id``."""
        return f"{self._root}/fetch/{check_topic_id(node_id, 'node_id')}/+"

    def fetches_from(self, agent_id: str) -> str:
        """Filter matching agent ``agent_id``'s fetches to every node."""
        return f"{self._root}/fetch/+/{check_topic_id(agent_id, 'agent_id')}"

    def every_offer(self) -> str:
        """Filter matching every node's offer of every model."""
        return f"{self._root}/models/+/+"

    def blocks(self, agent_id: str) -> str:
        """Where nodes publish the blocks (and refused fetches) for agent ``agent_id``."""
        return f"{self._root}/blocks/{check_topic_id(agent_id, 'agent_id')}"

    def all_blocks(self) -> str:
        """Filter matching every agent's blocks topic."""
        return f"{self._root}/blocks/+"

    def offers_of(self, node_id: str) -> str:
        """Filter matching every offer of node ``node_id``."""
        return f"{self._root}/models/{check_topic_id(node_id, 'node_id')}/+"

    def agent_status(self, agent_id: str) -> str:
        """Where agent ``agent_id`` publishes its retained status (never on a hub's status topic)."""
        return f"{self._root}/agents/{check_topic_id(agent_id, 'agent_id')}"

    def all_agent_status(self) -> str:
        """Filter matching every agent's status topic."""
        return f"{self._root}/agents/+"

    def all_requests(self) -> str:
        """Filter matching every agent's request topic."""
        return f"{self._root}/req/+"

    def all_responses(self) -> str:
        """Filter matching every agent's response topic."""
        return f"{self._root}/resp/+"

    def all_pings(self) -> str:
        """Filter matching every agent's ping topic."""
        return f"{self._root}/ping/+"

    def shared_requests(self, group: str = DEFAULT_SHARE_GROUP) -> str:
        """Shared-subscription filter: each request goes to one hub of ``group``."""
        return f"$share/{check_topic_id(group, 'group')}/{self.all_requests()}"

    def shared_pings(self, group: str = DEFAULT_SHARE_GROUP) -> str:
        """Shared-subscription filter: each ping goes to one hub of ``group``.

        Its share name is the group's with ``.pings`` added: a broker may share
        one name's messages among every filter subscribed under it (rumqttd
        does, and loses those the chosen member's filter does not match).
        """
        share = check_topic_id(check_topic_id(group, "group") + _PING_SHARE_SUFFIX, "group")
        return f"$share/{share}/{self.all_pings()}"

    def all_status(self) -> str:
        """Filter matching every node's status topic."""
        return f"{self._root}/status/+"

    def agent_of_request(self, topic: str) -> str:
        """The agent id in request topic ``topic``.

        Raises:
            ValueError: ``topic`` is not a request topic of this prefix.
        """
        return self._last_level(topic, "req", "agent_id")

    def agent_of_ping(self, topic: str) -> str:
        """The agent id in ping topic ``topic``.

        Raises:
            ValueError: ``topic`` is not a ping topic of this prefix.
        """
        return self._last_level(topic, "ping", "agent_id")

    def agent_of_response(self, topic: str) -> str:
        """The agent id in response topic ``topic``.

        Raises:
            ValueError: ``topic`` is not a response topic of this prefix.
        """
        return self._last_level(topic, "resp", "agent_id")

    def agent_of_fetch(self, node_id: str, topic: str) -> str:
        """The agent id in fetch topic ``topic`` to node ``node_id``.

        Raises:
            ValueError: ``topic`` is not a fetch topic of this prefix to that node.
        """
        return self._last_level(topic, f"fetch/{check_topic_id(node_id, 'node_id')}", "agent_id")

    def node_of_offer(self, model: str, topic: str) -> str:
        """The node id in offer topic ``topic`` of model ``model``.

        Raises:
            ValueError: ``topic`` is not an offer topic of this prefix for that model.
        """
        head = f"{self._root}/models/"
        tail = f"/{check_topic_id(model, 'model')}"
        if not (topic.startswith(head) and topic.endswith(tail)):
            msg = f"{topic!r} is not an offer topic of {model!r} under {head!r}"
            raise ValueError(msg)
        return check_topic_id(topic.removeprefix(head).removesuffix(tail), "node_id")

    def node_of_status(self, topic: str) -> str:
        """The node id in status topic ``topic``.

        Raises:
            ValueError: ``topic`` is not a status topic of this prefix.
        """
        return self._last_level(topic, "status", "node_id")

    def _last_level(self, topic: str, kind: str, name: str) -> str:
        head = f"{self._root}/{kind}/"
        if not topic.startswith(head):
            msg = f"{topic!r} is not a {kind} topic under {head!r}"
            raise ValueError(msg)
        return check_topic_id(topic.removeprefix(head), name)
