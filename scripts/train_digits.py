"""Train the zoo's ``digits`` model on scikit-learn's handwritten digits, with numpy alone.

The data: scikit-learn's copy of the UCI "Optical Recognition of Handwritten
Digits" test set (1,797 8x8 images, 0-16 grey levels, CC BY 4.0), the only
labelled image set that ships inside a Python package. Each image becomes a
camera-like frame as the zoo's models take it: upscaled to 32x32 (nearest),
levels stretched to 0-255, grey copied into three channels, uint8 NHWC. A
stratified 80/20 split (``random_state=0``) gives 1,437 training and 360
test images.

The network is the zoo's ``digits`` architecture (``models/_zoo_nets.py``),
started from its seeded weights; the forward pass here mirrors the ONNX graph
(the same preprocessing, convs, global average pool and Gemm), trained with
minibatch SGD and momentum on cross-entropy, each training image shifted by up
to two pixels. The script checks that ONNX Runtime, running the built model,
agrees with its own forward pass, then writes:

- ``models/trained/digits.npz``: the weights by initializer name (the zoo
  builds the model from them: ``edgecut models split digits ...``);
- ``models/trained/digits-test.npz``: the 360 test images (8x8, as shipped)
  and labels, for ``edgecut models accuracy``.

Deterministic: the same numpy build gives the same weights (other BLAS
builds may differ in the last bits).

    pip install -e '.[tools,train]' && python scripts/train_digits.py [--epochs 60]
"""

from __future__ import annotations

import argparse
import io
import time
from pathlib import Path

import numpy as np
import onnx
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

from models import Session
from models.digits import frames
from models.zoo import build

OUT = Path(__file__).resolve().parents[1] / "models" / "trained"
MEAN = np.array([123.675, 116.28, 103.53], np.float32).reshape(1, 3, 1, 1)
STD = np.array([58.395, 57.12, 57.375], np.float32).reshape(1, 3, 1, 1)
CONVS = ("conv1.conv", "conv2.conv", "conv3.conv")
REPORT_EVERY = 10  # epochs between test scores


def preprocess(images: np.ndarray) -> np.ndarray:
    """The graph's preprocessing: uint8 NHWC to normalised float NCHW."""
    return (images.astype(np.float32).transpose(0, 3, 1, 2) - MEAN) / STD


def windows(x: np.ndarray) -> np.ndarray:
    """3x3 windows at stride 2 with padding 1: [N, C, H/2, W/2, 3, 3]."""
    padded = np.pad(x, ((0, 0), (0, 0), (1, 1), (1, 1)))
    view = np.lib.stride_tricks.sliding_window_view(padded, (3, 3), axis=(2, 3))
    return view[:, :, ::2, ::2]


