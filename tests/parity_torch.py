"""The PyTorch side of tests/parity_torch.sh.

  parity_torch.py make MODEL DIR     torchvision's MODEL with random weights:
      DIR/MODEL.state.safetensors    its state_dict (what plugnet loads)
      DIR/MODEL.io.safetensors       the input x and the output gradient g
  parity_torch.py compare MODEL DIR  checks DIR/MODEL.plugnet.safetensors,
                                     written by parity_run, against torch in
                                     float64; exit 1 when a tolerance is
                                     exceeded.

For each pass (eval, then train from the same state) parity_run writes
<mode>.out, the gradients of sum(out * g) with respect to the input and every
parameter (<mode>.grad.input, <mode>.grad.<param>), the running statistics
after the training pass (train.buffer.<name>), and <mode>.kink.<k>: the input
of the k-th ReLU, ReLU6 or max-pool in graph order.

Why the kinks: gradients are discontinuous where a ReLU input crosses 0 (or
6), or where two values of a max-pool window swap places. Among the millions
of activations of these networks a few dozen lie within float32 rounding of
a kink, so any float32 implementation, torch's included, takes the other
branch at a few of them, and one such flip near the output moves every
gradient upstream by ~1 %. So the reference is torch in float64 taking
plugnet's branches: each ReLU/ReLU6 passes where plugnet's input (the kink
tensor) is inside, and each max-pool picks the element plugnet's input has as
the first maximum. That is the exact gradient of what plugnet computed; the
branches themselves are checked too: plugnet may differ from float64 only
where the float64 value is within KINK_TOL of the kink (relative to the
layer's scale). The kink tensors are compared with float64 like outputs.

Errors are relative to the tensor's scale, max|a - b| / max|b| (elementwise
relative errors mean nothing where values cross zero), the scale being at
least ZERO_FLOOR times the largest gradient of the same pass: some gradients
are zero in exact arithmetic (a batch-norm bias whose output reaches the loss
only through training-mode batch-norms) and are rounding noise in any
float32 result (torch's own float32 noise there is ~4e-8 of the largest
gradient, so a floor of 1e-4 would fail torch itself).
"""
import sys

import torch
import torch.nn.functional as F
import torchvision
from safetensors.torch import load_file, save_file

SEED = 4
BATCH = 3
# Odd sizes on the way down (80 -> 40 -> 20 -> 10 -> 5 -> 3) exercise the
# padding and rounding of every strided layer.
SIZE = 80
NUM_CLASSES = 10
TOL = 1e-4       # outputs, gradients, running statistics, kink inputs
KINK_TOL = 1e-4  # how near a kink plugnet may take the other branch
ZERO_FLOOR = 1e-3


def build(name):
    ctor = getattr(torchvision.models, name)
    model = ctor(weights=None, num_classes=NUM_CLASSES)
    if name == "mobilenet_v2":
        # Dropout draws differ between the frameworks; parity_torch.sh sets
        # the model file's dropout arg to 0 too.
        model.classifier[0].p = 0.0
    return model


def randomise(model, gen):
    """Batch-norm at its initial state (weight 1, bias 0, mean 0, var 1) is
    near the identity, and running statistics that do not fit the
    activations make a deep network's evaluation output all but constant
    (mobilenet_v2's input gradient would be ~1e-10). So: random affine
    parameters, running statistics measured on random batches, then jittered
    so that they are not exactly any batch's."""
    bns = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    with torch.no_grad():
        for m in bns:
            c = m.num_features
            m.weight.copy_(torch.rand(c, generator=gen) + 0.5)
            m.bias.copy_(torch.randn(c, generator=gen) * 0.2)
            m.reset_running_stats()
            m.momentum = None  # a cumulative average over the batches below
        model.train()
        for _ in range(2):
            model(torch.randn(4, 3, SIZE, SIZE, generator=gen))
        for m in bns:
            c = m.num_features
            m.momentum = 0.1
            m.running_mean.add_(torch.randn(c, generator=gen) * 0.1 * m.running_var.sqrt())
            m.running_var.mul_(torch.rand(c, generator=gen) * 0.4 + 0.8)
            m.num_batches_tracked.fill_(7)


