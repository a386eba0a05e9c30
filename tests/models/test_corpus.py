"""The test corpus itself (tests/corpus.py): valid models that run, each with the trait it claims."""

from __future__ import annotations

import numpy as np
import onnx
import pytest

from models import Session
from tests.corpus import CORPUS, DETECTOR_STRIDE, FLOAT_INPUT_SHAPE, SAMPLE_RATE, STATE_SIZE, realistic_inputs

IMAGE_SIZES = [(64, 64), (96, 128), (640, 640)]


def _session(name: str) -> Session:
    return Session(CORPUS[name]().SerializeToString(), threads=1)


def _dims(value: onnx.ValueInfoProto) -> list[int | str | None]:
    """Each dim's value, else its symbol, else ``None``."""
    return [d.dim_value if d.HasField("dim_value") else (d.dim_param or None) for d in value.type.tensor_type.shape.dim]


def _inferred(name: str) -> dict[str, list[int | str | None]]:
    model = onnx.shape_inference.infer_shapes(CORPUS[name](), check_type=True, strict_mode=True)
    graph = model.graph
    return {v.name: _dims(v) for v in [*graph.input, *graph.value_info, *graph.output]}


@pytest.mark.parametrize("name", sorted(CORPUS))
def test_each_model_is_valid_and_the_same_every_time(name: str) -> None:
    model = CORPUS[name]()
    onnx.checker.check_model(model, full_check=True)
    assert CORPUS[name]().SerializeToString() == model.SerializeToString()  # weights from a fixed seed


@pytest.mark.parametrize(("name", "size"), [(n, s) for n in ("detector", "dynamic_classifier") for s in IMAGE_SIZES])
def test_image_models_run_at_several_sizes(name: str, size: tuple[int, int]) -> None:
    height, width = size
    outputs = _session(name).run(realistic_inputs(name, batch=2, height=height, width=width))
    (output,) = outputs.values()
    assert np.isfinite(output).all()
    if name == "dynamic_classifier":
        assert output.shape == (2, 3)
    else:
        assert output.shape[1] == 6
        assert set(np.unique(output[:, 0])) <= {0.0, 1.0}  # each box names its image in the batch


@pytest.mark.parametrize("name", ["detector", "dynamic_classifier"])
def test_image_models_have_symbolic_batch_height_and_width(name: str) -> None:
    (image,) = CORPUS[name]().graph.input
    assert _dims(image) == ["batch", 3, "height", "width"]


def test_the_float_input_model_has_a_fixed_normalised_input() -> None:
    (image,) = CORPUS["float_input_model"]().graph.input
    assert tuple(_dims(image)) == FLOAT_INPUT_SHAPE
    feeds = realistic_inputs("float_input_model")
    assert feeds["input"].min() < 0 < feeds["input"].max()  # normalised, not 0..1 or 0..255
    assert _session("float_input_model").run(feeds)["logits"].shape == (1, 3)


@pytest.mark.parametrize("size", [(1, 1), (60, 64), (66, 66)])
def test_the_detector_neck_fails_on_sizes_off_its_stride(size: tuple[int, int]) -> None:
    height, width = size
    assert height % DETECTOR_STRIDE or width % DETECTOR_STRIDE
    with pytest.raises(Exception, match="Non concat axis dimensions must match"):
        _session("detector").run(realistic_inputs("detector", height=height, width=width))


def test_the_detector_decodes_boxes_on_an_axis_that_is_not_a_batch() -> None:
    shapes = _inferred("detector")
    assert shapes["decode.nonzero"][0] == 2
    boxes = shapes["decode.nonzero"][1]
    assert not isinstance(boxes, int)  # known only from the data
    assert shapes["decode.boxes"] == [boxes, 4]
    assert boxes != shapes["images"][0]
    session = _session("detector")
    counts = {len(session.run(realistic_inputs("detector", seed=seed))["detections"]) for seed in range(4)}
    assert len(counts) > 1  # the number of boxes changes with the image, not with the batch


def test_the_recurrent_model_has_state_a_scalar_and_an_if_reading_the_outer_scope() -> None:
    model = CORPUS["recurrent"]()
    assert {v.name: _dims(v) for v in model.graph.input} == {
        "input": ["batch", "samples"],
        "state": [2, "batch", STATE_SIZE],
        "sr": [],
    }
    (branching,) = [node for node in model.graph.node if node.op_type == "If"]
    for attribute in branching.attribute:
        branch = attribute.g
        assert "input" in {name for node in branch.node for name in node.input}
        assert "input" not in {v.name for v in branch.input}


def test_the_recurrent_models_branches_differ_and_its_state_carries() -> None:
    session = _session("recurrent")
    feeds = realistic_inputs("recurrent", batch=2, samples=512)
    at_16k = session.run(feeds)
    at_8k = session.run({**feeds, "sr": np.array(8000, np.int64)})
    assert at_16k["output"].shape == (2, 1)
    assert at_16k["stateN"].shape == (2, 2, STATE_SIZE)
    assert not np.allclose(at_16k["stateN"], at_8k["stateN"])
    again = session.run({**feeds, "state": at_16k["stateN"]})
    assert not np.allclose(again["stateN"], at_16k["stateN"])
    assert feeds["sr"] == SAMPLE_RATE


def test_the_recurrent_model_fails_inside_its_branch_on_one_sample() -> None:
    with pytest.raises(Exception, match=r"16k\.pad.*Pad reflect requires"):
        _session("recurrent").run(realistic_inputs("recurrent", samples=1))


def test_realistic_inputs_are_in_range() -> None:
    image = realistic_inputs("detector", height=96, width=128)["images"]
    assert image.shape == (1, 3, 96, 128)
    assert image.dtype == np.float32
    assert 0 <= image.min() < image.max() <= 1
    audio = realistic_inputs("recurrent", samples=100)
    assert audio["input"].shape == (1, 100)
    assert -1 <= audio["input"].min() < audio["input"].max() <= 1
    assert not audio["state"].any()
    assert audio["sr"].ndim == 0
