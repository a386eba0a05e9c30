"""The agent service's settings (``edgecut agent serve``): a TOML file, ``EDGECUT_*`` variables and flags.

::

    broker = "mqtt://hub.example:1883"
    state_dir = "/var/lib/edgecut"
    listen = "127.0.0.1:8080"

    [[models]]
    name = "classifier"
    model = "resnet18"              # a zoo name, an .onnx file or a split directory
    codecs = ["raw", "int8"]

Every top-level key is also a variable (``EDGECUT_LISTEN``) and a flag
(``--listen``): a flag beats a variable, which beats the file, which beats
the default on the field. The whole configuration is checked before anything
starts, and every problem is reported at once, each naming where it came
from: the file's line and field (``line 7: models[0].cut: ...``), or the
variable or flag. Unknown keys are refused, so a misspelt key never falls
back to a default silently.
"""

from __future__ import annotations

import dataclasses
import re
import typing
from pathlib import Path
from typing import TYPE_CHECKING, Any

from edge_agent._energy import RadioName  # noqa: TC001 - the reader resolves field types at run time
from edge_agent._planner import Objective  # noqa: TC001 - as RadioName
from edge_agent._schema import NOT_READ, Reader, Setting, _optional, build, read_toml, setting, with_lines
from protocol import check_delivery_name, codec_names
from protocol.errors import ConfigError, EdgecutError
from protocol.http import parse_address
from protocol.mqtt import BrokerURL

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

ENV_PREFIX = "EDGECUT_"
"""A top-level key ``listen`` is read from the variable ``EDGECUT_LISTEN`` too."""
MODEL_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
"""What a model's name in the API (``/v2/models/{name}``) may be."""


def _problem_of(check: typing.Callable[[str], object]) -> typing.Callable[[str], str | None]:
    """A field check from a parser that raises :class:`EdgecutError` on a bad value."""

    def problem(value: str) -> str | None:
        try:
            check(value)
        except EdgecutError as exc:
            return str(exc)
        return None

    return problem


def _codec_problem(name: str) -> str | None:
    return None if name in codec_names() else f"no codec named {name!r}; known: {', '.join(codec_names())}"


def _name_problem(name: str) -> str | None:
    return None if MODEL_NAME.match(name) else "must be letters, digits, '_', '.' or '-' (at most 64)"


def _path(reader: Reader, raw: object, path: str) -> Path | Any:  # noqa: ANN401 - NOT_READ
    """A path, relative ones from the config file's directory."""
    if not isinstance(raw, str) or not raw:
        reader.problem(path, f"must be a path, not {raw!r}")
        return NOT_READ
    given = Path(raw).expanduser()
    return given if given.is_absolute() or reader.directory is None else reader.directory / given


def _model(reader: Reader, raw: object, path: str) -> str | Any:  # noqa: ANN401 - NOT_READ
    """A file or directory as an absolute path (relative ones from the config file's directory); a zoo name as it is.

    A path is what has a ``/``, ends ``.onnx`` or exists; anything else is a zoo name.
    """
    found = _path(reader, raw, path)
    if found is NOT_READ or "/" in str(raw) or str(raw).endswith(".onnx") or found.exists():
        return found if found is NOT_READ else str(found.absolute())
    return raw


def _delivery_name_problem(version: str) -> str | None:
    try:
        check_delivery_name(version, "version")
    except ValueError as exc:
        return str(exc)
    return None


