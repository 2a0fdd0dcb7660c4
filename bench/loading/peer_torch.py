"""The PyTorch peer of bench_loading: torchvision's ImageFolder and
transforms through a DataLoader, one epoch timed after a warm-up.

    peer_torch.py ROOT WORKERS BATCH

Prints one line: "torch: W workers, batch B: N images in S s, R images/s".
"""
import sys
import time

import torch
from torch.utils.data import DataLoader
from torchvision import datasets, transforms

WARM_BATCHES = 3


def one_thread(_worker):
    # Each worker process transforms one image at a time, as plugnet's do.
    torch.set_num_threads(1)


def main():
    root, workers, batch = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    tf = transforms.Compose([
        transforms.RandomResizedCrop(224),
        transforms.RandomHorizontalFlip(),
        transforms.ToTensor(),
        transforms.Normalize([0.485, 0.456, 0.406], [0.229, 0.224, 0.225]),
    ])
    ds = datasets.ImageFolder(root, transform=tf)
    # Persistent workers: the timed epoch reuses the warmed-up processes, as
    # plugnet's timed epoch reuses its threads.
    dl = DataLoader(ds, batch_size=batch, shuffle=True, num_workers=workers,
                    worker_init_fn=one_thread, persistent_workers=workers > 0)
    warm = iter(dl)
    for _ in range(WARM_BATCHES):
        next(warm)
    epoch = iter(dl)
    images = 0
    t0 = time.perf_counter()
    for x, _y in epoch:
        images += x.shape[0]
    dt = time.perf_counter() - t0
    print(f"torch: {workers} workers, batch {batch}: {images} images in {dt:.3f} s, "
          f"{images / dt:.1f} images/s")


if __name__ == "__main__":
    main()
