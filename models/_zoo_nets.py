"""The zoo's architectures, written against :class:`GraphBuilder`.

Each network maps the preprocessed NCHW float input to its last feature map;
the classifier head (global average pool, flatten, Gemm) is added by the
caller. Names follow torchvision's module paths where one exists, and every
block names its output tensor ``<block>.out``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from models._zoo_builder import GraphBuilder

# Without BatchNorm statistics a residual sum doubles the variance; shrinking
# the branch's last conv (a small folded gamma) keeps deep stacks in range.
_RESIDUAL_SCALE = 0.3

# torchvision's MobileNetV2: expansion t, output channels c, repeats n, stride s.
_MOBILENET_V2 = (
    (1, 16, 1, 1),
    (6, 24, 2, 2),
    (6, 32, 3, 2),
    (6, 64, 4, 2),
    (6, 96, 3, 1),
    (6, 160, 3, 2),
    (6, 320, 1, 1),
)
_MOBILENET_V2_LAST = 1280

# Inception v1 widths: 1x1, 3x3 reduce, 3x3, "5x5" reduce, "5x5", pool proj.
_Widths = tuple[int, int, int, int, int, int]
_Stage = tuple[tuple[str, _Widths], ...]
_GOOGLENET_3: _Stage = (
    ("inception3a", (64, 96, 128, 16, 32, 32)),
    ("inception3b", (128, 128, 192, 32, 96, 64)),
)
_GOOGLENET_4: _Stage = (
    ("inception4a", (192, 96, 208, 16, 48, 64)),
    ("inception4b", (160, 112, 224, 24, 64, 64)),
    ("inception4c", (128, 128, 256, 24, 64, 64)),
    ("inception4d", (112, 144, 288, 32, 64, 64)),
    ("inception4e", (256, 160, 320, 32, 128, 128)),
)
_GOOGLENET_5: _Stage = (
    ("inception5a", (256, 160, 320, 32, 128, 128)),
    ("inception5b", (384, 192, 384, 48, 128, 128)),
)


def resnet18(g: GraphBuilder, x: str) -> str:
    """ResNet-18: 7x7/2 stem, max pool, four stages of two BasicBlocks."""
    x = g.conv(x, "stem.conv", 64, 7, stride=2)
    x = g.relu(x, "stem.relu")
    x = g.max_pool(x, "stem.maxpool", 3, 2, pad=1, out="stem.out")
    for stage, channels in enumerate((64, 128, 256, 512), start=1):
        for index in range(2):
            stride = 2 if stage > 1 and index == 0 else 1
            x = basic_block(g, x, f"layer{stage}.{index}", channels, stride=stride)
    return x


def mobilenet_v2(g: GraphBuilder, x: str) -> str:
    """MobileNetV2, width 1.0: inverted residuals with linear bottlenecks."""
    x = g.conv(x, "features.0.conv", 32, 3, stride=2)
    x = g.relu6(x, "features.0.relu6", out="features.0.out")
    index = 1
    for expand, channels, repeats, stride in _MOBILENET_V2:
        for repeat in range(repeats):
            block_stride = stride if repeat == 0 else 1
            name = f"features.{index}"
            x = inverted_residual(g, x, name, channels, stride=block_stride, expand=expand)
            index += 1
    x = g.conv(x, f"features.{index}.conv", _MOBILENET_V2_LAST, 1)
    return g.relu6(x, f"features.{index}.relu6", out=f"features.{index}.out")


def googlenet(g: GraphBuilder, x: str) -> str:
    """GoogLeNet (Inception v1) without auxiliary heads, torchvision's layout.

    Like torchvision, the "5x5" branch uses a 3x3 conv.
    """
    x = conv_relu(g, x, "conv1", 64, 7, stride=2)
    x = g.max_pool(x, "maxpool1", 3, 2, ceil=True)
    x = conv_relu(g, x, "conv2", 64, 1)
    x = conv_relu(g, x, "conv3", 192, 3)
    x = g.max_pool(x, "maxpool2", 3, 2, ceil=True)
    x = inception_stage(g, x, _GOOGLENET_3)
    x = g.max_pool(x, "maxpool3", 3, 2, ceil=True)
    x = inception_stage(g, x, _GOOGLENET_4)
    x = g.max_pool(x, "maxpool4", 2, 2, ceil=True)
    return inception_stage(g, x, _GOOGLENET_5)


def tiny(g: GraphBuilder, x: str) -> str:
    """A small DAG for tests: stem, one Inception block, one residual block."""
    x = conv_relu(g, x, "stem", 16, 3)
    x = g.max_pool(x, "stem.maxpool", 2, 2, out="stem.out")
    x = inception(g, x, "mixed", (8, 8, 16, 4, 8, 8))
    return basic_block(g, x, "block", 48, stride=2)


def digits(g: GraphBuilder, x: str) -> str:
    """Three stride-2 3x3 convs (16, 32, 32 channels): small enough to train on a CPU in seconds."""
    x = conv_relu(g, x, "conv1", 16, 3, stride=2)
    x = conv_relu(g, x, "conv2", 32, 3, stride=2)
    return conv_relu(g, x, "conv3", 32, 3, stride=2)


def conv_relu(
    g: GraphBuilder,
    x: str,
    name: str,
    channels: int,
    kernel: int,
    *,
    stride: int = 1,
) -> str:
    """Conv (BatchNorm folded) then ReLU, named ``<name>.conv``/``<name>.relu``."""
    x = g.conv(x, f"{name}.conv", channels, kernel, stride=stride)
    return g.relu(x, f"{name}.relu")


def basic_block(g: GraphBuilder, x: str, name: str, channels: int, *, stride: int) -> str:
    """ResNet BasicBlock: two 3x3 convs plus an identity or 1x1 shortcut."""
    y = g.conv(x, f"{name}.conv1", channels, 3, stride=stride)
    y = g.relu(y, f"{name}.relu1")
    y = g.conv(y, f"{name}.conv2", channels, 3, scale=_RESIDUAL_SCALE)
    shortcut = x
    if stride != 1 or g.channels(x) != channels:
        shortcut = g.conv(x, f"{name}.downsample", channels, 1, stride=stride)
    y = g.add(y, shortcut, f"{name}.add")
    return g.relu(y, f"{name}.relu2", out=f"{name}.out")


def inverted_residual(
    g: GraphBuilder,
    x: str,
    name: str,
    channels: int,
    *,
    stride: int,
    expand: int,
) -> str:
    """MobileNetV2 block: 1x1 expand, 3x3 depthwise, linear 1x1 projection."""
    hidden = g.channels(x) * expand
    y = x
    if expand != 1:
        y = g.conv(y, f"{name}.expand", hidden, 1)
        y = g.relu6(y, f"{name}.expand_relu6")
    y = g.conv(y, f"{name}.dw", hidden, 3, stride=stride, groups=hidden)
    y = g.relu6(y, f"{name}.dw_relu6")
    if stride != 1 or g.channels(x) != channels:
        return g.conv(y, f"{name}.project", channels, 1, out=f"{name}.out")
    y = g.conv(y, f"{name}.project", channels, 1, scale=_RESIDUAL_SCALE)
    return g.add(x, y, f"{name}.add", out=f"{name}.out")


def inception(g: GraphBuilder, x: str, name: str, widths: _Widths) -> str:
    """Inception v1 block: four parallel branches joined by a Concat."""
    ones, reduce3, threes, reduce5, fives, pool_proj = widths
    branch1 = conv_relu(g, x, f"{name}.branch1", ones, 1)
    branch2 = conv_relu(g, x, f"{name}.branch2.0", reduce3, 1)
    branch2 = conv_relu(g, branch2, f"{name}.branch2.1", threes, 3)
    branch3 = conv_relu(g, x, f"{name}.branch3.0", reduce5, 1)
    branch3 = conv_relu(g, branch3, f"{name}.branch3.1", fives, 3)
    branch4 = g.max_pool(x, f"{name}.branch4.0", 3, 1, pad=1, ceil=True)
    branch4 = conv_relu(g, branch4, f"{name}.branch4.1", pool_proj, 1)
    branches = (branch1, branch2, branch3, branch4)
    return g.concat(branches, f"{name}.concat", out=f"{name}.out")


def inception_stage(g: GraphBuilder, x: str, blocks: _Stage) -> str:
    """Inception blocks in sequence."""
    for name, widths in blocks:
        x = inception(g, x, name, widths)
    return x
