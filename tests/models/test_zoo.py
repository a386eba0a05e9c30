import re
from collections.abc import Callable

import numpy as np
import onnx
import pytest

from models import Session, TensorSpec, zoo
from models._zoo_builder import GraphBuilder
from protocol.errors import ModelError

BIG = ("googlenet", "mobilenet_v2", "resnet18")
ALL = [pytest.param(name, marks=pytest.mark.slow) for name in BIG] + ["tiny"]
NAME_RE = re.compile(r"^[A-Za-z0-9_.]+$")


@pytest.fixture(scope="module", params=ALL)
def name(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture(scope="module")
def model(name: str) -> onnx.ModelProto:
    return zoo.build(name)


@pytest.fixture(scope="module")
def session(model: onnx.ModelProto) -> Session:
    return Session(model.SerializeToString())


def smooth_images(n: int, size: int, seed: int = 0) -> np.ndarray:
    """Tinted stripes, blocks and noise: images that differ the way photos do."""
    rng = np.random.default_rng(seed)
    axis = np.arange(size) / size
    rows, cols = np.meshgrid(axis, axis, indexing="ij")
    images = []
    for _ in range(n):
        angle, cycles = rng.uniform(0, np.pi), rng.uniform(0.5, 6)
        phase = np.cos(angle) * rows + np.sin(angle) * cols
        stripes = np.sin(2 * np.pi * cycles * phase)[..., None]
        grid = int(rng.integers(2, 6))
        blocks = rng.uniform(-1, 1, (grid, grid, 3))
        blocks = np.kron(blocks, np.ones((-(-size // grid),) * 2 + (1,)))
        image = rng.uniform(40, 215, 3) + rng.uniform(0, 80, 3) * stripes
        image = image + rng.uniform(0, 60) * blocks[:size, :size]
        image += rng.normal(0, rng.uniform(0, 20), image.shape)
        images.append(np.clip(image, 0, 255).astype(np.uint8))
    return np.stack(images)


def test_model_names_sorted_with_tiny() -> None:
    assert tuple(sorted(zoo.MODEL_NAMES)) == zoo.MODEL_NAMES
    assert set(zoo.MODEL_NAMES) == {*BIG, "tiny", "digits", "vit_tiny", "bert_tiny"}
    assert zoo.__all__ == sorted(zoo.__all__)


@pytest.mark.parametrize("call", [zoo.build, zoo.describe, zoo.entry])
def test_unknown_name_lists_known_names(call: Callable[[str], object]) -> None:
    with pytest.raises(ModelError, match="unknown zoo model 'vgg16'") as info:
        call("vgg16")
    for known in zoo.MODEL_NAMES:
        assert known in str(info.value)


@pytest.mark.parametrize("known", zoo.MODEL_NAMES)
def test_entry_describes_signature(known: str) -> None:
    entry = zoo.entry(known)
    size, classes = (32, 10) if known in {"tiny", "digits", "vit_tiny"} else (224, 1000)
    assert entry.name == known
    if known == "bert_tiny":
        assert entry.input == TensorSpec("tokens", "int64", ("N", "S"))
        classes = 2
    else:
        assert entry.input == TensorSpec("image", "uint8", ("N", size, size, 3))
    assert entry.output == TensorSpec("logits", "float32", ("N", classes))
    assert zoo.describe(known) == entry.description
    assert entry.description
    assert "\n" not in entry.description


def test_checker_opset_and_metadata(model: onnx.ModelProto, name: str) -> None:
    onnx.checker.check_model(model, full_check=True)
    assert [(o.domain, o.version) for o in model.opset_import] == [("", 17)]
    assert model.ir_version == 9
    props = {p.key: p.value for p in model.metadata_props}
    stated = {"edgecut.input_shapes": '{"tokens": [1, 128]}'} if name == "bert_tiny" else {}
    assert props == {"edgecut.zoo.name": name, "edgecut.zoo.seed": "0", **stated}


def _dims(value: onnx.ValueInfoProto) -> list[int | str]:
    dims = value.type.tensor_type.shape.dim
    return [d.dim_param if d.HasField("dim_param") else d.dim_value for d in dims]


def test_graph_signature_matches_entry(model: onnx.ModelProto, name: str) -> None:
    entry = zoo.entry(name)
    (image,) = model.graph.input
    (logits,) = model.graph.output
    assert image.name == "image"
    assert image.type.tensor_type.elem_type == onnx.TensorProto.UINT8
    assert tuple(_dims(image)) == entry.input.shape
    assert logits.name == "logits"
    assert logits.type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    assert tuple(_dims(logits)) == entry.output.shape


def test_every_intermediate_has_full_shape(model: onnx.ModelProto) -> None:
    infos = {v.name: v for v in model.graph.value_info}
    produced = [out for node in model.graph.node for out in node.output]
    for tensor in produced[:-1]:
        dims = _dims(infos[tensor])
        assert dims, tensor
        assert dims[0] == "N", tensor
        assert all(isinstance(d, int) and d > 0 for d in dims[1:]), tensor
    assert produced[-1] == "logits"


def test_names_unique_and_readable(model: onnx.ModelProto) -> None:
    nodes = model.graph.node
    node_names = [node.name for node in nodes]
    assert len(set(node_names)) == len(node_names)
    tensors = [out for node in nodes for out in node.output]
    tensors += [init.name for init in model.graph.initializer]
    assert len(set(tensors)) == len(tensors)
    assert all(NAME_RE.match(n) for n in node_names + tensors)
    assert "preprocess.out" in tensors
    assert any(t.endswith(".out") and t != "preprocess.out" for t in tensors)


def test_bn_folded_preprocess_inside(model: onnx.ModelProto) -> None:
    ops = [node.op_type for node in model.graph.node]
    assert "BatchNormalization" not in ops
    assert ops[:4] == ["Cast", "Sub", "Div", "Transpose"]
    assert ops[-3:] == ["GlobalAveragePool", "Flatten", "Gemm"]
    assert all(len(n.input) == 3 for n in model.graph.node if n.op_type == "Conv")


def test_runs_at_batch_1_and_2(session: Session, name: str) -> None:
    entry = zoo.entry(name)
    size, classes = int(entry.input.shape[1]), int(entry.output.shape[1])
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (2, size, size, 3), dtype=np.uint8)
    pair = session.run({"image": images})["logits"]
    first = session.run({"image": images[:1]})["logits"]
    assert pair.dtype == np.float32
    assert pair.shape == (2, classes)
    assert first.shape == (1, classes)
    np.testing.assert_allclose(first[0], pair[0], rtol=1e-4, atol=1e-4)


def test_logits_sane_and_input_dependent(session: Session, name: str) -> None:
    size = int(zoo.entry(name).input.shape[1])
    logits = session.run({"image": smooth_images(8, size)})["logits"]
    assert np.isfinite(logits).all()
    assert 0.1 < float(logits.std()) < 100
    assert len(set(logits.argmax(axis=1).tolist())) >= 3


def test_same_seed_same_bytes_other_seed_other_bytes(model: onnx.ModelProto, name: str) -> None:
    data = model.SerializeToString()
    assert zoo.build(name, seed=0).SerializeToString() == data
    assert zoo.build(name, seed=1).SerializeToString() != data


def _count(model: onnx.ModelProto, op: str) -> list[onnx.NodeProto]:
    return [node for node in model.graph.node if node.op_type == op]


@pytest.mark.slow
def test_googlenet_is_a_four_branch_dag() -> None:
    model = zoo.build("googlenet")
    concats = _count(model, "Concat")
    assert len(concats) == 9
    assert all(len(node.input) == 4 for node in concats)
    assert "inception3a.concat" in {node.name for node in concats}
    assert len(model.graph.node) >= 100
    assert not _count(model, "Add")


@pytest.mark.slow
def test_mobilenet_v2_relu6_and_residuals() -> None:
    model = zoo.build("mobilenet_v2")
    inits = {i.name: onnx.numpy_helper.to_array(i) for i in model.graph.initializer}
    clips = _count(model, "Clip")
    assert len(clips) == 35
    for node in clips:
        _, low, high = node.input
        assert (float(inits[low]), float(inits[high])) == (0.0, 6.0)
    assert len(_count(model, "Add")) == 10
    assert inits["logits.weight"].shape == (1000, 1280)


@pytest.mark.slow
def test_resnet18_layout() -> None:
    model = zoo.build("resnet18")
    inits = {i.name: i for i in model.graph.initializer}
    params = sum(int(np.prod(i.dims)) for i in inits.values())
    assert 11_600_000 < params < 11_700_000
    assert len(_count(model, "Add")) == 8
    assert list(inits["stem.conv.weight"].dims) == [64, 3, 7, 7]
    assert list(inits["logits.weight"].dims) == [1000, 512]
    assert "layer4.1.out" in {out for n in model.graph.node for out in n.output}


def test_tiny_has_branches_and_a_residual() -> None:
    model = zoo.build("tiny")
    (concat,) = _count(model, "Concat")
    assert len(concat.input) == 4
    assert len(_count(model, "Add")) == 1


def test_builder_rejects_duplicate_node_names() -> None:
    g = GraphBuilder(seed=0)
    x = g.preprocess("image")
    g.relu(x, "act")
    with pytest.raises(ValueError, match="'act' is already used"):
        g.relu(x, "act")
