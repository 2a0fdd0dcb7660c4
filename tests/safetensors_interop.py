"""The Python side of tests/safetensors_interop.sh, using the reference
safetensors implementation:
    safetensors_interop.py check FILE   reads what st_interop wrote
    safetensors_interop.py write FILE   writes what st_interop checks
"""
import sys

import numpy as np
from safetensors import safe_open
from safetensors.numpy import load_file, save_file

EXPECTED = {
    "weight": np.array([[0.5, -1.25, 3.0], [4.75, -5.0, 6.125]], dtype=np.float32),
    "counts": np.array([[1, -2], [3, -4]], dtype=np.int32),
    "ids": np.array([-1, 0, 1 << 40], dtype=np.int64),
    "mask": np.array([0, 1, 254, 255], dtype=np.uint8),
}


def check(path):
    got = load_file(path)
    assert sorted(got) == sorted(EXPECTED), f"tensors {sorted(got)}"
    for name, want in EXPECTED.items():
        assert got[name].dtype == want.dtype, f"{name}: dtype {got[name].dtype}"
        assert got[name].shape == want.shape, f"{name}: shape {got[name].shape}"
        assert np.array_equal(got[name], want), f"{name}: {got[name]}"
    with safe_open(path, framework="numpy") as f:
        meta = f.metadata()
    assert meta == {"epoch": "5", "written_by": "plugnet"}, f"metadata {meta}"


def write(path):
    tensors = dict(EXPECTED)
    tensors["half"] = np.array([1.0, -2.5, 0.1], dtype=np.float16)
    tensors["double"] = np.array([0.1, 1e30], dtype=np.float64)
    save_file(tensors, path, metadata={"epoch": "7", "written_by": "python"})


if __name__ == "__main__":
    {"check": check, "write": write}[sys.argv[1]](sys.argv[2])