def _default_name(table: Mapping[str, Any]) -> str:
    model = table.get("model")
    return Path(model.rstrip("/")).stem if isinstance(model, str) and model.strip("/") else "model"


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class ModelConfig:
    """One model the service serves: an :class:`~edge_agent.EdgeAgent` of its own.

    Attributes:
        name: Its name in the API (``/v2/models/{name}``); default: the
            model's file or zoo name.
        model: A zoo name, an ``.onnx`` file or a split directory (relative
            paths start at the config file's directory).
        cut: ``"auto"`` (the planner chooses each request's cut) or a cut id.
        codecs: How requests encode tensors; with ``cut = "auto"``, those the planner chooses among.
        objective: With ``cut = "auto"``: ``latency``, ``bytes`` or ``edge``,
            ``energy`` or ``latency+energy`` (docs/planner.md).
        budget_ms: The latency budget of the ``bytes`` and ``edge`` objectives (and ``energy``'s, if given).
        device_watts: The device's power above idle while it computes: the
            energy objectives need it; with it, answers carry predicted joules.
        radio: The radio's power model: ``wifi``, ``lte`` or ``3g``.
        ms_per_joule: What a joule is worth in ms, for ``latency+energy``.
        timeout_s: How long a request waits for the hub before its fallback.
        fallback: Run the tail on the device when the hub does not answer.
        threads: ONNX Runtime threads for this model (default: all cores).
        fetch: ``model`` names a model a hub offers (``edgecut models
            fetch``): the service gets it into ``state_dir``'s ``models``
            cache unless it is held there, and serves the newest version it
            holds when no hub answers.
        version: With ``fetch``: the version wanted (default: the newest offered).
        update: With ``fetch`` and no ``version``: switch to each newer
            version a hub offers while serving (docs/device.md, "Update flow").
        trial_requests: How many first requests made online a version
            switched to must answer (no error, every float finite) before the
            one it replaced closes; a failure before that rolls back. 0: no trial.
    """

    name: str = dataclasses.field(metadata=setting(default_from=_default_name, check=_name_problem))
    model: str = dataclasses.field(metadata=setting(read=_model))
    cut: str = "auto"
    codecs: tuple[str, ...] = dataclasses.field(
        default=("raw",),
        metadata=setting(
            items=Setting(check=_codec_problem), check=lambda v: None if v else "must name at least one codec"
        ),
    )
    objective: Objective = "latency"
    budget_ms: float | None = dataclasses.field(default=None, metadata=setting(positive=True))
    device_watts: float | None = dataclasses.field(default=None, metadata=setting(positive=True))
    radio: RadioName = "wifi"
    ms_per_joule: float = dataclasses.field(default=100.0, metadata=setting(positive=True))
    timeout_s: float = dataclasses.field(default=5.0, metadata=setting(positive=True))
    fallback: bool = True
    threads: int | None = dataclasses.field(default=None, metadata=setting(positive=True))
    fetch: bool = False
    version: str | None = dataclasses.field(default=None, metadata=setting(check=_delivery_name_problem))
    update: bool = True
    trial_requests: int = dataclasses.field(
        default=5, metadata=setting(check=lambda value: None if value >= 0 else "must be 0 or more")
    )


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class ServiceConfig:
    """What ``edgecut agent serve`` runs: the broker, the models, the state and the local API.

    Attributes:
        models: The models served, one agent each, under their names.
        broker: The broker URL (``mqtt://`` or ``mqtts://``).
        prefix: The topic prefix.
        agent_id: This device's id; each model's agent is ``AGENT_ID-NAME``
            on the broker (default: ``agent-`` and a random part).
        state_dir: Where the planner keeps this device's head times across
            restarts (default: nowhere).
        listen: ``HOST:PORT`` of the local API (KServe v2 over HTTP,
            ``/metrics``, health); ``127.0.0.1`` keeps it to this device.
        max_body_bytes: The largest request body the API takes; larger is answered 413.
        watch_dir: A directory watched for new image files: each gets a
            result beside it (``photo.jpg.json``). Default: none.
        watch_model: The model that watched files go to (default: the first).
        watch_rate_hz: The most watched files taken per second.
        watch_queue: Watched files waiting at most; more are skipped until there is room.
        camera: Frames from a camera (its index, ``"0"``), a video file or a
            stream URL, through OpenCV (``edgecut[camera]``); default: none.
        camera_model: The model frames go to (default: the first).
        camera_rate_hz: The most frames taken per second (the newest each
            time: a slower device drops frames, never queues them).
        camera_results: A JSON Lines file each frame's result is appended to
            (default: results are counted in ``/metrics`` only).
    """

    models: tuple[ModelConfig, ...] = dataclasses.field(
        metadata=setting(expected="a list of [[models]] tables", missing="name at least one [[models]]")
    )
    broker: str = dataclasses.field(
        default="mqtt://127.0.0.1:1883", metadata=setting(check=_problem_of(BrokerURL.parse))
    )
    prefix: str = "edgecut"
    agent_id: str | None = None
    state_dir: Path | None = dataclasses.field(default=None, metadata=setting(read=_path))
    listen: str = dataclasses.field(
        default="127.0.0.1:8080", metadata=setting(check=_problem_of(lambda value: parse_address(value, "the address")))
    )
    max_body_bytes: int = dataclasses.field(default=16 * 1024 * 1024, metadata=setting(positive=True))
    watch_dir: Path | None = dataclasses.field(default=None, metadata=setting(read=_path))
    watch_model: str | None = None
    watch_rate_hz: float = dataclasses.field(default=2.0, metadata=setting(positive=True))
    watch_queue: int = dataclasses.field(default=8, metadata=setting(positive=True))
    camera: str | None = None
    camera_model: str | None = None
    camera_rate_hz: float = dataclasses.field(default=2.0, metadata=setting(positive=True))
    camera_results: Path | None = dataclasses.field(default=None, metadata=setting(read=_path))

    @staticmethod
    def sources() -> dict[str, tuple[str, str]]:
        """Each top-level key but ``models``, with its flag and variable (``--watch-dir``, ``EDGECUT_WATCH_DIR``)."""
        return {key: (flag_name(key), env_name(key)) for key in SCALAR_KEYS}

    def model(self, name: str) -> ModelConfig | None:
        """The model served as ``name``, if any."""
        return next((model for model in self.models if model.name == name), None)


