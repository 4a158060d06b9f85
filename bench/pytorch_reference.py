#!/usr/bin/env python3
"""PyTorch reference for `fruitlab bench`: the same Keras-layout ResNet-50 and classifier top,
timed the same way (warm-up, then the median of several runs), on the CPU.

Install (CPU use only; the PyPI wheel is the CUDA build):
    python3 -m venv .venv-torch && .venv-torch/bin/pip install 'torch==2.9.0' numpy
Run:
    .venv-torch/bin/python bench/pytorch_reference.py --batch-size 32 --image-size 100 --threads 2 --json
"""
import argparse
import json
import statistics
import time

import torch
import torch.nn as nn
import torch.nn.functional as F


class ConvBn(nn.Module):
    """Keras layout: convolution with bias, BatchNorm epsilon 1e-3."""

    def __init__(self, cin, cout, kernel, stride):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, kernel, stride, padding=kernel // 2, bias=True)
        self.bn = nn.BatchNorm2d(cout, eps=1e-3, momentum=0.01)

    def forward(self, x):
        return self.bn(self.conv(x))


class Bottleneck(nn.Module):
    """Keras layout: the stride is on the first 1x1 convolution and on the shortcut."""

    def __init__(self, cin, width, stride, first):
        super().__init__()
        self.reduce = ConvBn(cin, width, 1, stride)
        self.spatial = ConvBn(width, width, 3, 1)
        self.expand = ConvBn(width, width * 4, 1, 1)
        self.shortcut = ConvBn(cin, width * 4, 1, stride) if first else None

    def forward(self, x):
        shortcut = self.shortcut(x) if self.shortcut is not None else x
        y = F.relu(self.reduce(x))
        y = F.relu(self.spatial(y))
        return F.relu(self.expand(y) + shortcut)


class Classifier(nn.Module):
    """ResNet-50 backbone, global average pooling, Dense(512, ReLU), Dense(classes)."""

    def __init__(self, classes=95):
        super().__init__()
        self.stem = ConvBn(3, 64, 7, 2)
        self.pool = nn.MaxPool2d(3, 2, padding=1)
        blocks, cin = [], 64
        for index, count in enumerate([3, 4, 6, 3]):
            width = 64 << index
            for block in range(count):
                stride = 1 if index == 0 or block > 0 else 2
                blocks.append(Bottleneck(cin, width, stride, block == 0))
                cin = width * 4
        self.blocks = nn.Sequential(*blocks)
        self.hidden = nn.Linear(2048, 512)
        self.output = nn.Linear(512, classes)

    def forward(self, x):
        x = self.pool(F.relu(self.stem(x)))
        x = self.blocks(x).mean(dim=(2, 3))
        return self.output(F.relu(self.hidden(x)))


def median_rate(images, warmup, runs, step):
    for _ in range(warmup):
        step()
    rates = []
    for _ in range(max(runs, 1)):
        started = time.perf_counter()
        step()
        rates.append(images / (time.perf_counter() - started))
    return statistics.median(rates)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--image-size", type=int, default=100)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--batchnorm", choices=["train", "frozen", "fold"], default="frozen",
                        help="batch norm while training: batch statistics, frozen statistics, or folded into the convolutions")
    parser.add_argument("--channels-last", action="store_true", help="NHWC memory format (often faster with oneDNN)")
    parser.add_argument("--bf16", action="store_true",
                        help="bf16 autocast (torch.autocast('cpu', dtype=torch.bfloat16)): oneDNN's AMX or AVX512-BF16 kernels")
    parser.add_argument("--no-train", action="store_true")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)

    b, s = args.batch_size, args.image_size
    images = torch.randn(b, 3, s, s) * 60
    labels = torch.arange(b) % 95
    model = Classifier()
    if args.channels_last:
        model = model.to(memory_format=torch.channels_last)
        images = images.contiguous(memory_format=torch.channels_last)

    def autocast():
        return torch.autocast("cpu", dtype=torch.bfloat16, enabled=args.bf16)

    model.eval()
    with torch.inference_mode(), autocast():
        infer = median_rate(b, args.warmup, args.runs, lambda: model(images))

    train = None
    if not args.no_train:
        if args.batchnorm == "fold":
            for module in model.modules():
                if isinstance(module, ConvBn):
                    module.conv = torch.nn.utils.fusion.fuse_conv_bn_eval(module.conv, module.bn)
                    module.bn = nn.Identity()
        model.train()
        if args.batchnorm == "frozen":
            for module in model.modules():
                if isinstance(module, nn.BatchNorm2d):
                    module.eval()  # frozen running statistics
        optimizer = torch.optim.Adam(model.parameters(), lr=1e-4)

        def step():
            optimizer.zero_grad(set_to_none=True)
            with autocast():
                loss = F.cross_entropy(model(images), labels)
            loss.backward()
            optimizer.step()

        train = median_rate(b, min(args.warmup, 1), max(2, (args.runs + 1) // 2), step)

    result = {
        "framework": "pytorch",
        "version": torch.__version__,
        "threads": torch.get_num_threads(),
        "batch_size": b,
        "image_size": s,
        "runs": args.runs,
        "infer_img_per_s": infer,
        "train_img_per_s": train,
        "train_batchnorm": args.batchnorm,
        "channels_last": args.channels_last,
        "precision": "bf16" if args.bf16 else "fp32",
    }
    if args.json:
        print(json.dumps(result))
    else:
        print(f"PyTorch {torch.__version__}, {result['precision']}, {result['threads']} threads, batch {b}, {s}x{s} px")
        print(f"  inference      {infer:8.1f} img/s")
        if train is not None:
            print(f"  training step  {train:8.1f} img/s")


if __name__ == "__main__":
    main()
