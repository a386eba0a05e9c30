"""The edge side of split inference: run the head, send activations, get answers.

:class:`EdgeAgent` (async) and :class:`SyncEdgeAgent` (blocking) are the API.
:class:`AgentCore` is the agent's loop without I/O: events in (a request's
result, a ping's answer, a hub's status, each told the time), commands out
(:class:`SendPing`, and per :class:`Request` :class:`SendAgain`,
:class:`SendNew`, :class:`FallBack` or :class:`GiveUp`), with the
:class:`Planner` behind ``cut="auto"`` inside; ``EdgeAgent`` carries its
commands out on asyncio and MQTT, the simulation harness on simulated time.
The MQTT connection is :mod:`protocol.mqtt`'s, shared with hubs; this package
imports neither ``cloud_hub`` nor ``onnx``.
"""

from edge_agent._agent import AUTO, EdgeAgent
from edge_agent._codecs import codec_at
from edge_agent._core import AgentCore, FallBack, GiveUp, Request, SendAgain, SendNew, SendPing, Step
from edge_agent._fetch import FetchProgress, FetchSettings, fetch_model
from edge_agent._files import load_input, top_k
from edge_agent._halves import CutInfo, Halves, ModelHalves, SessionFactory
from edge_agent._model_cache import ModelCache
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
    "AgentCore",
    "Candidate",
    "CutInfo",
    "Decision",
    "EdgeAgent",
    "FallBack",
    "FetchProgress",
    "FetchSettings",
    "GiveUp",
    "Halves",
    "HubError",
    "InferenceResult",
    "InvalidReplyError",
    "ModelCache",
    "ModelHalves",
    "Objective",
    "Observation",
    "Planner",
    "Request",
    "RequestTimeoutError",
    "SendAgain",
    "SendNew",
    "SendPing",
    "SessionFactory",
    "Step",
    "SyncEdgeAgent",
    "Timeouts",
    "Timings",
    "codec_at",
    "fetch_model",
    "load_input",
    "top_k",
]
