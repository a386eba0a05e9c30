"""The edge side of split inference: run the head, send activations, get answers.

:class:`EdgeAgent` (async) and :class:`SyncEdgeAgent` (blocking) are the API;
:class:`Planner` is the pure planner behind ``cut="auto"``, which the
simulation harness runs on simulated time.
The MQTT connection is :mod:`protocol.mqtt`'s, shared with hubs; this package
imports neither ``cloud_hub`` nor ``onnx``.
"""

from edge_agent._agent import AUTO, EdgeAgent
from edge_agent._halves import CutInfo, Halves, ModelHalves, SessionFactory
from edge_agent._planner import Candidate, Decision, Objective, Observation, Planner
from edge_agent._results import (
    HubError,
    InferenceResult,
    InvalidReplyError,
    RequestTimeoutError,
    Timeouts,
    Timings,
)
from edge_agent._sync import SyncEdgeAgent
from models import CLOUD_ONLY, EDGE_ONLY

__all__ = [
    "AUTO",
    "CLOUD_ONLY",
    "EDGE_ONLY",
    "Candidate",
    "CutInfo",
    "Decision",
    "EdgeAgent",
    "Halves",
    "HubError",
    "InferenceResult",
    "InvalidReplyError",
    "ModelHalves",
    "Objective",
    "Observation",
    "Planner",
    "RequestTimeoutError",
    "SessionFactory",
    "SyncEdgeAgent",
    "Timeouts",
    "Timings",
]