def make(name, out_dir):
    torch.manual_seed(SEED)
    gen = torch.Generator().manual_seed(SEED)
    model = build(name)
    randomise(model, gen)
    state = {k: v.contiguous() for k, v in model.state_dict().items()}
    x = torch.randn(BATCH, 3, SIZE, SIZE, generator=gen)
    g = torch.randn(BATCH, NUM_CLASSES, generator=gen)
    save_file(state, "%s/%s.state.safetensors" % (out_dir, name))
    save_file({"x": x, "g": g}, "%s/%s.io.safetensors" % (out_dir, name))
    n_params = sum(p.numel() for p in model.parameters())
    print("%s: %d parameters, %d tensors in the state, input %s" %
          (name, n_params, len(state), list(x.shape)))
    return 0


class Guide:
    """plugnet's kink inputs for one pass, handed out in call order, and the
    branch decisions where float64 disagrees with them."""

    def __init__(self, got, mode):
        self.mode = mode
        self.kinks = []
        while "%s.kink.%d" % (mode, len(self.kinks)) in got:
            self.kinks.append(got["%s.kink.%d" % (mode, len(self.kinks))].double())
        self.used = 0
        self.flips = 0       # branches plugnet took differently from float64
        self.worst_flip = 0.0  # their largest distance from the kink, scaled
        self.worst_value = (0.0, -1)  # kink inputs against float64

    def next(self, x):
        k = self.used
        if k >= len(self.kinks):
            raise RuntimeError("%s: torch has more kinks than the %d plugnet wrote" %
                               (self.mode, len(self.kinks)))
        pre = self.kinks[k]
        if pre.shape != x.shape:
            raise RuntimeError("%s.kink.%d: plugnet's shape %s, torch's %s" %
                               (self.mode, k, list(pre.shape), list(x.shape)))
        self.used += 1
        scale = x.detach().abs().max().item() or 1.0
        err = (pre - x.detach()).abs().max().item() / scale
        if not err <= self.worst_value[0]:
            self.worst_value = (err, k)
        return pre, scale

    def flipped(self, n, distance):
        self.flips += n
        self.worst_flip = max(self.worst_flip, distance)


class GuidedReLU(torch.nn.Module):
    """ReLU (top None) or ReLU6 (top 6) whose branches are plugnet's."""

    def __init__(self, guide, top):
        super().__init__()
        self.guide, self.top = guide, top

    def forward(self, x):
        pre, scale = self.guide.next(x)
        xd = x.detach()
        inside, inside64 = pre > 0, xd > 0
        dist = xd.abs()
        if self.top is not None:
            inside, inside64 = inside & (pre < self.top), inside64 & (xd < self.top)
            dist = torch.minimum(dist, (xd - self.top).abs())
        diff = inside != inside64
        if diff.any():
            self.guide.flipped(int(diff.sum()), dist[diff].max().item() / scale)
        y = x * inside
        if self.top is not None:
            y = y + self.top * (pre >= self.top)
        return y


class GuidedMaxPool(torch.nn.Module):
    """Max-pool taking, in each window, the element plugnet's input has as
    the first maximum."""

    def __init__(self, guide, pool):
        super().__init__()
        self.guide, self.pool = guide, pool

    def forward(self, x):
        pre, scale = self.guide.next(x)
        p = self.pool
        _, idx = F.max_pool2d(pre, p.kernel_size, p.stride, p.padding, p.dilation,
                              p.ceil_mode, return_indices=True)
        _, idx64 = F.max_pool2d(x.detach(), p.kernel_size, p.stride, p.padding, p.dilation,
                                p.ceil_mode, return_indices=True)
        flat = x.flatten(2)
        y = flat.gather(2, idx.flatten(2)).view(idx.shape)
        diff = idx != idx64
        if diff.any():
            gap = flat.detach().gather(2, idx64.flatten(2)) - flat.detach().gather(2, idx.flatten(2))
            self.guide.flipped(int(diff.sum()), gap.max().item() / scale)
        return y


def guide_model(model, guide):
    for parent in list(model.modules()):
        for cname, child in list(parent.named_children()):
            if isinstance(child, torch.nn.ReLU6):
                setattr(parent, cname, GuidedReLU(guide, 6.0))
            elif isinstance(child, torch.nn.ReLU):
                setattr(parent, cname, GuidedReLU(guide, None))
            elif isinstance(child, torch.nn.MaxPool2d):
                setattr(parent, cname, GuidedMaxPool(guide, child))


