"""The agent service's config: every problem at once, each with its line and field, or its variable or flag."""

from __future__ import annotations

from pathlib import Path

import pytest

from edge_agent import ModelConfig, ServiceConfig, load_service_config, resolve_model
from protocol.errors import ConfigError

EXAMPLE = Path(__file__).resolve().parents[2] / "deploy" / "agent.toml"


def _write(directory: Path, text: str) -> Path:
    path = directory / "agent.toml"
    path.write_text(text)
    return path


def _problems(path: Path | None, **options: object) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        load_service_config(path, **options)  # type: ignore[arg-type]
    return str(caught.value).splitlines()[1:]


def test_the_example_config_is_valid_and_resolves_its_model_next_to_it() -> None:
    config = load_service_config(EXAMPLE)
    (model,) = config.models
    assert (model.name, model.cut, model.codecs) == ("classifier", "auto", ("raw", "int8"))
    assert resolve_model(model) == EXAMPLE.parent / "models" / "resnet18"
    assert (config.listen, config.agent_id, config.watch_dir) == ("127.0.0.1:8080", "camera-1", None)


def test_every_problem_names_its_line_and_field(tmp_path: Path) -> None:
    path = _write(
        tmp_path,
        """broker = "http://example.com"
listen = "127.0.0.1:99999"
watch_model = "nope"
colour = "blue"

[[models]]
model = "tiny"
codecs = ["raw", "gzip"]
fallback = "yes"

[[models]]
name = "tiny"
model = "tiny"
timeout_s = -1
objective = "fastest"
""",
    )
    assert [line.strip() for line in _problems(path)] == [
        "line 1: broker: broker URL 'http://example.com' must start with mqtt:// or mqtts://",
        (
            "line 2: listen: the address must be HOST:PORT (such as 0.0.0.0:8000, or port 0 for a free one),"
            " not '127.0.0.1:99999'"
        ),
        "line 3: watch_model: no model named 'nope'; served: tiny, tiny",
        (
            "line 4: colour: unknown key; known: agent_id, broker, camera, camera_model, camera_rate_hz,"
            " camera_results, listen, max_body_bytes, models, prefix, state_dir, watch_dir, watch_model, watch_queue,"
            " watch_rate_hz"
        ),
        "line 8: models[0].codecs[1]: no codec named 'gzip'; known: " + _codecs(),
        "line 9: models[0].fallback: must be true or false, not 'yes'",
        "line 12: models[1].name: 'tiny' is used twice: give each model a name of its own",
        "line 14: models[1].timeout_s: must be positive, not -1",
        "line 15: models[1].objective: must be one of latency, bytes, edge, energy, latency+energy, not 'fastest'",
    ]


def _codecs() -> str:
    from protocol import codec_names  # noqa: PLC0415

    return ", ".join(codec_names())


def test_a_syntax_error_names_its_line(tmp_path: Path) -> None:
    path = _write(tmp_path, 'broker = "mqtt://x:1883"\n\n[[models]\nmodel = "tiny"\n')
    with pytest.raises(ConfigError, match=r"not TOML: line 3"):
        load_service_config(path)


def test_a_config_without_models_says_so(tmp_path: Path) -> None:
    assert _problems(_write(tmp_path, 'listen = "127.0.0.1:0"\n')) == ["  models: name at least one [[models]]"]
    assert _problems(_write(tmp_path, "models = []\n")) == ["  line 1: models: name at least one [[models]]"]


def test_flags_beat_variables_which_beat_the_file(tmp_path: Path) -> None:
    path = _write(
        tmp_path, 'listen = "127.0.0.1:1"\nprefix = "file"\nwatch_rate_hz = 1.0\n[[models]]\nmodel = "tiny"\n'
    )
    environ = {"EDGECUT_LISTEN": "127.0.0.1:2", "EDGECUT_PREFIX": "env", "EDGECUT_WATCH_RATE_HZ": "4"}
    config = load_service_config(path, environ=environ, flags={"listen": "127.0.0.1:3"})
    assert (config.listen, config.prefix, config.watch_rate_hz) == ("127.0.0.1:3", "env", 4.0)


