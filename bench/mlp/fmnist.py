"""What the two Python peers share, so that they load, normalise and report
exactly alike (see run.sh for the settings and the span timed)."""
import gzip
import os
import resource
import struct
import sys
import time

import numpy as np

DATA = os.environ.get("FMNIST_DIR", "/usr/share/datasets/fashion-mnist")

# The same settings as plugnet's run (run.sh passes the same values to it).
SETTINGS = {
    "hidden": 128,
    "classes": 10,
    "batch": 128,
    "epochs": 5,
    "lr": 2.0e-3,  # fashion-mnist-mlp.yaml's rate, held constant
    "beta1": 0.9,
    "beta2": 0.999,
    "eps": 1.0e-8,
    "mean": 0.2860,
    "std": 0.3530,
    "seed": 1,
}


def _read_idx(path, magic, header):
    with gzip.open(path, "rb") as f:
        raw = f.read()
    if struct.unpack(">I", raw[:4])[0] != magic:
        sys.exit("%s: not an IDX file with magic %#x" % (path, magic))
    return np.frombuffer(raw, dtype=np.uint8, offset=header)


def load(kind):
    """Images of split `kind` ('train', 't10k') as float32 (N, 784),
    standardised as plugnet's idx plugin does ((v/255 - mean)/std), and
    labels as int64 (N,)."""
    labels = _read_idx(os.path.join(DATA, "%s-labels-idx1-ubyte.gz" % kind), 0x801, 8)
    pixels = _read_idx(os.path.join(DATA, "%s-images-idx3-ubyte.gz" % kind), 0x803, 16)
    x = pixels.reshape(len(labels), 784).astype(np.float32)
    x *= np.float32(1.0 / (255.0 * SETTINGS["std"]))
    x -= np.float32(SETTINGS["mean"] / SETTINGS["std"])
    return x, labels.astype(np.int64)


def now():
    return time.perf_counter()


def report(name, span, train_loss, test_loss, test_acc, epochs):
    """One line run.sh parses, then the epoch table for people."""
    for e, (tl, vl, va) in enumerate(epochs):
        print("%-6d %-11.6f %-11.6f %-10.6f" % (e, tl, vl, va))
    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    print("test: loss %.6f, accuracy %.4f" % (test_loss, test_acc))
    print(
        "RESULT %s span=%.4f acc=%.4f train_loss=%.6f test_loss=%.6f rss_mb=%.1f"
        % (name, span, test_acc, train_loss, test_loss, rss_mb)
    )