def reference(name, state, io, got, train):
    """The float64 pass along plugnet's branches: outputs, gradients, running
    statistics under parity_run's names, and the guide's findings."""
    mode = "train" if train else "eval"
    model = build(name)
    model.load_state_dict(state)
    model.double()
    guide = Guide(got, mode)
    guide_model(model, guide)
    model.train(train)
    x = io["x"].double().requires_grad_(True)
    out = model(x)
    out.backward(io["g"].double())
    if guide.used != len(guide.kinks):
        raise RuntimeError("%s: plugnet wrote %d kinks, torch met %d" %
                           (mode, len(guide.kinks), guide.used))
    res = {mode + ".out": out.detach(), mode + ".grad.input": x.grad}
    for n, p in model.named_parameters():
        res["%s.grad.%s" % (mode, n)] = p.grad
    if train:
        for n, b in model.named_buffers():
            res["train.buffer." + n] = b.detach()
    return res, guide


def scale_error(a, b, floor):
    a, b = a.double(), b.double()
    scale = max(b.abs().max().item(), floor)
    return (a - b).abs().max().item() / max(scale, 1e-30)


def group(key):
    """eval.out, eval.grad.input, eval.grad.*, train.buffer.*"""
    parts = key.split(".")
    if parts[1] == "out" or key.endswith(".grad.input"):
        return key
    return "%s.%s.*" % (parts[0], parts[1])


def check_tensor(name, key, want, got, floor, worst):
    """Returns the number of failures for one reference tensor."""
    if key not in got:
        print("FAIL %s: plugnet wrote no '%s'" % (name, key))
        return 1
    if not want.is_floating_point():  # a counter: its value, [] or [1] alike
        if got[key].flatten().tolist() != want.flatten().tolist():
            print("FAIL %s %s: %s, expected %s" % (name, key, got[key].tolist(), want.tolist()))
            return 1
        return 0
    if tuple(got[key].shape) != tuple(want.shape):
        print("FAIL %s %s: shape %s, expected %s" %
              (name, key, list(got[key].shape), list(want.shape)))
        return 1
    err = scale_error(got[key], want, floor)
    g = group(key)
    if g not in worst or not err <= worst[g][0]:
        worst[g] = (err, key)
    if not err <= TOL:  # NaN fails
        print("FAIL %s %s: error %.3e > %.0e" % (name, key, err, TOL))
        return 1
    return 0


def check_guide(name, guide):
    failures = 0
    err, k = guide.worst_value
    print("%s %-30s error %.2e  worst: %s.kink.%d" % (name, guide.mode + ".kink.*", err, guide.mode, k))
    if not err <= TOL:
        print("FAIL %s %s.kink.%d: error %.3e > %.0e" % (name, guide.mode, k, err, TOL))
        failures += 1
    print("%s %-30s %d branch(es) taken otherwise than float64, at most %.1e from the kink" %
          (name, guide.mode + " branches", guide.flips, guide.worst_flip))
    if not guide.worst_flip <= KINK_TOL:
        print("FAIL %s: a %s branch differs %.3e from its kink (> %.0e)" %
              (name, guide.mode, guide.worst_flip, KINK_TOL))
        failures += 1
    return failures


def compare(name, out_dir):
    state = load_file("%s/%s.state.safetensors" % (out_dir, name))
    io = load_file("%s/%s.io.safetensors" % (out_dir, name))
    got = load_file("%s/%s.plugnet.safetensors" % (out_dir, name))
    failures = 0
    worst = {}
    for train in (False, True):
        ref, guide = reference(name, state, io, got, train)
        mode = guide.mode
        floor = ZERO_FLOOR * max(v.abs().max().item() for k, v in ref.items()
                                 if k.startswith(mode + ".grad."))
        for key, want in ref.items():
            f = floor if ".grad." in key else 0.0
            failures += check_tensor(name, key, want, got, f, worst)
        for g, (err, key) in worst.items():
            if g.startswith(mode):
                print("%s %-30s error %.2e%s" % (name, g, err, "" if g == key else "  worst: " + key))
        failures += check_guide(name, guide)
    print("%s: %s" % (name, "PASS" if failures == 0 else "%d FAILED" % failures))
    return 1 if failures else 0


def main(argv):
    if len(argv) == 4 and argv[1] == "make":
        return make(argv[2], argv[3])
    if len(argv) == 4 and argv[1] == "compare":
        return compare(argv[2], argv[3])
    sys.stderr.write("usage: parity_torch.py make|compare MODEL DIR\n")
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv))
