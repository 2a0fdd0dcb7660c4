"""plugnet's pooling, batch-norm, concat and clamp against torch.nn.functional,
through libplugnet with ctypes: outputs, output shapes and input gradients
on many random geometries (ceil_mode, padding, count_include_pad, adaptive
sizes that do and do not divide), and batch-norm's running statistics, on
the reference and cpu backends.

Usage: nn_torch.py LIBPLUGNET   (tests/nn_torch.sh finds the library)
"""
import ctypes as C
import random
import sys

import torch
import torch.nn.functional as F

P = C.c_void_p


class TensorHead(C.Structure):
    """The leading fields of pn_tensor (tensor.h)."""
    _fields_ = [("refs", C.c_int), ("dtype", C.c_int), ("ndim", C.c_int),
                ("shape", C.c_int64 * 8)]


class PoolParams(C.Structure):
    _fields_ = [("kernel", C.c_int * 2), ("stride", C.c_int * 2), ("padding", C.c_int * 2),
                ("ceil_mode", C.c_int), ("count_include_pad", C.c_int)]


lib = C.CDLL(sys.argv[1])
for name, res, args in [
    ("pn_last_error", C.c_char_p, []),
    ("pn_device_get", C.c_int, [C.c_char_p, C.POINTER(P)]),
    ("pn_tensor_from_host", P, [P, C.c_int, C.c_int, C.POINTER(C.c_int64), P]),
    ("pn_tensor_set_requires_grad", None, [P, C.c_int]),
    ("pn_tensor_grad", P, [P]),
    ("pn_tensor_read", C.c_int, [P, P, C.c_size_t]),
    ("pn_tensor_unref", None, [P]),
    ("pn_backward", C.c_int, [P, P]),
    ("pn_pool2d", P, [C.c_int, P, C.POINTER(PoolParams)]),
    ("pn_adaptive_pool2d", P, [C.c_int, P, C.c_int, C.c_int]),
    ("pn_batch_norm", P, [P, P, P, P, P, C.c_int, C.c_double, C.c_double]),
    ("pn_concat", P, [C.POINTER(P), C.c_int, C.c_int]),
    ("pn_clamp", P, [P, C.c_double, C.c_double]),
]:
    f = getattr(lib, name)
    f.restype, f.argtypes = res, args

POOL_MAX, POOL_AVG, ADAPTIVE_MAX, ADAPTIVE_AVG = range(4)
failures = []
compared = [0]


def check(ok, what):
    if not ok:
        raise RuntimeError(f"{what}: {lib.pn_last_error().decode()}")


def to_plugnet(dev, t, grad=False):
    t = t.detach().contiguous().float()
    shape = (C.c_int64 * t.dim())(*t.shape)
    out = lib.pn_tensor_from_host(dev, 0, t.dim(), shape, C.c_void_p(t.data_ptr()))
    check(out, "from_host")
    if grad:
        lib.pn_tensor_set_requires_grad(out, 1)
    return out


def from_plugnet(t):
    head = C.cast(t, C.POINTER(TensorHead)).contents
    out = torch.empty(tuple(head.shape[:head.ndim]), dtype=torch.float32)
    check(lib.pn_tensor_read(t, C.c_void_p(out.data_ptr()), out.numel() * 4) == 0, "read")
    return out


def compare(what, got, want, tol=1e-5):
    compared[0] += 1
    if tuple(got.shape) != tuple(want.shape):
        failures.append(f"{what}: shape {tuple(got.shape)}, torch {tuple(want.shape)}")
        return
    if got.numel() == 0:
        return
    err = (got - want).abs().max().item() / max(1.0, want.abs().max().item())
    if not err <= tol:
        failures.append(f"{what}: differs from torch by {err:.3g}")


def run(dev, fn, inputs, gout):
    """fn(plugnet inputs) on dev; returns (output, input gradients)."""
    xs = [to_plugnet(dev, x, grad=True) for x in inputs]
    y = fn(xs)
    check(y, "op")
    g = to_plugnet(dev, gout)
    check(lib.pn_backward(y, g) == 0, "backward")
    grads = [from_plugnet(lib.pn_tensor_grad(x)) for x in xs]
    out = from_plugnet(y)
    for t in xs + [y, g]:
        lib.pn_tensor_unref(t)
    return out, grads


def against_torch(devs, what, fn, tfn, inputs, tol=1e-5):
    ts = [x.clone().requires_grad_(True) for x in inputs]
    want = tfn(ts)
    gout = torch.randn_like(want)
    want.backward(gout)
    for name, dev in devs:
        got, grads = run(dev, fn, inputs, gout)
        compare(f"{what} on {name}", got, want.detach(), tol)
        for i, (g, t) in enumerate(zip(grads, ts)):
            compare(f"{what} on {name}: grad {i}", g, t.grad, tol)


