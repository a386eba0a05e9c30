"""Helpers shared by test modules (fixtures live in conftest.py)."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import os
import signal
import subprocess
import threading
import time
import uuid
from typing import TYPE_CHECKING, Any

import numpy as np
import pytest

from edge_agent import CLOUD_ONLY, EDGE_ONLY, ModelHalves, Timeouts
from protocol import InferenceRequest, decode_status, encode_request, version_of
from protocol.mqtt import BrokerURL, Connection, Incoming

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Callable, Sequence
    from pathlib import Path

    from cloud_hub import Hub
    from edge_agent import InferenceResult
    from protocol import NodeStatus

    """The ``start_hub`` fixture: starts an in-process hub on the test's broker and prefix."""

TINY = "tiny"
LOADS_IN_TIME = Timeouts(request=30.0)
"""A deadline no first use of a tail outlasts, for tests of something else against a hub that loads on demand: on a
busy host (a stress run beside the suite) a load took 4.8 s, past the default deadline's (a ``loading`` answer, and
the device ran the request)."""


@functools.cache
def tiny_model() -> ModelHalves:
    """The tiny zoo model, opened once per test run."""
    return ModelHalves.open(TINY, threads=1)


def save_tiny_segments(root: Path) -> Path:
    """The tiny model as a segments directory under ``root`` (~180 KB): what a hub delivers, offered as ``tiny``."""
    from models import partition  # noqa: PLC0415 - onnx, for the tests that split

    model_id, model = partition.load_model(TINY)
    cuts = partition.candidate_cuts(partition.enumerate_cuts(model))
    directory = root / "tiny-segments"
    partition.save_segments(partition.split_segments(model, cuts, model_id=model_id), directory)
    return directory


def save_tiny_version(root: Path, name: str, *, scale: float) -> tuple[str, Path]:
    """The tiny model with its first convolution's weights times ``scale``, as segments directory ``root/name``.

    Another version of model ``tiny`` (its version returned with its
    directory). Written beside ``root`` and renamed in, as a version is published.
    """
    from onnx import numpy_helper  # noqa: PLC0415 - onnx, for the tests that build models

    from models import partition  # noqa: PLC0415

    model_id, model = partition.load_model(TINY)
    for index, initializer in enumerate(model.graph.initializer):
        if initializer.name == "stem.conv.weight":
            weights = numpy_helper.to_array(initializer) * np.float32(scale)
            model.graph.initializer[index].CopyFrom(numpy_helper.from_array(weights, initializer.name))
    cuts = partition.candidate_cuts(partition.enumerate_cuts(model))
    chain = partition.split_segments(model, cuts, model_id=model_id)
    staging = root.parent / f"{root.name}-staging" / name
    partition.save_segments(chain, staging)
    root.mkdir(exist_ok=True)
    staging.rename(root / name)
    return version_of(chain.manifest.model_sha256), root / name


def tiny_logits(image: np.ndarray) -> np.ndarray:
    """Logits of the full tiny model run locally on one image (no batch axis)."""
    full = tiny_model().halves(EDGE_ONLY).head
    assert full is not None
    return full.run({"image": image[None]})["logits"]


def random_images(count: int, seed: int = 0) -> list[np.ndarray]:
    """Random uint8 images the tiny model takes (32x32x3, no batch axis)."""
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, (32, 32, 3), dtype=np.uint8) for _ in range(count)]


def assert_matches_full_model(result: InferenceResult, image: np.ndarray) -> None:
    """The split result equals the full tiny model run locally, within ORT's fusion differences."""
    np.testing.assert_allclose(result.outputs["logits"], tiny_logits(image), atol=1e-4, rtol=0)


TINY_TAIL = f"{TINY}:{CLOUD_ONLY}"
"""The preload spec of the tail ``tiny_request()`` needs: a hub started with it answers the first request at once."""


