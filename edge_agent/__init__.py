"""The edge side of split inference: run the head, send activations, get answers.

:class:`EdgeAgent` (async) and :class:`SyncEdgeAgent` (blocking) are the API.
:class:`AgentCore` is the agent's loop without I/O: events in (a request's
result, a ping's answer, a hub's status, each told the time), commands out
(:class:`SendPing`, and per :class:`Request` :class:`SendAgain`,
:class:`SendNew`, :class:`FallBack` or :class:`GiveUp`), with the
:class:`Planner` behind ``cut="auto"`` inside; ``EdgeAgent`` carries its
commands out on asyncio and MQTT, the simulation harness on simulated time.
The MQTT connection is :mod:`protocol.mqtt`'s, shared with hubs; this package
imports neither ``cloud_hub`` nor ``onnx``. :class:`AgentService` (and
:func:`run_service`) runs agents as a device service: several models behind a
local KServe v2 HTTP API and a watched directory, configured by a
:class:`ServiceConfig` (:func:`load_service_config` reads its TOML file).
"""

from edge_agent._agent import AUTO, EdgeAgent
from edge_agent._codecs import codec_at
from edge_agent._core import AgentCore, FallBack, GiveUp, Request, SendAgain, SendNew, SendPing, Step
from edge_agent._energy import RADIOS, EnergyModel, Radio
from edge_agent._fetch import FetchProgress, FetchSettings, fetch_model
from edge_agent._files import decode_image, load_input, top_k
from edge_agent._halves import CutInfo, Halves, ModelHalves, SessionFactory
from edge_agent._hub_reports import HubReports
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
from edge_agent._service import AgentService, resolve_model, run_service
from edge_agent._service_config import ModelConfig, ServiceConfig, load_service_config
from edge_agent._sync import SyncEdgeAgent
from models import CLOUD_ONLY, EDGE_ONLY

__all__ = [
    "AUTO",
    "CLOUD_ONLY",
    "EDGE_ONLY",
    "RADIOS",
    "AgentCore",
    "AgentService",
    "Candidate",
    "CutInfo",
    "Decision",
    "EdgeAgent",
    "EnergyModel",
    "FallBack",
    "FetchProgress",
    "FetchSettings",
    "GiveUp",
    "Halves",
    "HubError",
    "HubReports",
    "InferenceResult",
    "InvalidReplyError",
    "ModelCache",
    "ModelConfig",
    "ModelHalves",
    "Objective",
    "Observation",
    "Planner",
    "Radio",
    "Request",
    "RequestTimeoutError",
    "SendAgain",
    "SendNew",
    "SendPing",
    "ServiceConfig",
    "SessionFactory",
    "Step",
    "SyncEdgeAgent",
    "Timeouts",
    "Timings",
    "codec_at",
    "decode_image",
    "fetch_model",
    "load_input",
    "load_service_config",
    "resolve_model",
    "run_service",
    "top_k",
]
