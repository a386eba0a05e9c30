"""``edgecut models serve`` and ``edgecut models fetch`` through the real entry point, against a real broker."""

from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import sys
from typing import TYPE_CHECKING

import pytest
from PIL import Image

from cloud_hub._offers import scan_offers
from edgecut._cli import main
from edgecut._exit import ExitCode
from models import SegmentsManifest, file_sha256_hex, partition
from tests._support import ignoring_sigint, random_images, save_tiny_version, signalled_output

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

pytestmark = pytest.mark.broker


@pytest.fixture
def registry(broker_url: str, prefix: str, tmp_path: Path) -> Iterator[dict[str, object]]:
    """``edgecut models serve`` on a directory holding the tiny model's segments; what it announced."""
    model_id, model = partition.load_model("tiny")
    cuts = partition.candidate_cuts(partition.enumerate_cuts(model))
    partition.save_segments(partition.split_segments(model, cuts, model_id=model_id), tmp_path / "models" / "tiny")
    command = [sys.executable, "-m", "edgecut", "models", "serve", "--models", str(tmp_path / "models")]
    command += ["--broker", broker_url, "--prefix", prefix, "--node-id", "registry", "--block-size", "16K", "--json"]
    # started as a script's `cmd &` is, SIGINT ignored: the command must stop on it all the same
    with subprocess.Popen(command, stdout=subprocess.PIPE, preexec_fn=ignoring_sigint) as process:  # noqa: S603, PLW1509
        assert process.stdout is not None
        ready, _, _ = select.select([process.stdout], [], [], 30)
        assert ready, "edgecut models serve announced nothing within 30 s"
        yield json.loads(os.read(process.stdout.fileno(), 65536))
        signalled_output(process, signal.SIGINT, 15)
        assert process.returncode == ExitCode.OK  # stopped as asked


def test_fetch_gets_the_model_a_registry_serves(
    registry: dict[str, object], broker_url: str, prefix: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert registry["node"] == "registry"
    offers = registry["offers"]
    assert isinstance(offers, dict)
    (version,) = offers["tiny"]
    options = ["--broker", broker_url, "--prefix", prefix, "--cache", str(tmp_path / "cache")]
    assert main(["models", "fetch", "tiny", *options, "--json"]) == ExitCode.OK
    out, err = capsys.readouterr()
    fetched = json.loads(out)
    assert fetched["version"] == version
    assert fetched["fetched_bytes"] == fetched["bytes"]
    assert "tiny" in err  # progress
    path = tmp_path / "cache" / "tiny" / version
    assert fetched["path"] == str(path)
    chain = SegmentsManifest.load(path)
    assert all(file_sha256_hex(path / s.file) == s.sha256 for s in chain.segments)
    assert main(["models", "fetch", "tiny", *options, "--json"]) == ExitCode.OK  # from the cache
    assert json.loads(capsys.readouterr().out)["fetched_bytes"] == 0
    missing = ["models", "fetch", "nothing-here", *options, "--offer-timeout", "0.5"]
    assert main(missing) == ExitCode.MODEL
    assert main(["models", "fetch", "..", *options]) == ExitCode.CONFIG


def test_agent_fetch_runs_the_model_it_fetched(
    registry: dict[str, object], broker_url: str, prefix: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    image = tmp_path / "image.png"
    Image.fromarray(random_images(1)[0]).save(image)
    options = ["--broker", broker_url, "--prefix", prefix, "--state-dir", str(tmp_path / "state")]
    argv = ["agent", *options, "--model", "tiny", "--fetch", "--cut", "output", str(image), "--json"]
    assert main(argv) == ExitCode.OK
    (report,) = json.loads(capsys.readouterr().out)
    assert report["cut"] == "output"
    offers = registry["offers"]
    assert isinstance(offers, dict)
    assert (tmp_path / "state" / "models" / "tiny" / offers["tiny"][0]).is_dir()


def test_publish_puts_a_version_in_whole_as_a_canary_then_for_every_agent(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    version, built = save_tiny_version(tmp_path / "built", "v2", scale=0.5)
    models = tmp_path / "models"
    models.mkdir()
    assert main(["models", "publish", str(built), "--models", str(models), "--canary", "10%", "--json"]) == 0
    published = json.loads(capsys.readouterr().out)
    target = models / f"tiny-{version}"
    assert published == {"model": "tiny", "version": version, "path": str(target), "canary": 0.1}
    assert sorted(path.name for path in tmp_path.iterdir()) == ["built", "built-staging", "models"]  # no leftovers
    (offered,) = scan_offers(models, "node", 4096).offers["tiny"].versions
    assert (offered.version, offered.canary) == (version, 0.1)
    assert main(["models", "publish", str(built), "--models", str(models), "--canary", "100%"]) == ExitCode.OK
    assert f"published tiny {version} to every agent" in capsys.readouterr().out
    (offered,) = scan_offers(models, "node", 4096).offers["tiny"].versions
    assert offered.canary is None
    assert main(["models", "publish", str(models), "--models", str(models)]) == ExitCode.MODEL  # no model directory
    assert main(["models", "publish", str(built), "--models", str(tmp_path / "none")]) == ExitCode.CONFIG
    with pytest.raises(SystemExit) as caught:  # a share of agents over all of them: a usage error
        main(["models", "publish", str(built), "--models", str(models), "--canary", "150%"])
    assert caught.value.code == ExitCode.USAGE


def test_serve_refuses_a_models_directory_that_does_not_exist(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    assert (
        main(["models", "serve", "--models", str(tmp_path / "none"), "--broker", "mqtt://127.0.0.1:1"])
        == ExitCode.CONFIG
    )
    assert f"models directory {tmp_path / 'none'} does not exist" in capsys.readouterr().err
