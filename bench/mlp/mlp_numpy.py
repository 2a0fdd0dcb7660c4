"""NumPy peer of `plugnet train` (see run.sh): seed 002's hand-written MLP
(shared/seeds/002: He initialisation, linear -> ReLU -> linear -> softmax,
forward and backward by hand, Adam, mini-batches of 128 from a fresh
permutation every epoch, the last one short), with the settings plugnet
runs (fmnist.SETTINGS). Kept in the seed's orientation: weights are
(out, in) and a batch is one column per sample.

Where this departs from the seed's text, it is to run the same algorithm as
the other two, no slower than NumPy allows:
  - float32 rather than float64 (plugnet and PyTorch compute in float32);
  - Adam's second moment decays with beta2 (the seed's listing uses beta1
    there, a typo) and the update is PyTorch's (eps outside the corrected
    square root), updated in place;
  - the output layer's backward is its closed form (A - Y) / m, which the
    seed derives and then computes the long way, and the softmax subtracts
    each column's maximum before exp so that it cannot overflow;
  - a batch is gathered from the (N, 784) array by index instead of copying
    the whole shuffled training set every epoch as random_mini_batches
    does (that copy would cost 188 MB and a pass over memory per epoch)."""
import os
import sys

os.environ.setdefault("OPENBLAS_NUM_THREADS", os.environ.get("BENCH_THREADS", "2"))
os.environ.setdefault("OMP_NUM_THREADS", os.environ.get("BENCH_THREADS", "2"))

import numpy as np  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import fmnist  # noqa: E402

S = fmnist.SETTINGS
DIMS = [784, S["hidden"], S["classes"]]


def initialize_parameters(rng):
    """He: W ~ N(0, 2 / fan_in), b = 0, as the seed's initialize_parameters."""
    p = {}
    for l in range(1, len(DIMS)):
        w = rng.standard_normal((DIMS[l], DIMS[l - 1]), dtype=np.float32)
        p["W%d" % l] = w * np.float32(np.sqrt(2.0 / DIMS[l - 1]))
        p["b%d" % l] = np.zeros((DIMS[l], 1), dtype=np.float32)
    return p


def forward(p, x):
    """x: (784, m). Returns the logits Z2 and what backward needs."""
    z1 = p["W1"] @ x
    z1 += p["b1"]
    a1 = np.maximum(z1, 0.0)
    z2 = p["W2"] @ a1
    z2 += p["b2"]
    return z2, (x, z1, a1)


def softmax(z):
    e = np.exp(z - z.max(axis=0, keepdims=True))
    return e / e.sum(axis=0, keepdims=True)


def cost(z, labels):
    """Mean cross-entropy of the softmax of z against integer labels."""
    zs = z - z.max(axis=0, keepdims=True)
    logp = zs - np.log(np.exp(zs).sum(axis=0, keepdims=True))
    return float(-logp[labels, np.arange(len(labels))].mean())


def backward(p, z2, labels, cache):
    x, z1, a1 = cache
    m = len(labels)
    dz2 = softmax(z2)
    dz2[labels, np.arange(m)] -= 1.0
    dz2 *= np.float32(1.0 / m)
    g = {"W2": dz2 @ a1.T, "b2": dz2.sum(axis=1, keepdims=True)}
    dz1 = p["W2"].T @ dz2
    dz1 *= z1 > 0
    g["W1"] = dz1 @ x.T
    g["b1"] = dz1.sum(axis=1, keepdims=True)
    return g


def initialize_adam(p):
    return ({k: np.zeros_like(v) for k, v in p.items()}, {k: np.zeros_like(v) for k, v in p.items()})


def update_parameters_with_adam(p, g, v, s, t):
    b1, b2, lr, eps = S["beta1"], S["beta2"], S["lr"], S["eps"]
    step = np.float32(lr / (1.0 - b1**t))
    root_bc2 = np.float32(np.sqrt(1.0 - b2**t))
    for k in p:
        v[k] *= np.float32(b1)
        v[k] += np.float32(1.0 - b1) * g[k]
        s[k] *= np.float32(b2)
        s[k] += np.float32(1.0 - b2) * (g[k] * g[k])
        denom = np.sqrt(s[k])
        denom /= root_bc2
        denom += np.float32(eps)
        p[k] -= step * (v[k] / denom)


def evaluate(p, x, y):
    loss_sum, correct = 0.0, 0
    for i in range(0, len(x), S["batch"]):
        xb, yb = x[i : i + S["batch"]].T, y[i : i + S["batch"]]
        z2, _ = forward(p, xb)
        loss_sum += cost(z2, yb) * len(yb)
        correct += int((z2.argmax(axis=0) == yb).sum())
    return loss_sum / len(x), correct / len(x)


def train_epoch(p, v, s, t, x, y, rng):
    perm = rng.permutation(len(x))
    loss_sum, steps = 0.0, 0
    for i in range(0, len(x), S["batch"]):
        idx = perm[i : i + S["batch"]]
        xb, yb = x[idx].T, y[idx]
        z2, cache = forward(p, xb)
        loss_sum += cost(z2, yb)
        t += 1
        update_parameters_with_adam(p, backward(p, z2, yb, cache), v, s, t)
        steps += 1
    return loss_sum / steps, t


def main():
    rng = np.random.default_rng(S["seed"])
    t0 = fmnist.now()
    xtr, ytr = fmnist.load("train")
    xte, yte = fmnist.load("t10k")
    p = initialize_parameters(rng)
    v, s = initialize_adam(p)
    t, epochs = 0, []
    for _ in range(S["epochs"]):
        tl, t = train_epoch(p, v, s, t, xtr, ytr, rng)
        epochs.append((tl,) + evaluate(p, xte, yte))
    test_loss, test_acc = evaluate(p, xte, yte)
    span = fmnist.now() - t0

    fmnist.report("numpy", span, epochs[-1][0], test_loss, test_acc, epochs)


if __name__ == "__main__":
    main()