def test_a_bad_variable_or_flag_is_named_as_such(tmp_path: Path) -> None:
    path = _write(tmp_path, 'max_body_bytes = 10\n[[models]]\nmodel = "tiny"\n')
    problems = _problems(
        path, environ={"EDGECUT_WATCH_QUEUE": "many", "EDGECUT_MAX_BODY_BYTES": "5"}, flags={"max_body_bytes": "0"}
    )
    assert [line.strip() for line in problems] == [
        "--max-body-bytes: max_body_bytes: must be positive, not 0",
        "EDGECUT_WATCH_QUEUE: watch_queue: must be an integer, not 'many'",
    ]


def test_a_relative_path_in_a_variable_or_flag_starts_at_the_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    etc = tmp_path / "etc"
    etc.mkdir()
    path = _write(etc, '[[models]]\nmodel = "tiny"\n')  # in the file, they would start at etc/
    config = load_service_config(path, environ={"EDGECUT_STATE_DIR": "state"}, flags={"watch_dir": "inbox"})
    assert (config.state_dir, config.watch_dir) == (tmp_path / "state", tmp_path / "inbox")


def test_models_given_as_flags_take_default_settings_and_their_names(tmp_path: Path) -> None:
    segments = tmp_path / "tiny-segments"
    segments.mkdir()
    config = load_service_config(None, models=["tiny", str(segments)])
    assert [model.name for model in config.models] == ["tiny", "tiny-segments"]
    assert [resolve_model(model) for model in config.models] == ["tiny", segments]


def test_a_relative_model_path_starts_at_the_config_file(tmp_path: Path) -> None:
    (tmp_path / "split").mkdir()
    config = load_service_config(_write(tmp_path, '[[models]]\nmodel = "split"\n[[models]]\nmodel = "m/x.onnx"\n'))
    assert [resolve_model(model) for model in config.models] == [tmp_path / "split", tmp_path / "m" / "x.onnx"]
    assert [model.name for model in config.models] == ["split", "x"]


def test_sources_name_every_top_level_key_but_models() -> None:
    sources = ServiceConfig.sources()
    assert sources["watch_dir"] == ("--watch-dir", "EDGECUT_WATCH_DIR")
    assert "models" not in sources
    assert ModelConfig(name="a", model="tiny").codecs == ("raw",)


def test_a_fetched_model_needs_a_state_dir_and_only_a_fetched_model_has_a_version(tmp_path: Path) -> None:
    path = _write(
        tmp_path,
        """[[models]]
model = "resnet18"
fetch = true

[[models]]
name = "local"
model = "tiny"
version = "0123456789ab"
""",
    )
    assert [line.strip() for line in _problems(path)] == [
        "line 3: models[0].fetch: needs state_dir: fetched models are kept in STATE_DIR/models",
        "line 8: models[1].version: only a fetched model has versions: set fetch = true",
    ]


def test_the_energy_objectives_need_the_devices_power_and_bytes_a_budget(tmp_path: Path) -> None:
    path = _write(
        tmp_path,
        """[[models]]
name = "a"
model = "tiny"
objective = "energy"

[[models]]
name = "b"
model = "tiny"
objective = "bytes"

[[models]]
name = "c"
model = "tiny"
objective = "latency+energy"
device_watts = 3.5
radio = "lte"
""",
    )
    assert [line.strip() for line in _problems(path)] == [
        "line 4: models[0].objective: energy needs device_watts (the device's power)",
        "line 9: models[1].objective: bytes needs budget_ms",
    ]
    path.write_text(path.read_text().replace('objective = "energy"', 'objective = "energy"\ndevice_watts = 2.0'))
    path.write_text(path.read_text().replace('objective = "bytes"', 'objective = "bytes"\nbudget_ms = 80'))
    config = load_service_config(path)
    assert [(m.objective, m.device_watts, m.radio) for m in config.models] == [
        ("energy", 2.0, "wifi"),
        ("bytes", None, "wifi"),
        ("latency+energy", 3.5, "lte"),
    ]
