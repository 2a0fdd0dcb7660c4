"""plugnet's transforms against torchvision.transforms.functional.

Usage: transforms_torch.py TRANSFORM_RUN

TRANSFORM_RUN (tests/transform_run) runs a chain on raw RGB bytes written
here and prints the sample's view: output size and the 3x3 map from output
to source points. Deterministic transforms are compared with torchvision
directly (bilinear, antialias=False, float images in [0, 1]). For random
ones the draw is read back from the map (a rotation's angle, a crop's box)
and torchvision is given the same; padding modes torchvision's rotate lacks
are compared with grid_sample on the same map.
"""
import math
import os
import subprocess
import sys
import tempfile

import torch
import torch.nn.functional as NF
import torchvision.transforms.functional as F
from torchvision.transforms import InterpolationMode

BILINEAR = InterpolationMode.BILINEAR
TOL = 1e-4
W, H = 61, 47


def make_image():
    g = torch.Generator().manual_seed(6)
    # Smooth enough to be a photo, noisy enough that a pixel off shows.
    base = torch.rand(3, H // 4 + 2, W // 4 + 2, generator=g)
    smooth = NF.interpolate(base[None], size=(H, W), mode="bicubic", align_corners=False)[0]
    noisy = smooth + 0.15 * torch.rand(3, H, W, generator=g)
    return (noisy.clamp(0, 1) * 255).round().to(torch.uint8)


class Runner:
    def __init__(self, exe, img, tmp):
        self.exe, self.tmp = exe, tmp
        self.raw = os.path.join(tmp, "in.raw")
        with open(self.raw, "wb") as f:
            f.write(img.permute(1, 2, 0).contiguous().numpy().tobytes())

    def __call__(self, *steps, key=1, stream=0):
        out = os.path.join(self.tmp, "out.f32")
        cmd = [self.exe, self.raw, str(W), str(H), out, str(key), str(stream), *steps]
        res = subprocess.run(cmd, capture_output=True, text=True)
        if res.returncode != 0:
            raise RuntimeError(f"{' '.join(cmd)}: {res.stderr.strip()}")
        fields = res.stdout.split()
        w, h = int(fields[0]), int(fields[1])
        m = torch.tensor([float(x) for x in fields[2:11]], dtype=torch.float64).view(3, 3)
        with open(out, "rb") as f:
            data = bytearray(f.read())
        x = torch.frombuffer(data, dtype=torch.float32).view(3, h, w).clone()
        return x, m


def source_points(m, w, h):
    """Where each output pixel centre is taken from (x, y), as the view maps it."""
    ys, xs = torch.meshgrid(torch.arange(h, dtype=torch.float64) + 0.5,
                            torch.arange(w, dtype=torch.float64) + 0.5, indexing="ij")
    q = m @ torch.stack([xs.flatten(), ys.flatten(), torch.ones(w * h, dtype=torch.float64)])
    return (q[0] / q[2]).view(h, w), (q[1] / q[2]).view(h, w)


def grid_sample(img, m, w, h, padding):
    sx, sy = source_points(m, w, h)
    grid = torch.stack([sx / W * 2 - 1, sy / H * 2 - 1], dim=-1)[None].float()
    return NF.grid_sample(img[None], grid, mode="bilinear", padding_mode=padding,
                          align_corners=False)[0]


failures = []


def check(name, got, want, mask=None):
    if got.shape != want.shape:
        failures.append(f"{name}: shape {tuple(got.shape)}, torchvision {tuple(want.shape)}")
        print(f"FAIL {name}: shape {tuple(got.shape)} vs {tuple(want.shape)}")
        return
    diff = (got - want).abs()
    if mask is not None:
        diff = diff[:, mask]
    err = diff.max().item() if diff.numel() else 0.0
    ok = err <= TOL
    print(f"{'ok  ' if ok else 'FAIL'} {name}: max |plugnet - torchvision| = {err:.2e}"
          + (f" over {diff.shape[-1]} pixels" if mask is not None else ""))
    if not ok:
        failures.append(name)


def deterministic(run, img):
    check("resize 29 (short side)", run("resize:size=29")[0],
          F.resize(img, 29, interpolation=BILINEAR, antialias=False))
    check("resize [80, 100]", run("resize:size=[80, 100]")[0],
          F.resize(img, [80, 100], interpolation=BILINEAR, antialias=False))
    check("center_crop [30, 70]", run("center_crop:size=[30, 70]")[0], F.center_crop(img, [30, 70]))
    check("center_crop 40", run("center_crop:size=40")[0], F.center_crop(img, 40))
    check("hflip", run("hflip:p=1")[0], F.hflip(img))
    check("vflip", run("vflip:p=1")[0], F.vflip(img))
    mean, std = [0.1, 0.5, 0.9], [0.2, 0.3, 0.4]
    check("normalize", run("normalize:mean=[0.1, 0.5, 0.9], std=[0.2, 0.3, 0.4]")[0],
          F.normalize(img, mean, std))
    imagenet = ([0.485, 0.456, 0.406], [0.229, 0.224, 0.225])
    chain = run("resize:size=40", "center_crop:size=32", "hflip:p=1", "normalize:preset=imagenet")
    want = F.normalize(F.hflip(F.center_crop(F.resize(img, 40, interpolation=BILINEAR,
                                                      antialias=False), 32)), *imagenet)
    check("resize 40, center_crop 32, hflip, normalize imagenet", chain[0], want)


def random_crops(run, img):
    for stream in range(4):
        x, m = run("random_resized_crop:size=[24, 40]", stream=stream)
        left, top = int(m[0, 2].item()), int(m[1, 2].item())
        w, h = round(m[0, 0].item() * 40), round(m[1, 1].item() * 24)
        want = F.resized_crop(img, top, left, h, w, [24, 40], interpolation=BILINEAR,
                              antialias=False)
        # torchvision resamples the cut-out crop, so an upscale repeats the
        # crop's edge pixels where plugnet, resampling the whole image once,
        # reads on into their neighbours: compare where the crop decides.
        sx, sy = source_points(m, 40, 24)
        inside = ((sx >= left + 0.5) & (sx <= left + w - 0.5) & (sy >= top + 0.5)
                  & (sy <= top + h - 0.5))
        check(f"random_resized_crop (box {left},{top} {w}x{h})", x, want, inside)
        check(f"random_resized_crop (box {left},{top} {w}x{h}), whole (grid_sample)", x,
              grid_sample(img, m, 40, 24, "border"))


def rotations(run, img):
    for stream in range(3):
        x, m = run("affine:p=1, rotate=40, zoom=1, warp=0, padding=zeros", stream=stream)
        angle = math.degrees(math.atan2(m[1, 0].item(), m[0, 0].item()))
        # torchvision's zeros padding blends with zero across the outer half
        # pixel, where plugnet keeps the edge pixel: compare the inside.
        sx, sy = source_points(m, W, H)
        inside = (sx >= 1) & (sx <= W - 1) & (sy >= 1) & (sy <= H - 1)
        want = F.rotate(img, angle, interpolation=BILINEAR)
        check(f"affine rotation {angle:+.2f} deg, zeros", x, want, inside)
    for padding in ("reflection", "border"):
        x, m = run(f"affine:p=1, rotate=40, zoom=[1.2, 1.2], warp=0.3, padding={padding}")
        check(f"affine warp + rotation, {padding} (grid_sample)", x,
              grid_sample(img, m, W, H, padding))


def main():
    exe = sys.argv[1]
    img8 = make_image()
    img = img8.float() / 255
    with tempfile.TemporaryDirectory() as tmp:
        run = Runner(exe, img8, tmp)
        deterministic(run, img)
        random_crops(run, img)
        rotations(run, img)
    if failures:
        print(f"{len(failures)} comparison(s) failed: {', '.join(failures)}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
