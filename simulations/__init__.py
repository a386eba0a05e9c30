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
- Scenarios of whole fleets (``docs/simulation.md``): :func:`load_scenario`
  reads one into a :class:`Scenario`; :func:`run_scenario` runs it in fleet
  mode (simulated time, the runtime's own :class:`edge_agent.AgentCore` in
  every agent; :func:`run_fleet` alone writes nothing) or emulate mode (real
  processes), writing a :class:`RequestRecord` per request and the
  :class:`Summary`; :func:`find_hubs` searches the fewest hub replicas for
  a p95 target; :func:`run_answer` and :func:`capacity_answer` put what
  either found in one line, the first of its report. Model profiles (:class:`ModelProfile`) give their compute
  times. Fleet mode needs SimPy and the pictures matplotlib
  (``edgecut[sim]``), imported only when used.

The runtime (``edge_agent``, ``cloud_hub``) imports nothing from here.
"""

from simulations._agent_process import EmulationError
from simulations._answer import capacity_answer, run_answer
from simulations._arrivals import RateCurve
from simulations._calibrate import (
    CutCost,
    ModelProfile,
    load_profiles,
    measure_profile,
    observed_profiles,
    save_profiles,
    scenario_profiles,
)
from simulations._capacity import CapacityPoint, CapacityResult, SearchInterrupted, find_hubs, write_capacity
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
from simulations._report import COLUMNS, RequestRecord, Summary, percentile, read_records, summarise, table
from simulations._run import MAX_EMULATED_AGENTS, Progress, run_fleet, run_scenario
from simulations._scenario import BrokerSpec, FaultSpec, GroupSpec, HubSpec, Scenario, load_scenario, parse_scenario
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
    "COLUMNS",
    "MAX_EMULATED_AGENTS",
    "PRESET_NAMES",
    "PROFILES",
    "SEGMENT_BYTES",
    "SLICE_S",
    "TRACES",
    "BrokerSpec",
    "CapacityPoint",
    "CapacityResult",
    "CutCost",
    "DeviceProfile",
    "Direction",
    "DirectionSpec",
    "EmulationError",
    "FaultSpec",
    "GroupSpec",
    "HubSpec",
    "LinkProxy",
    "LinkSpec",
    "ModelProfile",
    "Progress",
    "RateCurve",
    "RateTrace",
    "RequestRecord",
    "Scenario",
    "SearchInterrupted",
    "StretchedSession",
    "Summary",
    "capacity_answer",
    "cpu_quota",
    "cpu_quota_available",
    "find_hubs",
    "fixed_link",
    "format_rate",
    "load_profiles",
    "load_scenario",
    "measure_profile",
    "observed_profiles",
    "parse_duration_ms",
    "parse_rate",
    "parse_scenario",
    "percentile",
    "preset",
    "read_5gophers",
    "read_cooked",
    "read_mahimahi",
    "read_records",
    "read_rtts_ms",
    "run_answer",
    "run_fleet",
    "run_scenario",
    "save_profiles",
    "scale_up",
    "scenario_profiles",
    "stretched_sessions",
    "summarise",
    "table",
    "tc_commands",
    "trace_link",
    "write_capacity",
    "write_mahimahi",
]
