"""The edge side of split inference: run the head, send activations, get answers.

:class:`EdgeAgent` (async) and :class:`SyncEdgeAgent` (blocking) are the API.
:class:`Connection` is the supervised MQTT 5 connection that both agents and
hubs use; it is the one place aiomqtt is imported.
"""

from edge_agent._agent import AUTO, EdgeAgent
from edge_agent._halves import CLOUD_ONLY, EDGE_ONLY, CutInfo, Halves, ModelHalves
from edge_agent._mqtt import Backoff, Connection, Incoming, Will
from edge_agent._results import HubError, InferenceResult, RequestTimeoutError, Timeouts, Timings
from edge_agent._sync import SyncEdgeAgent
from edge_agent._url import BrokerURL

__all__ = [
    "AUTO",
    "CLOUD_ONLY",
    "EDGE_ONLY",
    "Backoff",
    "BrokerURL",
    "Connection",
    "CutInfo",
    "EdgeAgent",
    "Halves",
    "HubError",
    "Incoming",
    "InferenceResult",
    "ModelHalves",
    "RequestTimeoutError",
    "SyncEdgeAgent",
    "Timeouts",
    "Timings",
    "Will",
]