def tiny_request(cut: str = CLOUD_ONLY, **changes: Any) -> InferenceRequest:  # noqa: ANN401 - request fields
    """A valid request of agent ``raw`` for the tiny model at ``cut``; ``changes`` override any field."""
    image = random_images(1)[0][np.newaxis]
    halves = tiny_model().halves(cut)
    tensors = halves.head.run({"image": image}) if halves.head is not None else {"image": image}
    fields: dict[str, Any] = {
        "request_id": uuid.uuid4().hex,
        "agent_id": "raw",
        "model_id": TINY,
        "model_sha256": tiny_model().model_sha256,
        "cut_id": cut,
        "tensors": {spec.name: tensors[spec.name] for spec in halves.manifest.crossing},
        "sent_at": time.time(),
        "deadline_ms": 10_000.0,
    }
    return InferenceRequest(**(fields | changes))


class Watcher:
    """A plain MQTT client on the test's broker: publishes what the test gives it, collects what arrives."""

    def __init__(self, url: str, subscriptions: list[str]) -> None:
        self.qos = BrokerURL.parse(url).qos
        self.received: asyncio.Queue[Incoming] = asyncio.Queue()
        self.connection = Connection(
            url,
            client_id=f"watch-{uuid.uuid4().hex[:8]}",
            subscriptions=[(topic, self.qos) for topic in subscriptions],
            on_message=self.received.put_nowait,
        )

    async def next(self, seconds: float = 10) -> Incoming:
        """The next message that arrives; fails after ``seconds``."""
        return await asyncio.wait_for(self.received.get(), seconds)

    async def status(self, state: str, seconds: float = 10) -> NodeStatus:
        """The next status in ``state``; others (periodic load reports) are skipped."""
        async with asyncio.timeout(seconds):
            while True:
                status = decode_status((await self.received.get()).payload)
                if status.state == state:
                    return status

    async def publish(
        self, topic: str, payload: bytes, *, response_topic: str | None = None, correlation: bytes | None = None
    ) -> None:
        """Publish raw bytes, as any client could."""
        await self.connection.publish(
            topic, payload, qos=self.qos, response_topic=response_topic, correlation=correlation, timeout=10
        )

    async def send(self, topic: str, request: InferenceRequest, response_topic: str | None = None) -> None:
        """Publish ``request`` with its id as CorrelationData."""
        correlation = request.request_id.encode()
        await self.publish(topic, encode_request(request), response_topic=response_topic, correlation=correlation)


@contextlib.asynccontextmanager
async def watching(url: str, *subscriptions: str) -> AsyncIterator[Watcher]:
    """A connected :class:`Watcher` subscribed to ``subscriptions``."""
    watcher = Watcher(url, list(subscriptions))
    async with watcher.connection:
        await watcher.connection.wait_connected(10)
        yield watcher


@contextlib.asynccontextmanager
async def parked(hub: Hub) -> AsyncIterator[threading.Event]:
    """Park the hub's (single) worker thread until the block ends or the gate is opened.

    Requests the hub accepts meanwhile stay queued: no sleeps, no timing guesses.
    Waits first until the hub has no reply outstanding: a reply counts as in
    flight until the broker acknowledges it, which may be after the agent has it.
    """
    await until(lambda: hub.queue_depth == 0, "the hub to finish its earlier requests")
    gate = threading.Event()
    hub._executor.submit(gate.wait)
    try:
        yield gate
    finally:
        gate.set()


async def until(condition: Callable[[], bool], what: str, seconds: float = 20) -> None:
    """Yield to the event loop until ``condition()`` holds; fail (not hang) after ``seconds``."""
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        await asyncio.sleep(0.005)


