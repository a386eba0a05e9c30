"""An agent's status: online with the version of each model it runs, retained on its own status topic.

Agents announce themselves on ``<p>/v1/agents/<agent-id>``, never on a hub's
status topic (docs/protocol.md, section 9.1): what an operator or a roll-out
reads to know which version every agent runs. The last will says offline.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from protocol import SOFTWARE_VERSION, NodeStatus, encode_status, version_of

if TYPE_CHECKING:
    from collections.abc import Mapping


def agent_status_payload(agent_id: str, *, online: bool, models: Mapping[str, str]) -> bytes:
    """The encoded status of an agent (role ``"agent"``).

    Args:
        agent_id: The agent.
        online: Online, or the offline status of its last will and its goodbye.
        models: The models it runs, by name: the version of each
            (:func:`model_versions`).
    """
    status = NodeStatus(
        node_id=agent_id,
        role="agent",
        state="online" if online else "offline",
        sent_at=time.time(),
        version=SOFTWARE_VERSION,
        models=dict(models),
    )
    return encode_status(status)


def model_versions(model_id: str, model_sha256: str) -> dict[str, str]:
    """``{model_id: version}`` of a model, its version named as offers name it (:func:`protocol.version_of`)."""
    return {model_id: version_of(model_sha256)}
