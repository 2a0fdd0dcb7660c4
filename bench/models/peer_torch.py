"""The PyTorch peer of bench_models: torchvision's model, the same step.

    peer_torch.py MODEL infer|train BATCH SIZE REPS THREADS
"""
import sys
import time

import torch
import torchvision


def main():
    name, mode, batch, size, reps, threads = sys.argv[1:7]
    batch, size, reps = int(batch), int(size), int(reps)
    torch.set_num_threads(int(threads))
    torch.manual_seed(0)
    model = getattr(torchvision.models, name)(weights=None)
    training = mode == "train"
    model.train(training)
    x = torch.randn(batch, 3, size, size)
    y = torch.randint(0, 1000, (batch,))
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    loss_fn = torch.nn.CrossEntropyLoss()

    def step():
        if training:
            opt.zero_grad()
            loss_fn(model(x), y).backward()
            opt.step()
        else:
            with torch.no_grad():
                model(x)

    times = []
    for r in range(reps + 1):
        t0 = time.perf_counter()
        step()
        if r:
            times.append(time.perf_counter() - t0)
    times.sort()
    print(f"{name} {mode} batch {batch}: best {times[0]:.4f} s, median {times[reps // 2]:.4f} s")


main()
