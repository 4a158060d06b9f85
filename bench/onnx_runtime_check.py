#!/usr/bin/env python3
"""The exported ONNX model in ONNX Runtime against `fruitlab predict`, on every image of the
mini Test/ split: the same top-1 class, and probabilities within a stated tolerance. Both sides
read the same pixels: the JPEGs are first turned into PNGs (JPEG decoders differ by about 0.1
grey level, which is not the exporter's doing). Optionally, ONNX Runtime's throughput.

    python3 -m venv .venv-onnx && .venv-onnx/bin/pip install onnxruntime numpy pillow
    .venv-onnx/bin/python bench/onnx_runtime_check.py [--fruitlab target/release/fruitlab]
        [--data ../shared/datasets/fruits-360-mini] [--run RUN] [--bench] [--threads 2]

Without --run it trains a small frozen run on the mini set first. Also exports the ImageNet
model and checks what its metadata says (1000 classes, 224 px). Exits non-zero on any mismatch.
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

import numpy as np
import onnxruntime as ort
from PIL import Image

# Largest difference allowed between the two runtimes' probabilities: both compute in float32,
# in different orders.
TOLERANCE = 1e-4


def run(command):
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0:
        sys.exit(f"{' '.join(command)} failed:\n{result.stderr}")
    return result.stdout


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--fruitlab", default="target/release/fruitlab")
    parser.add_argument("--data", default="../shared/datasets/fruits-360-mini")
    parser.add_argument("--run", help="a trained run folder (default: train a small one)")
    parser.add_argument("--bench", action="store_true", help="also time ONNX Runtime")
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        run_dir = args.run
        if run_dir is None:
            run_dir = os.path.join(tmp, "run")
            run([args.fruitlab, "train", "--mode", "frozen", "--epochs", "1",
                 "--data", args.data, "--out", run_dir])
        model_path = os.path.join(tmp, "model.onnx")
        run([args.fruitlab, "export", "--format", "onnx", "--run", run_dir, "--out", model_path])

        test = os.path.join(args.data, "Test")
        jpegs = sorted(os.path.join(root, f) for root, _, files in os.walk(test) for f in files)
        images = []
        for jpeg in jpegs:
            png = os.path.join(tmp, "png", os.path.relpath(jpeg, test) + ".png")
            os.makedirs(os.path.dirname(png), exist_ok=True)
            Image.open(jpeg).convert("RGB").save(png)
            images.append(png)
        ours = json.loads(run([args.fruitlab, "predict", "--run", run_dir, "--json",
                               "--top-k", "1000", *images]))

        options = ort.SessionOptions()
        options.intra_op_num_threads = args.threads
        session = ort.InferenceSession(model_path, options, providers=["CPUExecutionProvider"])
        meta = session.get_modelmeta().custom_metadata_map
        classes = json.loads(meta["classes"])
        size = int(meta["image_size"])
        pixels = np.stack([load(path, size) for path in images])
        # Batches of 7: the batch dimension is dynamic and need not divide the images.
        probabilities = np.concatenate(
            [session.run(None, {"image": pixels[i:i + 7]})[0] for i in range(0, len(images), 7)])

        worst, mismatches = 0.0, []
        for path, row, prediction in zip(images, probabilities, ours):
            top = prediction["top"]
            if classes[int(np.argmax(row))] != top[0]["class"]:
                mismatches.append(path)
            for guess in top:
                worst = max(worst, abs(float(row[guess["index"]]) - guess["probability"]))
        print(f"{len(images)} images: top-1 agrees on {len(images) - len(mismatches)}, "
              f"largest probability difference {worst:.2e} (tolerance {TOLERANCE})")
        if mismatches or worst > TOLERANCE:
            sys.exit(f"ONNX Runtime disagrees with fruitlab: {mismatches}")
        check_imagenet_export(args.fruitlab, tmp)
        if args.bench:
            bench(session, size)


def check_imagenet_export(fruitlab, tmp):
    """The ImageNet model's export tells a deployer its classes and its input size."""
    path = os.path.join(tmp, "imagenet.onnx")
    run([fruitlab, "export", "--weights", "imagenet", "--out", path])
    meta = ort.InferenceSession(path, providers=["CPUExecutionProvider"]) \
        .get_modelmeta().custom_metadata_map
    classes = json.loads(meta["classes"])
    if len(classes) != 1000 or classes[249] != "malamute" or meta["image_size"] != "224":
        sys.exit(f"the ImageNet export's metadata is wrong: {len(classes)} classes, "
                 f"class 249 {classes[249]!r}, image_size {meta['image_size']!r}")
    print("ImageNet export: 1000 classes, 224 px")


def load(path, size):
    """The image's centred square at `size` pixels, uint8 RGB (Fruits-360 is already square)."""
    image = Image.open(path).convert("RGB")
    w, h = image.size
    side = min(w, h)
    image = image.crop(((w - side) // 2, (h - side) // 2, (w + side) // 2, (h + side) // 2))
    if image.size != (size, size):
        image = image.resize((size, size), Image.BILINEAR)
    return np.asarray(image)


def bench(session, size, batch=32, runs=7):
    x = np.random.default_rng(0).integers(0, 256, (batch, size, size, 3), dtype=np.uint8)
    for _ in range(2):
        session.run(None, {"image": x})
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        session.run(None, {"image": x})
        times.append(time.perf_counter() - started)
    median = sorted(times)[len(times) // 2]
    print(json.dumps({"runtime": f"onnxruntime {ort.__version__}", "batch": batch,
                      "image_size": size, "img_per_s": batch / median}))


if __name__ == "__main__":
    main()