SCALAR_KEYS = tuple(field.name for field in dataclasses.fields(ServiceConfig) if field.name != "models")
"""The top-level keys that are also ``EDGECUT_*`` variables and flags."""


def env_name(key: str) -> str:
    """The variable a top-level key is read from: ``EDGECUT_LISTEN`` for ``listen``."""
    return ENV_PREFIX + key.upper()


def flag_name(key: str) -> str:
    """The flag of a top-level key: ``--watch-dir`` for ``watch_dir``."""
    return "--" + key.replace("_", "-")


def load_service_config(
    path: Path | None = None,
    *,
    environ: Mapping[str, str] | None = None,
    flags: Mapping[str, str] | None = None,
    models: Sequence[str] = (),
) -> ServiceConfig:
    """Read and check the service's settings, every problem at once.

    Args:
        path: The TOML file, if any.
        environ: Where ``EDGECUT_*`` variables are read (e.g. ``os.environ``; default: none).
        flags: Values given as flags, by top-level key, as text.
        models: Model names or paths to serve with default settings instead
            of the file's ``[[models]]`` (``--model``).

    Raises:
        ConfigError: The file cannot be read or is not TOML, or any setting
            is wrong; the message names each one's line and field, or its
            variable or flag.
    """
    data, text = read_toml(path, "agent config") if path is not None else ({}, "")
    sources: dict[str, str] = {}
    hints = typing.get_type_hints(ServiceConfig)
    for key in SCALAR_KEYS:
        for source, given in (
            (env_name(key), (environ or {}).get(env_name(key))),
            (flag_name(key), (flags or {}).get(key)),
        ):
            if given is not None:
                data[key] = _typed(_optional(hints[key]), given)
                sources[key] = source
    if models:
        data["models"] = [{"model": model} for model in models]
        sources["models"] = "--model"
    reader = Reader(path.parent if path is not None else Path.cwd())
    values = reader.table(ServiceConfig, data) or {}
    _check_across(reader, values)
    if reader.problems:
        named = _named(reader.problems, sources, text)
        msg = f"{path or 'agent config'}: {len(named)} problem(s):\n" + "\n".join(f"  {p}" for p in named)
        raise ConfigError(msg)
    config: ServiceConfig = build(ServiceConfig, values)
    return config


def _typed(hint: object, text: str) -> object:
    """A variable's or flag's ``text`` as the TOML value of a field of type ``hint`` (as it is when it is not one)."""
    converters: dict[object, typing.Callable[[str], object]] = {
        int: int,
        float: float,
        Path: lambda path: str(Path(path).expanduser().absolute()) if path else path,  # from the working directory
    }
    if hint is bool:
        return {"true": True, "1": True, "false": False, "0": False}.get(text.lower(), text)
    try:
        return converters.get(hint, str)(text)
    except ValueError:
        return text


def _check_across(reader: Reader, values: Mapping[str, Any]) -> None:
    """What spans fields: model names used once, the watched model one of them."""
    tables = [model for model in values.get("models", ()) if isinstance(model, dict)]
    names = [model["name"] for model in tables if "name" in model]
    for index, name in enumerate(names):
        if name in names[:index]:
            reader.problem(f"models[{index}].name", f"{name!r} is used twice: give each model a name of its own")
    if not names and "models" in values and not reader.has_problem("models"):
        reader.problem("models", "name at least one [[models]]")
    for index, model in enumerate(tables):
        if model.get("objective") in {"energy", "latency+energy"} and model.get("device_watts") is None:
            problem = f"{model['objective']} needs device_watts (the device's power)"
            reader.problem(f"models[{index}].objective", problem)
        if model.get("objective") in {"bytes", "edge"} and model.get("budget_ms") is None:
            reader.problem(f"models[{index}].objective", f"{model['objective']} needs budget_ms")
        if model.get("fetch") is True and values.get("state_dir") is None:
            reader.problem(f"models[{index}].fetch", "needs state_dir: fetched models are kept in STATE_DIR/models")
        if model.get("version") is not None and model.get("fetch") is not True:
            reader.problem(f"models[{index}].version", "only a fetched model has versions: set fetch = true")
    for key in ("watch_model", "camera_model"):
        chosen = values.get(key)
        if chosen is not None and names and chosen not in names:
            reader.problem(key, f"no model named {chosen!r}; served: {', '.join(names)}")


def _named(problems: Sequence[str], sources: Mapping[str, str], text: str) -> list[str]:
    """Each problem with where it came from: its variable or flag, else its line in the file."""
    from_file = []
    given = []
    for problem in problems:
        key = re.split(r"[.\[:]", problem, maxsplit=1)[0]
        if key in sources:
            given.append(f"{sources[key]}: {problem}")
        else:
            from_file.append(problem)
    return with_lines(from_file, text) + given