def random_pool(rng):
    k = [rng.randint(1, 5), rng.randint(1, 5)]
    s = [rng.randint(1, 3), rng.randint(1, 3)]
    pad = [rng.randint(0, k[0] // 2), rng.randint(0, k[1] // 2)]
    h, w = rng.randint(max(1, k[0] - 2 * pad[0]), 12), rng.randint(max(1, k[1] - 2 * pad[1]), 12)
    return k, s, pad, h, w, rng.randint(0, 1), rng.randint(0, 1)


def pools(devs, rng):
    for case in range(120):
        k, s, pad, h, w, ceil, cip = random_pool(rng)
        x = torch.randn(rng.randint(1, 3), rng.randint(1, 4), h, w)
        prm = PoolParams((C.c_int * 2)(*k), (C.c_int * 2)(*s), (C.c_int * 2)(*pad), ceil, cip)
        tag = f"k={k} s={s} pad={pad} in={h}x{w} ceil={ceil} cip={cip}"
        against_torch(devs, f"max_pool2d {tag}",
                      lambda xs: lib.pn_pool2d(POOL_MAX, xs[0], C.byref(prm)),
                      lambda ts: F.max_pool2d(ts[0], k, s, pad, ceil_mode=bool(ceil)), [x])
        against_torch(devs, f"avg_pool2d {tag}",
                      lambda xs: lib.pn_pool2d(POOL_AVG, xs[0], C.byref(prm)),
                      lambda ts: F.avg_pool2d(ts[0], k, s, pad, ceil_mode=bool(ceil),
                                              count_include_pad=bool(cip)), [x])
    for case in range(60):
        h, w, oh, ow = (rng.randint(1, 13) for _ in range(4))
        x = torch.randn(2, 3, h, w)
        tag = f"{h}x{w}->{oh}x{ow}"
        against_torch(devs, f"adaptive_max {tag}",
                      lambda xs: lib.pn_adaptive_pool2d(ADAPTIVE_MAX, xs[0], oh, ow),
                      lambda ts: F.adaptive_max_pool2d(ts[0], (oh, ow)), [x])
        against_torch(devs, f"adaptive_avg {tag}",
                      lambda xs: lib.pn_adaptive_pool2d(ADAPTIVE_AVG, xs[0], oh, ow),
                      lambda ts: F.adaptive_avg_pool2d(ts[0], (oh, ow)), [x])


def batch_norms(devs):
    for shape in [(4, 3), (5, 4, 6), (3, 5, 4, 7), (16, 8, 9, 9)]:
        c = shape[1]
        x = torch.randn(shape) * 2 + 3
        w, b = torch.rand(c) + 0.5, torch.randn(c)
        rm0, rv0 = torch.randn(c), torch.rand(c) + 0.5
        for training in (1, 0):
            for name, dev in devs:
                rm, rv = to_plugnet(dev, rm0), to_plugnet(dev, rv0)

                def fn(xs):
                    return lib.pn_batch_norm(xs[0], xs[1], xs[2], rm, rv, training, 0.1, 1e-5)

                trm, trv = rm0.clone(), rv0.clone()
                ts = [t.clone().requires_grad_(True) for t in (x, w, b)]
                want = F.batch_norm(ts[0], trm, trv, ts[1], ts[2], bool(training), 0.1, 1e-5)
                gout = torch.randn_like(want)
                want.backward(gout)
                got, grads = run(dev, fn, [x, w, b], gout)
                what = f"batch_norm {shape} training={training} on {name}"
                compare(what, got, want.detach(), 1e-4)
                for i in range(3):
                    compare(f"{what}: grad {i}", grads[i], ts[i].grad, 1e-4)
                compare(f"{what}: running_mean", from_plugnet(rm), trm, 1e-5)
                compare(f"{what}: running_var", from_plugnet(rv), trv, 1e-5)
                lib.pn_tensor_unref(rm)
                lib.pn_tensor_unref(rv)


def concat_clamp(devs):
    shapes = {0: [(2, 3, 4), (1, 3, 4), (3, 3, 4)], 1: [(2, 3, 4), (2, 1, 4), (2, 2, 4)],
              -1: [(2, 3, 4), (2, 3, 1), (2, 3, 5)]}
    for axis, ss in shapes.items():
        xs = [torch.randn(s) for s in ss]
        against_torch(devs, f"concat axis {axis}",
                      lambda p: lib.pn_concat((P * 3)(*p), 3, axis),
                      lambda ts: torch.cat(ts, axis), xs, 0.0)
    x = torch.randn(5, 7) * 4
    x[0, :3] = torch.tensor([0.0, 6.0, 3.0])  # on the bounds: no gradient, as ReLU6
    against_torch(devs, "relu6 (clamp 0, 6)", lambda p: lib.pn_clamp(p[0], 0.0, 6.0),
                  lambda ts: F.relu6(ts[0]), [x], 0.0)


def main():
    torch.manual_seed(0)
    rng = random.Random(0)
    devs = []
    for name in ("reference", "cpu"):
        d = P()
        check(lib.pn_device_get(name.encode(), C.byref(d)) == 0, name)
        devs.append((name, d))
    pools(devs, rng)
    batch_norms(devs)
    concat_clamp(devs)
    for f in failures[:40]:
        print("FAIL:", f)
    print(f"{compared[0]} comparisons with torch, {len(failures)} failures")
    return 1 if failures else 0


sys.exit(main())
