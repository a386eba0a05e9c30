"""Execution providers: names resolved, a missing one stops the hub, status and metrics say what each model runs on.

This machine has no GPU and its onnxruntime only the CPU (and Azure): the
accelerated paths are checked against lists of what other builds report;
running on one is docs/deploy.md's manual check.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

import pytest
from onnx import TensorProto, helper
from prometheus_client.parser import text_string_to_metric_families

from cloud_hub import Hub, HubConfig
from edgecut._cli import main
from edgecut._exit import ExitCode
from models import (
    CPU_PROVIDER,
    PROVIDERS,
    Session,
    available_providers,
    parse_providers,
    provider_name,
    resolve_providers,
)
from protocol import Topics, decode_reply, decode_status
from protocol.errors import ConfigError, ProviderUnavailableError
from tests._support import tiny_model, tiny_request, watching

if TYPE_CHECKING:
    from tests._support import StartHub

CUDA = "CUDAExecutionProvider"
TRT = "TensorrtExecutionProvider"
GPU_BUILD = (TRT, CUDA, CPU_PROVIDER)
"""What onnxruntime-gpu lists, GPU or none."""
OPENVINO_BUILD = ("OpenVINOExecutionProvider", CPU_PROVIDER)
MAC_BUILD = ("CoreMLExecutionProvider", "AzureExecutionProvider", CPU_PROVIDER)
CPU_BUILD = ("AzureExecutionProvider", CPU_PROVIDER)


@pytest.mark.parametrize(
    ("available", "chosen"),
    [
        (GPU_BUILD, (CUDA, CPU_PROVIDER)),  # TensorRT only when named
        (OPENVINO_BUILD, OPENVINO_BUILD),
        (MAC_BUILD, (CPU_PROVIDER,)),  # CoreML only when named; Azure runs no model: never chosen
        (CPU_BUILD, (CPU_PROVIDER,)),
        (("DmlExecutionProvider", CPU_PROVIDER), ("DmlExecutionProvider", CPU_PROVIDER)),
    ],
)
def test_auto_takes_the_best_available(available: tuple[str, ...], chosen: tuple[str, ...]) -> None:
    assert resolve_providers((), available) == chosen
    assert resolve_providers(("auto",), available) == chosen


def test_named_providers_are_taken_in_order_by_short_or_ort_name() -> None:
    assert resolve_providers(("tensorrt", "CUDA", "cpu"), GPU_BUILD) == GPU_BUILD
    assert resolve_providers((CUDA, "cpu"), GPU_BUILD) == (CUDA, CPU_PROVIDER)
    assert resolve_providers(("cpu",), GPU_BUILD) == (CPU_PROVIDER,)
    assert {provider_name(short) for short in PROVIDERS} == set(PROVIDERS.values())


def test_a_provider_this_onnxruntime_lacks_is_named_with_what_it_has() -> None:
    with pytest.raises(ProviderUnavailableError) as caught:
        resolve_providers(("cuda", "cpu"), CPU_BUILD)
    assert caught.value.requested == ["cuda"]
    assert caught.value.available == ["AzureExecutionProvider", "cpu"]
    assert "onnxruntime-gpu" in str(caught.value)
    assert isinstance(caught.value, ConfigError)


@pytest.mark.parametrize(
    ("text", "fragment"),
    [("gpu", "no execution provider is called 'gpu'"), ("auto,cpu", "stands alone"), ("cuda,CUDA", "named twice")],
)
def test_bad_provider_lists_are_config_errors(text: str, fragment: str) -> None:
    with pytest.raises(ConfigError, match=fragment):
        parse_providers(text)
    with pytest.raises(ConfigError, match=fragment):
        HubConfig(providers=tuple(text.split(",")))


def _identity_model() -> bytes:
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])
    graph = helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "identity", [x], [y])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]).SerializeToString()


def test_a_session_says_what_it_runs_on() -> None:
    assert Session(_identity_model()).providers == (CPU_PROVIDER,)
    assert Session(_identity_model(), providers=resolve_providers()).providers == (CPU_PROVIDER,)
    assert available_providers()[-1] == CPU_PROVIDER


def test_a_hub_asking_for_a_missing_provider_fails_when_created() -> None:
    missing = next(short for short, name in PROVIDERS.items() if name not in available_providers())
    with pytest.raises(ProviderUnavailableError, match=missing):
        Hub(HubConfig(providers=(missing, "cpu")))


def test_edgecut_hub_exits_provider_naming_what_is_available(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    missing = next(short for short, name in PROVIDERS.items() if name not in available_providers())
    assert main(["hub", "--providers", f"{missing},cpu", "--connect-timeout", "0.1"]) == ExitCode.PROVIDER
    err = capsys.readouterr().err
    assert err.startswith(f"edgecut: error: execution provider {missing} not available")
    assert "cpu" in err.split("which has", 1)[1]
    monkeypatch.setenv("EDGECUT_PROVIDERS", missing)  # the env var, as a container sets it
    assert main(["hub", "--connect-timeout", "0.1"]) == ExitCode.PROVIDER
    assert main(["hub", "--providers", "npu"]) == ExitCode.CONFIG


@pytest.mark.broker
async def test_status_and_metrics_say_what_each_model_runs_on(
    broker_url: str, prefix: str, start_hub: StartHub
) -> None:
    hub = await start_hub(http="127.0.0.1:0", providers=("cpu",), status_interval=0.2, hub_id="cpu-hub")
    assert hub.store.providers == (CPU_PROVIDER,)
    topics = Topics(prefix)
    async with watching(broker_url, topics.response("raw"), topics.status("cpu-hub")) as watcher:
        await watcher.send(topics.request("raw"), tiny_request())
        async with asyncio.timeout(10):
            while True:
                incoming = await watcher.next()
                if incoming.topic == topics.response("raw"):
                    assert decode_reply(incoming.payload).ok
                    continue
                status = decode_status(incoming.payload)
                if status.providers:
                    break
    assert status.providers == {tiny_model().model_sha256: (CPU_PROVIDER,)}
    assert hub.http is not None
    assert hub.http.address is not None
    host, port = hub.http.address
    reader, writer = await asyncio.open_connection(host, port)
    writer.write(b"GET /metrics HTTP/1.1\r\n\r\n")
    body = (await asyncio.wait_for(reader.read(), 10)).partition(b"\r\n\r\n")[2]
    writer.close()
    await writer.wait_closed()
    samples = {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(body.decode())
        for sample in family.samples
        if family.name == "edgecut_hub_model_provider"
    }
    assert samples == {("edgecut_hub_model_provider", (("model", "tiny"), ("provider", CPU_PROVIDER))): 1.0}


@pytest.mark.broker
@pytest.mark.skipif(
    "CUDAExecutionProvider" not in available_providers(),
    reason="needs onnxruntime-gpu on a machine with a GPU (docs/deploy.md: checking it on a GPU machine)",
)
async def test_on_a_gpu_the_hub_runs_its_tails_on_cuda(broker_url: str, prefix: str, start_hub: StartHub) -> None:
    hub = await start_hub(providers=("cuda", "cpu"), status_interval=0.2, hub_id="gpu-hub")
    topics = Topics(prefix)
    async with watching(broker_url, topics.response("raw"), topics.status("gpu-hub")) as watcher:
        await watcher.send(topics.request("raw"), tiny_request())
        async with asyncio.timeout(30):
            while True:
                incoming = await watcher.next(30)
                if incoming.topic == topics.response("raw"):
                    assert decode_reply(incoming.payload).ok
                    continue
                status = decode_status(incoming.payload)
                if status.providers:
                    break
    assert hub.store.providers == (CUDA, CPU_PROVIDER)
    assert status.providers[tiny_model().model_sha256][0] == CUDA  # not a fall back to the CPU
