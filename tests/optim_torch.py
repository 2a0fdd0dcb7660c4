"""plugnet's optimizers and schedules against torch.optim, through libplugnet
with ctypes: the same initial parameters and gradients, five steps with a
varying learning rate, on the reference and cpu backends; the schedules'
factors and momenta step by step against torch.optim.lr_scheduler.

Usage: optim_torch.py LIBPLUGNET   (tests/optim_torch.sh finds the library)
"""
import ctypes as C
import math
import sys

import torch

P = C.c_void_p
lib = C.CDLL(sys.argv[1])
for name, res, args in [
    ("pn_last_error", C.c_char_p, []),
    ("pn_device_get", C.c_int, [C.c_char_p, C.POINTER(P)]),
    ("pn_tensor_from_host", P, [P, C.c_int, C.c_int, C.POINTER(C.c_int64), P]),
    ("pn_tensor_set_requires_grad", None, [P, C.c_int]),
    ("pn_tensor_read", C.c_int, [P, P, C.c_size_t]),
    ("pn_tensor_unref", None, [P]),
    ("pn_mul", P, [P, P]),
    ("pn_sum_all", P, [P]),
    ("pn_backward", C.c_int, [P, P]),
    ("pn_registry_find", P, [C.c_char_p]),
    ("pn_config_new", P, [P]),
    ("pn_config_set_list", C.c_int, [P, C.c_char_p]),
    ("pn_config_free", None, [P]),
    ("pn_optimizer_create", C.c_int, [C.c_char_p, P, C.POINTER(P), C.c_int, C.POINTER(P)]),
    ("pn_optimizer_step", C.c_int, [P, C.c_double, C.c_double]),
    ("pn_optimizer_zero_grad", None, [P]),
    ("pn_optimizer_free", None, [P]),
    ("pn_schedule_create", C.c_int, [C.c_char_p, P, C.POINTER(P)]),
    ("pn_schedule_factor", C.c_double, [P, C.c_int64, C.c_int64]),
    ("pn_schedule_momentum", C.c_double, [P, C.c_int64, C.c_int64]),
    ("pn_schedule_free", None, [P]),
]:
    f = getattr(lib, name)
    f.restype, f.argtypes = res, args

failures = []


def check(ok, what):
    if not ok:
        raise RuntimeError(f"{what}: {lib.pn_last_error().decode()}")


def config(feature, pairs):
    info = lib.pn_registry_find(feature.encode())
    check(info, feature)
    cfg = lib.pn_config_new(info)
    check(lib.pn_config_set_list(cfg, pairs.encode()) == 0, pairs)
    return cfg


def to_plugnet(dev, t):
    t = t.contiguous().float()
    shape = (C.c_int64 * t.dim())(*t.shape)
    out = lib.pn_tensor_from_host(dev, 0, t.dim(), shape, C.c_void_p(t.data_ptr()))
    check(out, "from_host")
    return out


def from_plugnet(t, like):
    out = torch.empty_like(like, dtype=torch.float32).contiguous()
    check(lib.pn_tensor_read(t, C.c_void_p(out.data_ptr()), out.numel() * 4) == 0, "read")
    return out


def set_grad(dev, p, g):
    """d/dp sum(p * g) = g, through plugnet's autograd."""
    gt = to_plugnet(dev, g)
    prod = lib.pn_mul(p, gt)
    loss = lib.pn_sum_all(prod)
    check(loss and lib.pn_backward(loss, None) == 0, "backward")
    for t in (loss, prod, gt):
        lib.pn_tensor_unref(t)


# name, plugnet feature and config, torch constructor, momentum argument
CASES = [
    ("sgd", "sgd", "lr=0.1", lambda ps: torch.optim.SGD(ps, lr=0.1), -1),
    ("sgd momentum dampening", "sgd", "lr=0.1,momentum=0.9,dampening=0.2",
     lambda ps: torch.optim.SGD(ps, lr=0.1, momentum=0.9, dampening=0.2), -1),
    ("sgd nesterov decay", "sgd", "lr=0.05,momentum=0.9,nesterov=true,weight_decay=0.01",
     lambda ps: torch.optim.SGD(ps, lr=0.05, momentum=0.9, nesterov=True, weight_decay=0.01), -1),
    ("sgd momentum override", "sgd", "lr=0.1,momentum=0.9",
     lambda ps: torch.optim.SGD(ps, lr=0.1, momentum=0.9), 0.8),
    ("adam", "adam", "lr=0.01", lambda ps: torch.optim.Adam(ps, lr=0.01), -1),
    ("adam decay betas", "adam", "lr=0.02,weight_decay=0.1,beta1=0.8,beta2=0.99,eps=1e-6",
     lambda ps: torch.optim.Adam(ps, lr=0.02, weight_decay=0.1, betas=(0.8, 0.99), eps=1e-6), -1),
    ("adam beta1 override", "adam", "lr=0.01",
     lambda ps: torch.optim.Adam(ps, lr=0.01), 0.85),
    ("adamw", "adamw", "lr=0.01", lambda ps: torch.optim.AdamW(ps, lr=0.01), -1),
    ("adamw strong decay", "adamw", "lr=0.05,weight_decay=0.5",
     lambda ps: torch.optim.AdamW(ps, lr=0.05, weight_decay=0.5), -1),
]


