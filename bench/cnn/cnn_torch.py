"""PyTorch peer of `plugnet train share/pipelines/fashion-mnist-cnn.yaml`:
the same network (conv32-BN-ReLU-maxpool, conv64-BN-ReLU-maxpool, fc128,
ReLU, dropout 0.25, fc10), Adam, batch 128, one epoch over the 60,000
training images; prints the seconds of that epoch and the test accuracy."""
import os
import sys
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "mlp"))
import fmnist  # noqa: E402


def build():
    return nn.Sequential(
        nn.Conv2d(1, 32, 3, padding=1, bias=False), nn.BatchNorm2d(32), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(32, 64, 3, padding=1, bias=False), nn.BatchNorm2d(64), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(64 * 7 * 7, 128), nn.ReLU(), nn.Dropout(0.25), nn.Linear(128, 10))


def main():
    torch.set_num_threads(int(os.environ.get("BENCH_THREADS", "2")))
    torch.manual_seed(1)
    xtr, ytr = (torch.from_numpy(a) for a in fmnist.load("train"))
    xte, yte = (torch.from_numpy(a) for a in fmnist.load("t10k"))
    xtr, xte = xtr.view(-1, 1, 28, 28), xte.view(-1, 1, 28, 28)
    model = build()
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    t0 = time.perf_counter()
    model.train()
    perm = torch.randperm(len(xtr))
    for i in range(0, len(xtr), 128):
        idx = perm[i : i + 128]
        loss = F.cross_entropy(model(xtr[idx]), ytr[idx])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        loss.item()
    epoch = time.perf_counter() - t0
    model.eval()
    with torch.no_grad():
        acc = sum((model(xte[i : i + 1000]).argmax(1) == yte[i : i + 1000]).sum().item()
                  for i in range(0, len(xte), 1000)) / len(xte)
    print(f"torch epoch {epoch:.2f} s, test accuracy {acc:.4f}")


main()
