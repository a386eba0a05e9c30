"""A prelude in front of float-input models: equal to the same preprocessing in numpy, and fit for the tooling."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from models import TensorSpec, partition, prelude
from protocol import codec_applies
from protocol.errors import ModelError
from tests.models._prelude_reference import (
    IMAGENET,
    MODEL_SIZE,
    NCHW,
    NHWC,
    convnet,
    graph_model,
    identity,
    images,
    reference,
    run,
    tensor_input,
)

# Bilinear in float32 (ORT) against float64 (numpy): within 0.01 of a pixel level (0..255; measured
# up to 0.0099 from 1080x1920 to 224x224), so within that times scale / std in the model's units.
PIXEL_TOLERANCE = 1e-2
SPLIT_TOLERANCE = 1e-4


def tolerance(steps: prelude.Preprocessing) -> float:
    return PIXEL_TOLERANCE * steps.scale / min(steps.std)


# Camera sizes: the model's own, wide and tall (letterbox pads rows, then columns), smaller with an odd
# padding (upsampling), twice the model's size (no padding), and a 720p camera (27x fewer rows).
IMAGE_SIZES = [(32, 48), (40, 90), (90, 40), (17, 23), (64, 96), (720, 1280)]


@pytest.mark.parametrize("image_size", IMAGE_SIZES, ids=[f"{h}x{w}" for h, w in IMAGE_SIZES])
@pytest.mark.parametrize("fit", ["resize", "letterbox"])
@pytest.mark.parametrize("layout", ["nchw", "nhwc"])
@pytest.mark.parametrize("normalise", [{}, IMAGENET], ids=["scale", "mean-std"])
def test_the_prelude_equals_numpy_preprocessing(
    image_size: tuple[int, int], fit: prelude.Fit, layout: prelude.Layout, normalise: dict[str, tuple[float, ...]]
) -> None:
    steps = prelude.Preprocessing(image=image_size, layout=layout, scale=1 / 255, fit=fit, **normalise)  # type: ignore[arg-type]
    composed = prelude.add_prelude(identity(NCHW if layout == "nchw" else NHWC), steps)
    batch = images(*image_size)
    got = run(composed.model, batch)
    want = reference(batch, steps)
    assert got.shape == want.shape
    assert np.abs(got - want).max() <= tolerance(steps)


def test_the_tolerance_fails_a_prelude_that_samples_otherwise() -> None:
    """The reference tells half-pixel from the other coordinate modes: align_corners is off by far more."""
    steps = prelude.Preprocessing(image=(40, 90), layout="nchw", scale=1 / 255)
    composed = prelude.add_prelude(identity(), steps).model
    for node in composed.graph.node:
        if node.op_type == "Resize":
            node.attribute.remove(next(a for a in node.attribute if a.name == "coordinate_transformation_mode"))
            node.attribute.append(helper.make_attribute("coordinate_transformation_mode", "align_corners"))
    batch = images(40, 90)
    assert np.abs(run(composed, batch) - reference(batch, steps)).max() > 100 * tolerance(steps)


def test_the_composed_model_equals_the_model_on_numpy_preprocessed_input() -> None:
    model = convnet()
    steps = prelude.Preprocessing(image=(60, 80), layout="nchw", scale=1 / 255, fit="letterbox", **IMAGENET)  # type: ignore[arg-type]
    composed = prelude.add_prelude(model, steps)
    batch = images(60, 80)
    expected = run(model, reference(batch, steps))
    np.testing.assert_allclose(run(composed.model, batch), expected, atol=SPLIT_TOLERANCE, rtol=0)


def test_the_input_cut_carries_the_uint8_image_and_later_cuts_verify() -> None:
    steps = prelude.Preprocessing(image=(60, 80), layout="nchw", scale=1 / 255, fit="letterbox")
    composed = prelude.add_prelude(convnet(), steps).model
    cuts = partition.enumerate_cuts(composed)
    image = TensorSpec("x", "uint8", (1, 60, 80, 3))
    assert cuts[0].id == "input"
    assert cuts[0].tensors == (image,)
    assert codec_applies("jpeg", image.dtype, [1, 60, 80, 3])
    later = [cut.id for cut in cuts if cut.single_tensor and cut.id != "input"]
    assert {"prelude.resize", "conv1", "pool"} <= set(later)
    for cut_id in later:
        assert (
            partition.verify_split(composed, partition.split(composed, cut_id, model_id="convnet")) <= SPLIT_TOLERANCE
        )


def test_the_result_says_what_the_prelude_takes_and_gives() -> None:
    steps = prelude.Preprocessing(image=(40, 90), layout="nchw", fit="letterbox")
    composed = prelude.add_prelude(convnet(), steps)
    assert composed.image == TensorSpec("x", "uint8", (1, 40, 90, 3))
    assert composed.feeds == TensorSpec("x", "float32", (1, 3, 32, 48))
    assert composed.placement == prelude.Placement(21, 48, 5, 6, 0, 0)
    assert [vi.name for vi in composed.model.graph.input] == ["x"]


@pytest.mark.parametrize(
    ("image", "size", "expected"),
    [
        ((480, 640), (640, 640), prelude.Placement(480, 640, 80, 80, 0, 0)),  # a VGA camera, a YOLO model
        ((720, 1280), (384, 640), prelude.Placement(360, 640, 12, 12, 0, 0)),
        ((100, 50), (32, 48), prelude.Placement(32, 16, 0, 0, 16, 16)),
        ((17, 23), (32, 48), prelude.Placement(32, 43, 0, 0, 2, 3)),  # odd padding: the extra pixel right
    ],
)
def test_letterbox_placement_is_ultralytics(
    image: tuple[int, int], size: tuple[int, int], expected: prelude.Placement
) -> None:
    assert prelude.placement(image, size, "letterbox") == expected
    assert prelude.placement(image, size, "resize") == prelude.Placement(*size, 0, 0, 0, 0)


def test_a_free_batch_axis_stays_free() -> None:
    steps = prelude.Preprocessing(image=(40, 90), layout="nchw", scale=1 / 255, fit="letterbox")
    model = convnet(["batch", 3, *MODEL_SIZE])
    composed = prelude.add_prelude(model, steps)
    assert composed.image.shape == ("batch", 40, 90, 3)
    batch = images(40, 90, batch=3)
    expected = run(model, reference(batch, steps))
    np.testing.assert_allclose(run(composed.model, batch), expected, atol=SPLIT_TOLERANCE, rtol=0)


def test_a_model_of_any_size_needs_the_size_it_sees() -> None:
    model = convnet(["N", 3, "height", "width"])
    steps = prelude.Preprocessing(image=(40, 90), layout="nchw", scale=1 / 255)
    with pytest.raises(ModelError, match=r"height and width are not fixed.*--model-size HxW"):
        prelude.add_prelude(model, steps)
    composed = prelude.add_prelude(model, steps, model_size=MODEL_SIZE)
    assert composed.feeds.shape == ("N", 3, *MODEL_SIZE)
    assert partition.enumerate_cuts(composed.model)[1].bytes == 40 * 90 * 3 * 4  # the cast image: sizes are known


def test_an_opset_11_model_takes_a_prelude() -> None:
    steps = prelude.Preprocessing(image=(40, 90), layout="nchw", scale=1 / 255, fit="letterbox")
    composed = prelude.add_prelude(convnet(opset=11), steps)
    batch = images(40, 90)
    expected = run(convnet(), reference(batch, steps))
    np.testing.assert_allclose(run(composed.model, batch), expected, atol=SPLIT_TOLERANCE, rtol=0)
    with pytest.raises(ModelError, match="opset 10; a prelude needs 11"):
        prelude.add_prelude(convnet(opset=10), steps)


def test_several_image_inputs_need_a_name() -> None:
    nodes = [helper.make_node("Add", ["left", "right"], ["y"])]
    model = graph_model(nodes, [tensor_input(NCHW, "left"), tensor_input(NCHW, "right")])
    steps = prelude.Preprocessing(image=(40, 90), layout="nchw")
    with pytest.raises(ModelError, match=r"several inputs could take the image \(left, right\).*--input NAME"):
        prelude.add_prelude(model, steps)
    composed = prelude.add_prelude(model, steps, input_name="right")
    assert [(vi.name, vi.type.tensor_type.elem_type) for vi in composed.model.graph.input] == [
        ("right", TensorProto.UINT8),
        ("left", TensorProto.FLOAT),
    ]


@pytest.mark.parametrize(
    ("inputs", "name", "message"),
    [
        ([tensor_input([1, 8], "tokens", TensorProto.INT64)], None, r"no input is 4-D float32.*tokens int64\[1,8\]"),
        (
            [tensor_input(NCHW, "x"), tensor_input([1, 8], "mask")],
            "mask",
            r"input 'mask' is float32\[1,8\]: a prelude feeds a 4-D",
        ),
        ([tensor_input(NCHW, "x")], "image", r"no input 'image'; its inputs: x float32\[1,3,32,48\]"),
        ([tensor_input(NHWC, "x")], None, r"axis 1 has 32 channels, not 3; is its layout nhwc\?"),
    ],
)
def test_inputs_a_prelude_cannot_feed_are_refused(
    inputs: list[onnx.ValueInfoProto], name: str | None, message: str
) -> None:
    nodes = [helper.make_node("Identity", [inputs[0].name], ["y"])]
    steps = prelude.Preprocessing(image=(40, 90), layout="nchw")
    with pytest.raises(ModelError, match=message):
        prelude.add_prelude(graph_model(nodes, inputs), steps, input_name=name)


def test_a_model_size_that_contradicts_the_model_is_refused() -> None:
    steps = prelude.Preprocessing(image=(40, 90), layout="nchw")
    with pytest.raises(ModelError, match=r"cannot take a model size of 64x64"):
        prelude.add_prelude(convnet(), steps, model_size=(64, 64))


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"image": (0, 640)}, "image must be a"),
        ({"layout": "chw"}, "layout must be one of nchw, nhwc"),
        ({"fit": "crop"}, "fit must be one of resize, letterbox"),
        ({"scale": 0.0}, "scale must be a positive number"),
        ({"mean": (1.0, 2.0)}, "mean must be 3 finite numbers"),
        ({"std": (1.0, 0.0, 1.0)}, "std must not be zero"),
        ({"pad_value": 300.0}, "pad_value must be a pixel value"),
    ],
)
def test_bad_preprocessing_is_refused(changes: dict[str, object], message: str) -> None:
    fields: dict[str, object] = {"image": (480, 640), "layout": "nchw"} | changes
    with pytest.raises(ValueError, match=message):
        prelude.Preprocessing(**fields)  # type: ignore[arg-type]
