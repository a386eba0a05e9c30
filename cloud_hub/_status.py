"""A hub's status message: what it announces of itself, retained, on its status topic."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from protocol import SOFTWARE_VERSION, NodeStatus, encode_status

if TYPE_CHECKING:
    from collections.abc import Mapping

    from cloud_hub._profile import LoadProfile
    from cloud_hub._store import TailStore


def status_payload(
    hub_id: str,
    *,
    online: bool,
    held: int,
    profile: LoadProfile,
    store: TailStore,
    refused: Mapping[str, int],
) -> bytes:
    """The encoded status of a hub: online with its load, profile and loads; or offline (its last will).

    Args:
        hub_id: The hub.
        online: Online, or the offline status of its last will and its goodbye.
        held: Requests it holds.
        profile: Its recent queue waits and tail times.
        store: Its tails, for what it is loading and the providers its models run on.
        refused: What it refused and dropped so far, by reason.
    """
    now = time.monotonic()
    status = NodeStatus(
        node_id=hub_id,
        role="hub",
        state="online" if online else "offline",
        sent_at=time.time(),
        queue_depth=held if online else 0,
        version=SOFTWARE_VERSION,
        queue_wait_ms=profile.queue_wait_ms(now, queued=held) if online else None,
        tail_ms=profile.tail_ms() if online else {},
        loading_s=store.loading(now) if online else {},
        refused=dict(refused),
        providers={sha: providers for sha, (_, providers) in store.loaded_providers().items()} if online else {},
    )
    return encode_status(status)
