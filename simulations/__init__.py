"""Emulated links and devices, for the planner and the simulation harness (imported by no runtime package).

- :class:`LinkProxy` relays agents to their broker through an emulated
  network link (:class:`LinkSpec`: per direction, rate, delay, jitter and
  loss, fixed or from a measured :class:`RateTrace`); :func:`preset` names
  the links users ask for (``3g-bus``, ``lte-drive``, ``wifi``, ...).
- The trace readers and writers speak the field's formats: the Norway 3G
  "cooked" traces, the 5Gophers CSVs, Mahimahi's delivery opportunities.
- :data:`PROFILES` names edge devices by their speed relative to this host;
  :func:`stretched_sessions` makes an agent that slow through its public
  ``session_factory``, :func:`cpu_quota` through a cgroup CPU quota.

The runtime (``edge_agent``, ``cloud_hub``) imports nothing from here.
"""

from simulations._devices import (
    PROFILES,
    DeviceProfile,
    StretchedSession,
    cpu_quota,
    cpu_quota_available,
    stretched_sessions,
)
from simulations._link import SEGMENT_BYTES, SLICE_S, Direction, DirectionSpec, LinkSpec
from simulations._presets import PRESET_NAMES, TRACES, fixed_link, preset, scale_up, trace_link
from simulations._proxy import LinkProxy
from simulations._tc import format_rate, parse_duration_ms, parse_rate, tc_commands
from simulations._traces import (
    RateTrace,
    read_5gophers,
    read_cooked,
    read_mahimahi,
    read_rtts_ms,
    write_mahimahi,
)

__all__ = [
    "PRESET_NAMES",
    "PROFILES",
    "SEGMENT_BYTES",
    "SLICE_S",
    "TRACES",
    "DeviceProfile",
    "Direction",
    "DirectionSpec",
    "LinkProxy",
    "LinkSpec",
    "RateTrace",
    "StretchedSession",
    "cpu_quota",
    "cpu_quota_available",
    "fixed_link",
    "format_rate",
    "parse_duration_ms",
    "parse_rate",
    "preset",
    "read_5gophers",
    "read_cooked",
    "read_mahimahi",
    "read_rtts_ms",
    "scale_up",
    "stretched_sessions",
    "tc_commands",
    "trace_link",
    "write_mahimahi",
]
