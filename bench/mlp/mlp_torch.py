"""PyTorch peer of `plugnet train` (see run.sh): eager mode, the data held
as tensors in memory (no DataLoader, whose worker machinery would only slow
PyTorch down), 784-128-10 with ReLU, He-normal weights and zero biases,
mean cross-entropy, Adam at a constant rate, batches of 128 drawn from a
fresh permutation every epoch (the last one short), the test set evaluated
after every epoch and once more at the end, as plugnet's default pipeline
does (data.valid: test)."""
import os
import sys

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import fmnist  # noqa: E402

S = fmnist.SETTINGS


def build():
    model = torch.nn.Sequential(
        torch.nn.Flatten(),
        torch.nn.Linear(784, S["hidden"]),
        torch.nn.ReLU(),
        torch.nn.Linear(S["hidden"], S["classes"]),
    )
    for m in model:
        if isinstance(m, torch.nn.Linear):
            torch.nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
            torch.nn.init.zeros_(m.bias)
    return model


@torch.no_grad()
def evaluate(model, x, y):
    model.eval()
    loss_sum, correct = 0.0, 0
    for i in range(0, len(x), S["batch"]):
        out = model(x[i : i + S["batch"]])
        yb = y[i : i + S["batch"]]
        loss_sum += F.cross_entropy(out, yb).item() * len(yb)
        correct += (out.argmax(1) == yb).sum().item()
    return loss_sum / len(x), correct / len(x)


def train_epoch(model, opt, x, y, gen):
    model.train()
    perm = torch.randperm(len(x), generator=gen)
    loss_sum, steps = 0.0, 0
    for i in range(0, len(x), S["batch"]):
        idx = perm[i : i + S["batch"]]
        loss = F.cross_entropy(model(x[idx]), y[idx])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        loss_sum += loss.item()  # plugnet reads every step's loss too
        steps += 1
    return loss_sum / steps


def main():
    torch.set_num_threads(int(os.environ.get("BENCH_THREADS", "2")))
    torch.manual_seed(S["seed"])
    gen = torch.Generator().manual_seed(S["seed"])

    t0 = fmnist.now()
    xtr, ytr = (torch.from_numpy(a) for a in fmnist.load("train"))
    xte, yte = (torch.from_numpy(a) for a in fmnist.load("t10k"))
    model = build()
    opt = torch.optim.Adam(
        model.parameters(), lr=S["lr"], betas=(S["beta1"], S["beta2"]), eps=S["eps"]
    )
    epochs = []
    for _ in range(S["epochs"]):
        tl = train_epoch(model, opt, xtr, ytr, gen)
        epochs.append((tl,) + evaluate(model, xte, yte))
    test_loss, test_acc = evaluate(model, xte, yte)
    span = fmnist.now() - t0

    fmnist.report("torch", span, epochs[-1][0], test_loss, test_acc, epochs)


if __name__ == "__main__":
    main()