def quantised_tiny(directory: Path) -> Path:
    """The tiny zoo model quantised by ONNX Runtime's own tools (QDQ, uint8 activations, int8 weights)."""
    import onnx  # noqa: PLC0415 - only the tests that quantise need it
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static  # noqa: PLC0415

    from models import zoo  # noqa: PLC0415

    class Images(CalibrationDataReader):
        def __init__(self) -> None:
            rng = np.random.default_rng(0)
            self._feeds = iter([{"image": rng.integers(0, 256, (1, 32, 32, 3), dtype=np.uint8)} for _ in range(4)])

        def get_next(self) -> dict[str, np.ndarray] | None:
            return next(self._feeds, None)

    onnx.save(zoo.build(TINY), directory / "tiny-float.onnx")
    path = directory / "tiny-qdq.onnx"
    quantize_static(
        directory / "tiny-float.onnx",
        path,
        Images(),
        quant_format=QuantFormat.QDQ,
        activation_type=QuantType.QUInt8,
        weight_type=QuantType.QInt8,
        reduce_range=True,  # 7-bit weights: ORT's advice for x86 without VNNI, whose u8s8 kernels saturate otherwise
    )
    (directory / "tiny-float.onnx").unlink()
    return path


def ignoring_sigint() -> None:
    """A child's ``preexec_fn``: SIGINT ignored, as a job started with ``&`` from a script inherits it."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def signalled_output(process: subprocess.Popen[bytes], signum: int, timeout_s: float) -> bytes:
    """Send ``signum`` to ``process`` and return its stderr once it exits; killed if it runs on past ``timeout_s``.

    Raises:
        subprocess.TimeoutExpired: It did not stop within ``timeout_s``.
    """
    process.send_signal(signum)
    try:
        _, err = process.communicate(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        process.kill()
        process.communicate()
        raise
    return err


Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]
"""Metric samples by name and labels."""


async def http_exchange(address: tuple[str, int], raw: bytes) -> tuple[int, dict[str, str], bytes]:
    """Send ``raw`` to an HTTP endpoint: the status, headers and body of what comes back.

    Asyncio, not urllib: the hub or agent serving it runs on this same event loop.
    """
    reader, writer = await asyncio.open_connection(*address)
    try:
        writer.write(raw)
        await writer.drain()
        answer = await asyncio.wait_for(reader.read(), 10)  # to EOF: the endpoint closes after one answer
    finally:
        writer.close()
        await writer.wait_closed()
    head, _, body = answer.partition(b"\r\n\r\n")
    status_line, *lines = head.decode("ascii").split("\r\n")
    headers = {name.lower(): value.strip() for name, _, value in (line.partition(":") for line in lines)}
    return int(status_line.split(" ")[1]), headers, body


async def post_json(address: tuple[str, int], path: str, body: bytes, content_type: str = "application/json") -> Any:  # noqa: ANN401
    """POST ``body`` as raw HTTP/1.1 bytes, as curl sends it: the status and the decoded JSON answer."""
    head = f"POST {path} HTTP/1.1\r\nHost: localhost\r\nContent-Type: {content_type}\r\nContent-Length: {len(body)}"
    status, headers, answer = await http_exchange(address, head.encode() + b"\r\n\r\n" + body)
    assert headers["content-type"] == "application/json"
    return status, json.loads(answer)


async def get_json(address: tuple[str, int], path: str) -> Any:  # noqa: ANN401
    """GET ``path``: the status and the decoded JSON answer."""
    status, _, answer = await http_exchange(address, f"GET {path} HTTP/1.1\r\n\r\n".encode())
    return status, json.loads(answer)


def infer_json(image: np.ndarray, **extra: Any) -> bytes:  # noqa: ANN401 - more request fields
    """A KServe v2 JSON inference request carrying one uint8 image (batch axis added) as ``image``."""
    tensor = {"name": "image", "shape": [1, *image.shape], "datatype": "UINT8", "data": image.reshape(-1).tolist()}
    return json.dumps({"inputs": [tensor], **extra}).encode()


def output_logits(answer: dict[str, Any]) -> np.ndarray:
    """The one output, ``logits``, of a KServe v2 JSON answer, as an array."""
    (output,) = answer["outputs"]
    assert output["name"] == "logits"
    assert output["datatype"] == "FP32"
    return np.asarray(output["data"], dtype=np.float32).reshape(output["shape"])


async def scrape(address: tuple[str, int]) -> Samples:
    """Every sample of ``/metrics`` at ``address``, read with Prometheus's own parser, by name and labels."""
    from prometheus_client.parser import text_string_to_metric_families  # noqa: PLC0415 - an optional extra

    status, headers, body = await http_exchange(address, b"GET /metrics HTTP/1.1\r\n\r\n")
    assert status == 200
    assert headers["content-type"].startswith("text/plain")
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(body.decode())
        for sample in family.samples
    }