def run_optimizer_case(devname, case):
    name, feature, pairs, make, override = case
    dev = P()
    check(lib.pn_device_get(devname.encode(), C.byref(dev)) == 0, devname)
    gen = torch.Generator().manual_seed(7)
    init = [torch.rand(7, 5, generator=gen) * 2 - 1, torch.rand(13, generator=gen) * 2 - 1]
    tp = [t.clone().requires_grad_(True) for t in init]
    opt = make(tp)
    pp = [to_plugnet(dev, t) for t in init]
    for t in pp:
        lib.pn_tensor_set_requires_grad(t, 1)
    cfg = config(feature, pairs)
    arr = (P * len(pp))(*pp)
    o = P()
    check(lib.pn_optimizer_create(feature.encode(), cfg, arr, len(pp), C.byref(o)) == 0, name)
    lib.pn_config_free(cfg)
    base = opt.param_groups[0]["lr"]
    for step in range(5):
        lr = base * (1 - 0.1 * step)
        group = opt.param_groups[0]
        group["lr"] = lr
        if override >= 0:
            if "betas" in group:
                group["betas"] = (override, group["betas"][1])
            else:
                group["momentum"] = override
        lib.pn_optimizer_zero_grad(o)
        for t, p in zip(tp, pp):
            g = torch.rand(t.shape, generator=gen) * 2 - 1
            t.grad = g.clone()
            set_grad(dev, p, g)
        opt.step()
        check(lib.pn_optimizer_step(o, lr, override) == 0, f"{name} step {step}")
    for k, (t, p) in enumerate(zip(tp, pp)):
        got = from_plugnet(p, t)
        want = t.detach()
        err = ((got - want).abs().max() / max(1.0, want.abs().max().item())).item()
        status = "ok" if err <= 1e-5 else "FAIL"
        if status == "FAIL":
            failures.append(f"{name} on {devname}: param {k} error {err:.3g}")
        print(f"{status}: {name} on {devname}: param {k} max rel err {err:.2e}")
    lib.pn_optimizer_free(o)
    for p in pp:
        lib.pn_tensor_unref(p)


def torch_schedule(make, total, with_momentum=False):
    p = torch.zeros(1, requires_grad=True)
    opt = torch.optim.SGD([p], lr=1.0, momentum=0.9)
    sched = make(opt)
    lrs, moms = [], []
    for _ in range(total):
        lrs.append(opt.param_groups[0]["lr"])
        moms.append(opt.param_groups[0]["momentum"])
        opt.step()
        sched.step()
    return lrs, moms


def run_schedule_case(name, feature, pairs, make, total, with_momentum=False):
    cfg = config(feature, pairs)
    s = P()
    check(lib.pn_schedule_create(feature.encode(), cfg, C.byref(s)) == 0, name)
    lib.pn_config_free(cfg)
    lrs, moms = torch_schedule(make, total)
    err = max(abs(lib.pn_schedule_factor(s, t, total) - lrs[t]) for t in range(total))
    if with_momentum:
        err = max(err, max(abs(lib.pn_schedule_momentum(s, t, total) - moms[t])
                           for t in range(total)))
    lib.pn_schedule_free(s)
    status = "ok" if err <= 1e-9 else "FAIL"
    if status == "FAIL":
        failures.append(f"schedule {name}: error {err:.3g}")
    print(f"{status}: schedule {name}: max abs err {err:.2e}")


sched = torch.optim.lr_scheduler
SCHEDULES = [
    ("step", "step", "step_size=10,gamma=0.1", lambda o: sched.StepLR(o, 10, 0.1), 45),
    ("multistep", "step", "milestones=[5, 8],gamma=0.5",
     lambda o: sched.MultiStepLR(o, [5, 8], 0.5), 20),
    ("cosine", "cosine", "min_factor=0", lambda o: sched.CosineAnnealingLR(o, 100), 100),
    ("cosine min", "cosine", "min_factor=0.1",
     lambda o: sched.CosineAnnealingLR(o, 100, eta_min=0.1), 100),
    ("poly square", "poly", "power=2", lambda o: sched.PolynomialLR(o, 100, 2.0), 100),
]


def main():
    for devname in ("reference", "cpu"):
        for case in CASES:
            run_optimizer_case(devname, case)
    for name, feature, pairs, make, total in SCHEDULES:
        run_schedule_case(name, feature, pairs, make, total)
    for total, pct in ((100, 0.25), (37, 0.3)):
        run_schedule_case(
            f"onecycle {total} {pct}", "onecycle", f"pct_start={pct}",
            lambda o, t=total, q=pct: sched.OneCycleLR(
                o, max_lr=1.0, total_steps=t, pct_start=q, div_factor=25.0,
                final_div_factor=1e4, base_momentum=0.85, max_momentum=0.95),
            total, with_momentum=True)
    if failures:
        print("\n".join(["FAILURES:"] + failures))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
