"""Codecs never lie (issue 25): refused where they send nothing they name, and results say what was sent."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import onnx
import pytest

from edge_agent import CLOUD_ONLY, EDGE_ONLY, EdgeAgent, ModelHalves
from edge_agent._adaptive import auto_core
from models import digits
from protocol import effective_codec
from protocol.errors import ConfigError
from tests._support import LOADS_IN_TIME
from tests.corpus import detector, float_input_model, realistic_inputs

if TYPE_CHECKING:
    from pathlib import Path

    from tests._support import StartHub

NO_BROKER = "mqtt://127.0.0.1:1"  # a refused codec fails before the agent connects


def _saved(tmp_path: Path, model: onnx.ModelProto, name: str) -> Path:
    path = tmp_path / f"{name}.onnx"
    onnx.save(model, path)
    return path


@pytest.mark.parametrize(
    ("model", "cut", "codec", "named"),
    [
        ("float", CLOUD_ONLY, "jpeg", ["'input' float32[1,3,64,64]", "fp16", "int8+zstd", "zstd"]),
        ("detector", CLOUD_ONLY, "png", ["'images' float32[batch,3,height,width]", "int8"]),
        ("digits", CLOUD_ONLY, "int8", ["'image' uint8[N,32,32,3]", "jpeg", "png", "zstd"]),
        ("digits", "conv2.relu", "jpeg", ["'conv2.relu' float32[", "fp16"]),
    ],
)
async def test_a_fixed_cut_refuses_a_codec_that_would_send_every_tensor_raw(
    tmp_path: Path, model: str, cut: str, codec: str, named: list[str]
) -> None:
    builders = {"float": float_input_model, "detector": detector}
    source = _saved(tmp_path, builders[model](), model) if model in builders else model
    shapes = {"images": (1, 3, 64, 64)} if model == "detector" else None  # its height and width are open
    agent = EdgeAgent(NO_BROKER, model=source, cut=cut, codec=codec, threads=1, input_shapes=shapes)
    with pytest.raises(ConfigError, match=f"codec '{codec}' applies to no tensor at cut '{cut}'") as caught:
        await agent.__aenter__()
    for text in named:
        assert text in str(caught.value)


async def test_an_allowed_codec_that_applies_only_in_part_is_named_by_what_it_sends(
    broker_url: str, prefix: str, start_hub: StartHub
) -> None:
    await start_hub()
    image = digits.test_set()[0][0]
    async with EdgeAgent(
        broker_url, model="digits", cut=CLOUD_ONLY, prefix=prefix, threads=1, codec="int8+zstd", timeouts=LOADS_IN_TIME
    ) as agent:
        full = agent.model.halves(EDGE_ONLY).head.run({"image": image[None]})["logits"]
        result = await agent.infer(image)
    assert (result.fallback, result.hub_id) == (None, "hub0")
    assert (result.codec, result.tensor_codecs) == ("zstd", {"image": "zstd"})  # the uint8 image is never narrowed
    assert np.array_equal(result.outputs["logits"], full)


async def test_a_cut_the_caller_asks_for_says_when_the_codec_sent_everything_raw(
    broker_url: str, prefix: str, start_hub: StartHub
) -> None:
    await start_hub()
    image = digits.test_set()[0][0]
    options = {"cut": "conv2.relu", "prefix": prefix, "threads": 1, "codec": "int8", "timeouts": LOADS_IN_TIME}
    async with EdgeAgent(broker_url, model="digits", **options) as agent:  # type: ignore[arg-type]
        at_its_cut = await agent.infer(image)
        asked_for = await agent.infer(image, cut=CLOUD_ONLY)
    assert (at_its_cut.codec, at_its_cut.tensor_codecs) == ("int8", {"conv2.relu": "int8"})
    assert (asked_for.hub_id, asked_for.codec, asked_for.tensor_codecs) == ("hub0", "raw", {"image": "raw"})


async def test_a_fixed_cut_uses_the_first_codec_of_an_allow_list(
    broker_url: str, prefix: str, start_hub: StartHub, tmp_path: Path
) -> None:
    model = _saved(tmp_path, float_input_model(), "float")
    await start_hub(models_dir=tmp_path, use_zoo=False)
    feeds = realistic_inputs("float_input_model")
    async with EdgeAgent(
        broker_url,
        model=model,
        cut=CLOUD_ONLY,
        prefix=prefix,
        threads=1,
        codec=["fp16", "jpeg"],
        timeouts=LOADS_IN_TIME,
    ) as agent:
        result = await agent.infer(feeds)
    assert (result.hub_id, result.codec, result.tensor_codecs) == ("hub0", "fp16", {"input": "fp16"})


@pytest.mark.parametrize(
    ("codecs", "at_input"),
    [
        (("jpeg",), {"raw"}),  # floats cross everywhere: jpeg sends nothing as a JPEG
        (("jpeg", "int8+zstd"), {"int8+zstd"}),
        (("raw", "png", "fp16"), {"raw", "fp16"}),
    ],
)
def test_the_planner_offers_each_cut_only_under_what_it_really_sends(
    tmp_path: Path, codecs: tuple[str, ...], at_input: set[str]
) -> None:
    halves = ModelHalves.open(_saved(tmp_path, float_input_model(), "float"), threads=1)
    planner = auto_core(halves, 0.0, codecs=codecs).planner
    assert planner is not None
    crossing = {boundary.id: boundary.crossing for boundary in halves.chain().manifest.cuts}
    by_cut: dict[str, set[str]] = {}
    for candidate in planner.candidates:
        by_cut.setdefault(candidate.id, set()).add(candidate.codec)
        if not candidate.edge_only:  # the candidate's codec is what at least one of its tensors is sent as
            assert any(
                effective_codec(candidate.codec, s.dtype, [d if isinstance(d, int) else 1 for d in s.shape])
                == candidate.codec
                for s in crossing[candidate.id]
            )
    assert by_cut[CLOUD_ONLY] == at_input
    assert "jpeg" not in set().union(*by_cut.values())


def test_a_compound_codec_is_offered_as_its_compression_where_only_an_image_crosses() -> None:
    planner = auto_core(ModelHalves.open("digits", threads=1), 0.0, codecs=("int8+zstd",)).planner
    assert planner is not None
    labels = {candidate.label for candidate in planner.candidates}
    assert "input@zstd" in labels
    assert "input@int8+zstd" not in labels
    assert "pool@int8+zstd" in labels
