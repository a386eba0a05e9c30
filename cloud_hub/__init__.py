"""The cloud side of split inference: hubs that run tails, and a local broker.

:class:`Hub` serves requests from a broker; :func:`run_hub` runs one until
SIGINT/SIGTERM. :class:`LocalBroker` starts mosquitto (or the embedded iotcore
broker) on loopback for demos, tests and the zero-setup default;
:func:`check_broker` verifies what edgecut needs of any broker;
:class:`HubProcess` runs a hub in its own process for the demo, benchmarks
and emulations, and :func:`wait_online` waits for hubs to say they are up. :class:`ModelDelivery` offers model
directories to agents and sends them in blocks (a hub runs one; so does ``edgecut models serve``);
:func:`publish_version` puts a version under a models directory, as a canary if asked.
"""

from cloud_hub._acl import mosquitto_acl
from cloud_hub._broker import BrokerKind, LocalBroker, free_port, resolve_kind
from cloud_hub._broker_check import BrokerReport, check_broker
from cloud_hub._broker_probes import BrokerCheck
from cloud_hub._config import DEFAULT_BROKER, DEFAULT_GROUP, HubConfig, default_hub_id
from cloud_hub._delivery import ModelDelivery
from cloud_hub._process import HubProcess, wait_online
from cloud_hub._publish import publish_version
from cloud_hub._server import Hub
from cloud_hub._signals import run_hub, serve_until_signalled
from cloud_hub._store import Tail, TailStore, TailUnavailableError

__all__ = [
    "DEFAULT_BROKER",
    "DEFAULT_GROUP",
    "BrokerCheck",
    "BrokerKind",
    "BrokerReport",
    "Hub",
    "HubConfig",
    "HubProcess",
    "LocalBroker",
    "ModelDelivery",
    "Tail",
    "TailStore",
    "TailUnavailableError",
    "check_broker",
    "default_hub_id",
    "free_port",
    "mosquitto_acl",
    "publish_version",
    "resolve_kind",
    "run_hub",
    "serve_until_signalled",
    "wait_online",
]
