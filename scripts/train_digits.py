#!/usr/bin/env python3
"""Train the sample `digits` model and export it as a SavedModel for TensorFlow Serving.

Data: scikit-learn's bundled handwritten digits (8x8, 1797 images, no download). Every image
is rendered to a 28x28 grayscale JPEG (light digit on a dark background) and the network is
trained on those JPEGs decoded by the very ops that the export runs, so training and serving
see the same input path.

The export (signatures `predict_images` and `serving_default`, identical):
    input  `images`: DT_STRING, shape [-1]     raw JPEG bytes, one per example
    output `scores`: DT_FLOAT,  shape [-1, 10] softmax probabilities for the digits 0..9

Usage:
    python scripts/train_digits.py [--version 1] [--output-dir files/models/digits]
                                        [--samples-dir files/samples]

The export is written to a hidden temporary directory next to the target and renamed into
place, so a model server watching the output directory never sees a partial version.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import random
import shutil
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np
import tensorflow as tf
from PIL import Image
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

FILES = Path(__file__).resolve().parents[1] / "files"
DEFAULT_OUTPUT_DIR = FILES / "models" / "digits"
DEFAULT_SAMPLES_DIR = FILES / "samples"

IMAGE_SIZE = 28
NUM_CLASSES = 10
JPEG_QUALITY = 95
TEST_FRACTION = 0.25
SPLIT_SEED = 0
MIN_ACCURACY = 0.90
MAX_SHIFT = 2  # training augmentation: random translation by up to this many pixels


def render_jpeg(pixels: np.ndarray) -> bytes:
    """Render one 8x8 digit (values 0..16) as a 28x28 grayscale JPEG."""
    gray = np.clip(np.rint(pixels.reshape(8, 8) * (255.0 / 16.0)), 0, 255).astype(np.uint8)
    image = Image.fromarray(gray, mode="L").resize(
        (IMAGE_SIZE, IMAGE_SIZE), resample=Image.Resampling.BILINEAR
    )
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=JPEG_QUALITY)
    return buffer.getvalue()


def decode_one(jpeg: tf.Tensor) -> tf.Tensor:
    """JPEG bytes -> float32 [IMAGE_SIZE, IMAGE_SIZE, 1] in [0, 1]."""
    image = tf.io.decode_jpeg(jpeg, channels=1)
    image = tf.image.convert_image_dtype(image, tf.float32)
    image = tf.image.resize(image, [IMAGE_SIZE, IMAGE_SIZE], method="bilinear")
    return tf.ensure_shape(image, [IMAGE_SIZE, IMAGE_SIZE, 1])


def decode_batch(jpegs: tf.Tensor) -> tf.Tensor:
    """[N] JPEG bytes -> float32 [N, IMAGE_SIZE, IMAGE_SIZE, 1]."""
    images = tf.map_fn(
        decode_one,
        jpegs,
        fn_output_signature=tf.TensorSpec([IMAGE_SIZE, IMAGE_SIZE, 1], tf.float32),
    )
    # An empty batch comes back from map_fn without its element shape; restore it.
    return tf.reshape(images, [-1, IMAGE_SIZE, IMAGE_SIZE, 1])


def glorot(
    rng: np.random.RandomState, shape: tuple[int, ...], fan_in: int, fan_out: int
) -> tf.Variable:
    limit = np.sqrt(6.0 / (fan_in + fan_out))
    return tf.Variable(rng.uniform(-limit, limit, size=shape).astype(np.float32))


def zeros(size: int) -> tf.Variable:
    return tf.Variable(np.zeros(size, dtype=np.float32))


class DigitsNet(tf.Module):
    """conv3x3(16) -> pool -> conv3x3(32) -> pool -> dense(64) -> dense(10)."""

    def __init__(self, seed: int) -> None:
        super().__init__(name="digits_net")
        rng = np.random.RandomState(seed)
        flat = (IMAGE_SIZE // 4) * (IMAGE_SIZE // 4) * 32
        self.flat_size = flat
        self.conv1_w = glorot(rng, (3, 3, 1, 16), 9 * 1, 9 * 16)
        self.conv1_b = zeros(16)
        self.conv2_w = glorot(rng, (3, 3, 16, 32), 9 * 16, 9 * 32)
        self.conv2_b = zeros(32)
        self.dense1_w = glorot(rng, (flat, 64), flat, 64)
        self.dense1_b = zeros(64)
        self.dense2_w = glorot(rng, (64, NUM_CLASSES), 64, NUM_CLASSES)
        self.dense2_b = zeros(NUM_CLASSES)

    def logits(self, images: tf.Tensor) -> tf.Tensor:
        x = tf.nn.conv2d(images, self.conv1_w, strides=1, padding="SAME") + self.conv1_b
        x = tf.nn.max_pool2d(tf.nn.relu(x), ksize=2, strides=2, padding="VALID")
        x = tf.nn.conv2d(x, self.conv2_w, strides=1, padding="SAME") + self.conv2_b
        x = tf.nn.max_pool2d(tf.nn.relu(x), ksize=2, strides=2, padding="VALID")
        x = tf.reshape(x, [-1, self.flat_size])
        x = tf.nn.relu(tf.matmul(x, self.dense1_w) + self.dense1_b)
        return tf.matmul(x, self.dense2_w) + self.dense2_b

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="images")])
    def predict_images(self, images: tf.Tensor) -> dict[str, tf.Tensor]:
        # Conv2D on CPU mishandles an empty batch, so answer one without running the network.
        scores = tf.cond(
            tf.size(images) > 0,
            lambda: tf.nn.softmax(self.logits(decode_batch(images))),
            lambda: tf.zeros([0, NUM_CLASSES], tf.float32),
        )
        return {"scores": tf.ensure_shape(scores, [None, NUM_CLASSES])}


class Adam:
    """Plain Adam over a fixed list of variables (keeps the training loop free of Keras)."""

    def __init__(self, variables: list[tf.Variable], lr: float = 1e-3) -> None:
        self.variables = variables
        self.lr = lr
        self.beta1, self.beta2, self.eps = 0.9, 0.999, 1e-7
        self.step = tf.Variable(0.0)
        self.m = [tf.Variable(tf.zeros_like(v)) for v in variables]
        self.v = [tf.Variable(tf.zeros_like(v)) for v in variables]

    def apply(self, grads: list[tf.Tensor]) -> None:
        self.step.assign_add(1.0)
        correction = tf.sqrt(1.0 - self.beta2**self.step) / (1.0 - self.beta1**self.step)
        for var, grad, m, v in zip(self.variables, grads, self.m, self.v, strict=True):
            m.assign(self.beta1 * m + (1.0 - self.beta1) * grad)
            v.assign(self.beta2 * v + (1.0 - self.beta2) * tf.square(grad))
            var.assign_sub(self.lr * correction * m / (tf.sqrt(v) + self.eps))


def set_determinism(seed: int, threads: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    tf.random.set_seed(seed)
    tf.config.experimental.enable_op_determinism()
    tf.config.threading.set_intra_op_parallelism_threads(threads)
    tf.config.threading.set_inter_op_parallelism_threads(threads)


def train(
    model: DigitsNet,
    images: tf.Tensor,
    labels: np.ndarray,
    epochs: int,
    batch_size: int,
    seed: int,
) -> None:
    variables = list(model.trainable_variables)
    optimizer = Adam(variables)

    @tf.function(
        input_signature=[
            tf.TensorSpec([None, IMAGE_SIZE, IMAGE_SIZE, 1], tf.float32),
            tf.TensorSpec([None], tf.int32),
        ]
    )
    def step(batch: tf.Tensor, batch_labels: tf.Tensor) -> tf.Tensor:
        with tf.GradientTape() as tape:
            loss = tf.reduce_mean(
                tf.nn.sparse_softmax_cross_entropy_with_logits(
                    labels=batch_labels, logits=model.logits(batch)
                )
            )
        optimizer.apply(tape.gradient(loss, variables))
        return loss

    rng = np.random.RandomState(seed)
    labels_t = tf.constant(labels, tf.int32)
    padded = tf.pad(images, [[0, 0], [MAX_SHIFT, MAX_SHIFT], [MAX_SHIFT, MAX_SHIFT], [0, 0]])
    span = float(IMAGE_SIZE + 2 * MAX_SHIFT - 1)
    n = len(labels)
    for epoch in range(1, epochs + 1):
        order = rng.permutation(n)
        # Per-example integer offsets (dy, dx); boxes are [y1, x1, y2, x2], normalised, so
        # crop_and_resize samples exactly on pixel centres of the padded image.
        offsets = rng.randint(0, 2 * MAX_SHIFT + 1, size=(n, 2)).astype(np.float32)
        boxes = np.concatenate([offsets, offsets + (IMAGE_SIZE - 1)], axis=1) / span
        losses = []
        for start in range(0, n, batch_size):
            idx = order[start : start + batch_size]
            batch = tf.image.crop_and_resize(
                padded,
                boxes[idx],
                tf.constant(idx, tf.int32),
                [IMAGE_SIZE, IMAGE_SIZE],
            )
            losses.append(float(step(batch, tf.gather(labels_t, idx))))
        if epoch == 1 or epoch % 5 == 0 or epoch == epochs:
            print(f"epoch {epoch:3d}/{epochs}  loss {np.mean(losses):.4f}", flush=True)


def export_atomically(model: DigitsNet, output_dir: Path, version: int) -> Path:
    """Save to a hidden temp dir beside the target, then rename it to <output_dir>/<version>."""
    output_dir.mkdir(parents=True, exist_ok=True)
    target = output_dir / str(version)
    tmp = Path(tempfile.mkdtemp(prefix=f".tmp-{version}-", dir=output_dir))
    try:
        export = tmp / "export"
        signature = model.predict_images.get_concrete_function()
        tf.saved_model.save(
            model,
            str(export),
            signatures={"predict_images": signature, "serving_default": signature},
        )
        old = None
        if target.exists():
            old = output_dir / f".old-{version}-{os.getpid()}"
            target.rename(old)
        export.rename(target)
        if old is not None:
            shutil.rmtree(old)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target


def predict_with_export(export_dir: Path, jpegs: list[bytes]) -> np.ndarray:
    loaded = tf.saved_model.load(str(export_dir))
    fn = loaded.signatures["predict_images"]
    return fn(images=tf.constant(jpegs, dtype=tf.string))["scores"].numpy()


def write_samples(
    samples_dir: Path, jpegs: list[bytes], labels: np.ndarray, predicted: np.ndarray
) -> dict[int, tuple[int, bool]]:
    """Write digit_<d>.jpg for each class and labels.json.

    Uses the first held-out example of each class; if that one is misclassified, the first
    correctly classified held-out example of the class. Returns {digit: (index, first_ok)}.
    """
    samples_dir.mkdir(parents=True, exist_ok=True)
    chosen: dict[int, tuple[int, bool]] = {}
    for digit in range(NUM_CLASSES):
        indices = [i for i, label in enumerate(labels) if label == digit]
        first_ok = bool(predicted[indices[0]] == digit)
        pick = next((i for i in indices if predicted[i] == digit), indices[0])
        chosen[digit] = (pick, first_ok)
        (samples_dir / f"digit_{digit}.jpg").write_bytes(jpegs[pick])
    mapping = {f"digit_{d}.jpg": d for d in range(NUM_CLASSES)}
    (samples_dir / "labels.json").write_text(json.dumps(mapping, indent=2) + "\n")
    return chosen


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--version", type=int, default=1, help="model version (subdir name)")
    parser.add_argument(
        "--output-dir", type=Path, default=DEFAULT_OUTPUT_DIR, help="model base directory"
    )
    parser.add_argument("--samples-dir", type=Path, default=DEFAULT_SAMPLES_DIR)
    parser.add_argument("--no-samples", action="store_true", help="do not write sample JPEGs")
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--seed", type=int, default=1234)
    parser.add_argument("--threads", type=int, default=1, help="TF intra/inter-op threads")
    args = parser.parse_args(argv)
    if args.version < 1:
        parser.error("--version must be a positive integer")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    set_determinism(args.seed, args.threads)
    started = time.monotonic()

    digits = load_digits()
    jpegs = [render_jpeg(row) for row in digits.data]
    labels = digits.target.astype(np.int32)
    indices = np.arange(len(labels))
    train_idx, test_idx = train_test_split(
        indices, test_size=TEST_FRACTION, random_state=SPLIT_SEED, stratify=labels
    )
    train_jpegs = [jpegs[i] for i in train_idx]
    test_jpegs = [jpegs[i] for i in test_idx]
    train_labels, test_labels = labels[train_idx], labels[test_idx]
    print(f"train {len(train_idx)} / held-out {len(test_idx)} images", flush=True)

    model = DigitsNet(args.seed)
    train_images = decode_batch(tf.constant(train_jpegs, dtype=tf.string))
    train(model, train_images, train_labels, args.epochs, args.batch_size, args.seed)

    target = export_atomically(model, args.output_dir, args.version)
    print(f"exported {target}", flush=True)

    scores = predict_with_export(target, test_jpegs)
    predicted = scores.argmax(axis=1)
    accuracy = float((predicted == test_labels).mean())
    print(
        f"held-out accuracy (exported model, JPEG input): {accuracy:.4f} "
        f"({int((predicted == test_labels).sum())}/{len(test_labels)})",
        flush=True,
    )

    if not args.no_samples:
        chosen = write_samples(args.samples_dir, test_jpegs, test_labels, predicted)
        for digit, (index, first_ok) in chosen.items():
            note = "" if first_ok else "  (first held-out example misclassified; replaced)"
            print(f"sample digit_{digit}.jpg <- held-out #{index}{note}")
        print(f"samples written to {args.samples_dir}")

    print(f"done in {time.monotonic() - started:.1f}s")
    if accuracy < MIN_ACCURACY:
        print(f"ERROR: accuracy below {MIN_ACCURACY:.2f}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
