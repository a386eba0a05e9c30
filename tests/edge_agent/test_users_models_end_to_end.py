"""Models as users bring them (dynamic sizes, data-dependent axes, several inputs) through a real broker and hub."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from edge_agent import CLOUD_ONLY, EDGE_ONLY, EdgeAgent, ModelHalves, Timeouts
from edge_agent._sizes import CoresBySize, size_key
from edge_agent._state import CarriedState
from models import Session, TensorSpec
from protocol.errors import ConfigError, ModelError
from tests.corpus import CORPUS, realistic_inputs

if TYPE_CHECKING:
    from pathlib import Path

    from tests._support import StartHub

pytestmark = pytest.mark.broker

SHAPES = {
    "detector": {"images": (1, 3, 96, 128)},
    "dynamic_classifier": {"input": (1, 3, 80, 112)},
    "recurrent": {"input": (1, 512)},
}
"""The sizes each model is counted at: a batch axis and fixed sizes may be left out."""


def _inputs(name: str) -> dict[str, np.ndarray]:
    if name == "recurrent":
        return realistic_inputs(name, samples=512)
    _, _, height, width = SHAPES[name][next(iter(SHAPES[name]))]
    return realistic_inputs(name, height=height, width=width)


@pytest.mark.parametrize("name", sorted(SHAPES))
async def test_every_auto_candidate_is_served_as_the_whole_model_answers(
    name: str, broker_url: str, prefix: str, start_hub: StartHub, tmp_path: Path
) -> None:
    path = tmp_path / f"{name}.onnx"
    onnx.save(CORPUS[name](), path)
    await start_hub(models_dir=tmp_path, use_zoo=False, max_batch=4)
    inputs = _inputs(name)
    expected = Session(path).run(inputs)
    async with EdgeAgent(
        broker_url, model=path, prefix=prefix, threads=1, fallback=False, input_shapes=SHAPES[name]
    ) as agent:
        candidates = [cut.id for cut in agent.model.candidates if cut.id != EDGE_ONLY]
        assert len(candidates) >= 3, candidates
        for cut in candidates:
            result = await agent.infer(inputs, cut=cut)
            assert result.hub_id is not None, cut
            for key, want in expected.items():
                np.testing.assert_allclose(result.outputs[key], want, atol=1e-5, err_msg=f"{name} at {cut}")
        chosen = await agent.infer(inputs)  # cut="auto", warmed up at the stated shapes
    assert chosen.fallback is None
    for key, want in expected.items():
        np.testing.assert_allclose(chosen.outputs[key], want, atol=1e-5)


async def test_without_stated_shapes_the_agent_opens_the_model_at_its_first_request_s(
    broker_url: str, prefix: str, start_hub: StartHub, tmp_path: Path
) -> None:
    path = tmp_path / "detector.onnx"
    onnx.save(CORPUS["detector"](), path)
    with pytest.raises(ModelError, match="--input-shape images=1x3xHEIGHTxWIDTH"):
        ModelHalves.open(path, threads=1)  # the tooling refuses to guess
    await start_hub(models_dir=tmp_path, use_zoo=False)
    image = realistic_inputs("detector", height=64, width=96)["images"]
    expected = Session(path).run({"images": image})
    async with EdgeAgent(broker_url, model=path, prefix=prefix, threads=1, fallback=False) as agent:
        with pytest.raises(RuntimeError, match="opens at the first request's"):
            _ = agent.model
        assert agent.inputs[0].shape == ("batch", 3, "height", "width")
        first = await agent.infer(image[0])  # cut="auto": warmed up at this image's size
        assert agent.model.input_shapes == {"images": (1, 3, 64, 96)}
        assert len(agent.model.candidates) >= 3
    np.testing.assert_allclose(first.outputs["detections"], expected["detections"], atol=1e-5)


async def test_a_recurrent_model_s_state_is_carried_between_requests(
    broker_url: str, prefix: str, start_hub: StartHub, tmp_path: Path
) -> None:
    path = tmp_path / "recurrent.onnx"
    onnx.save(CORPUS["recurrent"](), path)
    await start_hub(models_dir=tmp_path, use_zoo=False)
    chunks = [realistic_inputs("recurrent", samples=512, seed=seed) for seed in range(3)]
    full = Session(path)
    state = chunks[0]["state"]  # zeros
    expected = []
    for chunk in chunks:  # what a caller carrying the state by hand gets
        answer = full.run({**chunk, "state": state})
        expected.append(answer["output"])
        state = answer["stateN"]
    async with EdgeAgent(
        broker_url,
        model=path,
        cut=CLOUD_ONLY,
        prefix=prefix,
        threads=1,
        fallback=False,
        input_shapes=SHAPES["recurrent"],
        carry_state={"state": "stateN"},
    ) as agent:
        got = [(await agent.infer({"input": c["input"], "sr": c["sr"]})).outputs["output"] for c in chunks]
        agent.reset_state()
        again = await agent.infer({"input": chunks[0]["input"], "sr": chunks[0]["sr"]})
    for index, (want, have) in enumerate(zip(expected, got, strict=True)):
        np.testing.assert_allclose(have, want, atol=1e-5, err_msg=f"chunk {index}")
    assert not np.allclose(expected[0], expected[1])  # the state (and the audio) changes the answer
    np.testing.assert_allclose(again.outputs["output"], expected[0], atol=1e-5)


def test_carried_state_must_name_an_input_and_a_matching_output() -> None:
    inputs = (TensorSpec("state", "float32", (2, "batch", 16)),)
    outputs = (TensorSpec("stateN", "float32", (2, "batch", 16)), TensorSpec("output", "float32", ("batch", 1)))
    with pytest.raises(ConfigError, match=r"its outputs \['output', 'stateN'\]"):
        CarriedState({"state": "nope"}, inputs, outputs)
    with pytest.raises(ConfigError, match="input 'state' takes float32"):
        CarriedState({"state": "output"}, inputs, outputs)


async def test_a_new_input_size_gets_a_planner_warmed_up_at_it(
    broker_url: str, prefix: str, start_hub: StartHub, tmp_path: Path
) -> None:
    path = tmp_path / "detector.onnx"
    onnx.save(CORPUS["detector"](), path)
    await start_hub(models_dir=tmp_path, use_zoo=False)
    small, large = (realistic_inputs("detector", height=h, width=w)["images"] for h, w in ((64, 96), (128, 160)))
    full = Session(path)
    async with EdgeAgent(broker_url, model=path, prefix=prefix, threads=1, fallback=False) as agent:
        results = [await agent.infer(small)]
        first = agent.core
        results.append(await agent.infer(large))
        second = agent.core
        results.append(await agent.infer(small))
        assert agent.core is first  # back to the first size's planner, not warmed up again
    assert second is not first
    assert second.planner is not None
    assert first.planner is not None
    assert second.planner.link is first.planner.link  # one device, one hub: the link is learnt once
    counted = [next(c.bytes for c in p.candidates if c.id == CLOUD_ONLY) for p in (first.planner, second.planner)]
    assert counted == [3 * 64 * 96 * 4, 3 * 128 * 160 * 4]  # each size's candidates counted at its size
    for image, result in zip((small, large, small), results, strict=True):
        np.testing.assert_allclose(result.outputs["detections"], full.run({"images": image})["detections"], atol=1e-5)


async def test_a_ping_goes_back_to_the_input_size_that_asked_for_it(
    broker_url: str, prefix: str, tmp_path: Path
) -> None:
    # No hub: every ping waits out its timeout, so one size's ping is out when a request of another size
    # makes that size's core the current one; each core must hear of its own ping, or never ping again.
    path = tmp_path / "dynamic.onnx"
    onnx.save(CORPUS["dynamic_classifier"](), path)
    small, large = (realistic_inputs("dynamic_classifier", height=h, width=w) for h, w in ((80, 112), (96, 128)))
    timeouts = Timeouts(request=0.3, retry=None)
    async with EdgeAgent(broker_url, model=path, prefix=prefix, threads=1, timeouts=timeouts) as agent:
        await agent.infer(small)
        first = agent.core
        await agent.infer(large)
        second = agent.core
        assert second is not first
        chains = set(agent._probing)
        assert chains  # on the device now: nothing but pings measures the link
        await asyncio.wait(chains, timeout=30)
    assert all(chain.done() and chain.exception() is None for chain in chains)
    assert first._pings is None  # each chain ended where it began
    assert second._pings is None


def test_cores_by_size_keep_the_last_few_and_the_first() -> None:
    cores = [object() for _ in range(6)]
    keys = [size_key({"x": (1, size)}) for size in range(6)]
    sizes = CoresBySize(keys[0], cores[0], limit=3)  # type: ignore[arg-type]
    for key, core in zip(keys[1:], cores[1:], strict=True):
        assert sizes.use(key) is None
        sizes.add(key, core)  # type: ignore[arg-type]
        assert sizes.key == key
    assert sizes.use(keys[0]) is None  # forgotten: three sizes kept
    assert sizes.use(keys[3]) is cores[3]
    assert sizes.first is cores[0]  # whose head times are saved


def _masked_model(path: Path) -> Path:
    """``y = relu(where(mask, x * 2, 0)) + steps``: float, bool and int64 inputs."""
    graph = helper.make_graph(
        [
            helper.make_node("Mul", ["x", "two"], ["doubled"]),
            helper.make_node("Where", ["mask", "doubled", "zero"], ["kept"]),
            helper.make_node("Relu", ["kept"], ["positive"]),
            helper.make_node("Cast", ["steps"], ["steps.float"], to=TensorProto.FLOAT),
            helper.make_node("Add", ["positive", "steps.float"], ["y"]),
        ],
        "masked",
        [
            helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 4]),
            helper.make_tensor_value_info("mask", TensorProto.BOOL, ["N", 4]),
            helper.make_tensor_value_info("steps", TensorProto.INT64, ["N", 1]),
        ],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 4])],
        [numpy_helper.from_array(np.float32(2), "two"), numpy_helper.from_array(np.float32(0), "zero")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, path)
    return path


async def test_bool_and_int64_inputs_cross_at_every_cut(
    broker_url: str, prefix: str, start_hub: StartHub, tmp_path: Path
) -> None:
    path = _masked_model(tmp_path / "masked.onnx")
    await start_hub(models_dir=tmp_path, use_zoo=False)
    inputs = {
        "x": np.array([[1.0, -2.0, 3.0, -4.0]], np.float32),
        "mask": np.array([[True, True, False, True]]),
        "steps": np.array([[3]], np.int64),
    }
    expected = np.array([[5.0, 3.0, 3.0, 3.0]], np.float32)
    async with EdgeAgent(broker_url, model=path, prefix=prefix, threads=1, fallback=False) as agent:
        cuts = [cut.id for cut in agent.model.cuts if cut.id != EDGE_ONLY]
        assert len(cuts) >= 4, cuts
        for cut in cuts:
            result = await agent.infer(inputs, cut=cut)
            assert result.hub_id is not None, cut
            np.testing.assert_array_equal(result.outputs["y"], expected, err_msg=cut)