def version_logits(directory: Path, images: Sequence[np.ndarray]) -> list[np.ndarray]:
    """The logits of each of ``images`` from a tiny model version's full model (a segments directory), run locally."""
    head = ModelHalves.open(directory, threads=1).halves(EDGE_ONLY).head
    assert head is not None
    return [head.run({"image": image[None]})["logits"] for image in images]


def damage_file(path: Path) -> None:
    """Change bytes in the middle of ``path``, its size and modification time kept: a disk that changed it."""
    stat = path.stat()
    data = bytearray(path.read_bytes())
    middle = len(data) // 2
    data[middle : middle + 16] = bytes(255 - byte for byte in data[middle : middle + 16])
    path.write_bytes(bytes(data))
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))


class RequestStream:
    """Inference requests for the tiny model over HTTP, two clients each one after another, until stopped.

    Each answer is kept as (image index, sent after :attr:`marked` was set,
    status, decoded answer), in the order they came back, and its request's
    place in the order they were sent in :attr:`sent_numbers`. Bounded by
    ``limit`` requests and ``seconds``, whatever happens.
    """

    def __init__(
        self, address: tuple[str, int], images: Sequence[np.ndarray], *, limit: int = 600, seconds: float = 180.0
    ) -> None:
        self.address = address
        self.images = images
        self.answers: list[tuple[int, bool, int, dict[str, Any]]] = []
        self.sent_numbers: list[int] = []
        """Each answer's request's place in the sending order (0 first), as :attr:`answers` holds them."""
        self.marked = False
        self._limit = limit
        self._seconds = seconds
        self._stop = asyncio.Event()
        self._sent = 0

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[RequestStream]:
        """The stream, sending until the block ends."""
        clients = [asyncio.create_task(self._client()) for _ in range(2)]
        try:
            yield self
        finally:
            self._stop.set()
            await asyncio.gather(*clients)

    async def _client(self) -> None:
        deadline = time.monotonic() + self._seconds
        while not self._stop.is_set() and self._sent < self._limit and time.monotonic() < deadline:
            number = self._sent
            index = number % len(self.images)
            self._sent += 1
            after = self.marked
            status, answer = await post_json(self.address, f"/v2/models/{TINY}/infer", infer_json(self.images[index]))
            self.answers.append((index, after, status, answer))
            self.sent_numbers.append(number)

    def count(self, version: str) -> int:
        """Answers given by ``version``."""
        return sum(1 for _, _, status, answer in self.answers if status == 200 and answer["model_version"] == version)

    def sent(self, version: str) -> list[int]:
        """The places in the sending order of the requests ``version`` answered."""
        return [
            number
            for number, (_, _, status, answer) in zip(self.sent_numbers, self.answers, strict=True)
            if status == 200 and answer["model_version"] == version
        ]

    def after_mark(self) -> list[dict[str, Any]]:
        """The answers to the requests sent after :attr:`marked` was set."""
        return [answer for _, after, _, answer in self.answers if after]

    def check(self, expected: dict[str, list[np.ndarray]], *, hub_ran: bool = True) -> None:
        """Every request answered 200 by one of ``expected``'s versions, its outputs that version's full model's.

        With ``hub_ran``, the hub ran every tail (none fell back to the edge).
        """
        assert self.answers
        for index, _, status, answer in self.answers:
            assert status == 200, answer
            assert answer["model_version"] in expected
            assert answer["parameters"]["fallback"] is None or not hub_ran
            logits = output_logits(answer)
            np.testing.assert_allclose(logits, expected[answer["model_version"]][index], atol=1e-4, rtol=0)