def conv_forward(x: np.ndarray, weight: np.ndarray, bias: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Conv 3x3, stride 2, padding 1; also the im2col matrix for the backward pass."""
    n, c, h, w = x.shape
    cols = windows(x).transpose(0, 2, 3, 1, 4, 5).reshape(n * (h // 2) * (w // 2), c * 9)
    out = cols @ weight.reshape(weight.shape[0], -1).T + bias
    return out.reshape(n, h // 2, w // 2, -1).transpose(0, 3, 1, 2), cols


def conv_backward(
    grad: np.ndarray, cols: np.ndarray, weight: np.ndarray, x_shape: tuple[int, ...]
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Gradients of the conv's input, weight and bias."""
    n, c, h, w = x_shape
    flat = grad.transpose(0, 2, 3, 1).reshape(-1, weight.shape[0])
    d_weight = (flat.T @ cols).reshape(weight.shape)
    d_bias = flat.sum(axis=0)
    d_cols = (flat @ weight.reshape(weight.shape[0], -1)).reshape(n, h // 2, w // 2, c, 3, 3)
    d_padded = np.zeros((n, c, h + 2, w + 2), np.float32)
    for i in range(3):
        for j in range(3):
            d_padded[:, :, i : i + h : 2, j : j + w : 2] += d_cols[:, :, :, :, i, j].transpose(0, 3, 1, 2)
    return d_padded[:, :, 1:-1, 1:-1], d_weight, d_bias


def forward(params: dict[str, np.ndarray], images: np.ndarray) -> tuple[np.ndarray, list[tuple[np.ndarray, ...]]]:
    """Logits, and what the backward pass needs."""
    x = preprocess(images)
    saved = []
    for name in CONVS:
        y, cols = conv_forward(x, params[f"{name}.weight"], params[f"{name}.bias"])
        saved.append((x.shape, cols, y))
        x = np.maximum(y, 0)
    pooled = x.mean(axis=(2, 3))
    saved.append((x.shape, pooled))
    return pooled @ params["logits.weight"].T + params["logits.bias"], saved


def gradients(
    params: dict[str, np.ndarray], images: np.ndarray, labels: np.ndarray
) -> tuple[float, dict[str, np.ndarray]]:
    """Mean cross-entropy and its gradient for every parameter."""
    logits, saved = forward(params, images)
    shifted = logits - logits.max(axis=1, keepdims=True)
    probabilities = np.exp(shifted) / np.exp(shifted).sum(axis=1, keepdims=True)
    loss = float(-np.log(probabilities[np.arange(len(labels)), labels] + 1e-12).mean())
    d_logits = probabilities
    d_logits[np.arange(len(labels)), labels] -= 1
    d_logits /= len(labels)
    (feature_shape, pooled) = saved.pop()
    grads = {"logits.weight": d_logits.T @ pooled, "logits.bias": d_logits.sum(axis=0)}
    d_x = np.broadcast_to(
        (d_logits @ params["logits.weight"])[:, :, None, None] / (feature_shape[2] * feature_shape[3]),
        feature_shape,
    )
    for name, (x_shape, cols, y) in zip(reversed(CONVS), reversed(saved), strict=True):
        d_y = d_x * (y > 0)
        d_x, grads[f"{name}.weight"], grads[f"{name}.bias"] = conv_backward(
            d_y, cols, params[f"{name}.weight"], x_shape
        )
    return loss, grads


def shifted(images: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Each image moved by up to two pixels each way (zeros fill in)."""
    out = np.zeros_like(images)
    for index, (dy, dx) in enumerate(rng.integers(-2, 3, (len(images), 2))):
        source = images[index, max(0, -dy) : 32 - max(0, dy), max(0, -dx) : 32 - max(0, dx)]
        out[index, max(0, dy) : max(0, dy) + source.shape[0], max(0, dx) : max(0, dx) + source.shape[1]] = source
    return out


def accuracy(params: dict[str, np.ndarray], images: np.ndarray, labels: np.ndarray) -> float:
    """Top-1 of this script's forward pass."""
    return float((forward(params, images)[0].argmax(axis=1) == labels).mean())


def main() -> None:
    """Train, check against ONNX Runtime, write the weights and the test set."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--epochs", type=int, default=60)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--lr", type=float, default=0.05)
    args = parser.parse_args()
    digits = load_digits()
    train_x, test_x, train_y, test_y = train_test_split(
        digits.images.astype(np.uint8), digits.target, test_size=0.2, random_state=0, stratify=digits.target
    )
    train_frames, test_frames = frames(train_x), frames(test_x)
    start = build("digits", trained=False)
    params = {tensor.name: onnx.numpy_helper.to_array(tensor).copy() for tensor in start.graph.initializer}
    params = {name: value for name, value in params.items() if not name.startswith("preprocess.")}
    velocity = {name: np.zeros_like(value) for name, value in params.items()}
    rng = np.random.default_rng(0)
    started = time.perf_counter()
    for epoch in range(args.epochs):
        lr = args.lr * 0.5 * (1 + np.cos(np.pi * epoch / args.epochs))  # cosine decay
        order = rng.permutation(len(train_frames))
        losses = []
        for begin in range(0, len(order), args.batch):
            batch = order[begin : begin + args.batch]
            loss, grads = gradients(params, shifted(train_frames[batch], rng), train_y[batch])
            losses.append(loss)
            for name, grad in grads.items():
                velocity[name] = 0.9 * velocity[name] - lr * (grad + 1e-4 * params[name])
                params[name] = (params[name] + velocity[name]).astype(np.float32)
        if (epoch + 1) % REPORT_EVERY == 0 or epoch == args.epochs - 1:
            test = accuracy(params, test_frames, test_y)
            print(f"epoch {epoch + 1:3d}  loss {np.mean(losses):.4f}  test top-1 {test:.2%}", flush=True)
    print(f"trained in {time.perf_counter() - started:.0f} s")
    weights = {name: value.astype(np.float32) for name, value in params.items()}
    weights |= {
        tensor.name: onnx.numpy_helper.to_array(tensor)
        for tensor in start.graph.initializer
        if tensor.name.startswith("preprocess.")
    }
    buffer = io.BytesIO()
    np.savez_compressed(buffer, **weights)
    OUT.mkdir(exist_ok=True)
    (OUT / "digits.npz").write_bytes(buffer.getvalue())
    np.savez_compressed(OUT / "digits-test.npz", images=test_x, labels=test_y.astype(np.int64))
    model = build("digits")
    session = Session(model.SerializeToString(), threads=1)
    onnx_logits = session.run({"image": test_frames})["logits"]
    ours = forward(params, test_frames)[0]
    print(
        f"ONNX Runtime vs this script's forward pass: largest logit difference {np.abs(onnx_logits - ours).max():.2e}"
    )
    print(f"test top-1 (ONNX Runtime): {(onnx_logits.argmax(axis=1) == test_y).mean():.2%} of {len(test_y)}")
    print(f"wrote {OUT / 'digits.npz'} ({(OUT / 'digits.npz').stat().st_size:,} bytes) and digits-test.npz")


if __name__ == "__main__":
    main()
