"""Reads run.sh's outputs (DIR/NAME.ROUND.{out,time}) and prints every round,
then the medians side by side with plugnet's ratio to each peer, then the
issue's targets."""
import re
import statistics
import sys

NAMES = ("plugnet", "torch", "numpy")
# Issue 3's targets for the cpu backend on a machine of this class.
TARGET_SPAN_S, TARGET_VS_TORCH, TARGET_VS_NUMPY, TARGET_RSS_MB = 2.0, 5.0, 1.8, 300.0


def grab(pattern, text, what, path):
    m = re.search(pattern, text, re.M)
    if not m:
        sys.exit("summarize: no %s in %s" % (what, path))
    return m.group(1)


def parse(d, name, r):
    base = "%s/%s.%d" % (d, name, r)
    out, tv = open(base + ".out").read(), open(base + ".time").read()
    wall = grab(r"Elapsed \(wall clock\) time.*: (\S+)$", tv, "wall time", base + ".time")
    secs = 0.0
    for part in wall.split(":"):
        secs = secs * 60 + float(part)
    res = {
        "wall": secs,
        "rss": int(grab(r"Maximum resident set size \(kbytes\): (\d+)", tv, "RSS", base)) / 1024,
    }
    if name == "plugnet":
        res["span"] = float(grab(r"^time: (\S+) s", out, "'time:'", base + ".out"))
        res["acc"] = float(grab(r"^test: .*accuracy (\S+)", out, "test accuracy", base + ".out"))
        rows = re.findall(r"^\d+\s+(\S+)\s", out, re.M)
        res["loss"] = float(rows[-1]) if rows else float("nan")
    else:
        line = grab(r"^(RESULT .*)$", out, "RESULT line", base + ".out")
        kv = dict(f.split("=") for f in line.split()[2:])
        res.update(span=float(kv["span"]), acc=float(kv["acc"]), loss=float(kv["train_loss"]))
    return res


def main():
    d, runs = sys.argv[1], int(sys.argv[2])
    res = {n: [parse(d, n, r) for r in range(1, runs + 1)] for n in NAMES}

    print("\nround  %-32s %-32s %-32s" % NAMES)
    print("       " + "  ".join(["span_s  wall_s  rss_MB  acc    "] * 3))
    for r in range(runs):
        cells = [
            "%6.2f  %6.2f  %6.0f  %.4f " % tuple(res[n][r][k] for k in ("span", "wall", "rss", "acc"))
            for n in NAMES
        ]
        print("%-6d %s" % (r + 1, "  ".join(cells)))

    med = {n: {k: statistics.median(x[k] for x in res[n]) for k in res[n][0]} for n in NAMES}
    # Per-round ratios too: on a shared machine they cancel noise the medians keep.
    rr = {
        (n, k): statistics.median(res[n][r][k] / res["plugnet"][r][k] for r in range(runs))
        for n in NAMES[1:]
        for k in ("span", "wall")
    }
    print("\nmedian of %d round(s)       plugnet    torch (ratio)         numpy (ratio)" % runs)
    rows = (
        ("span, data in -> test (s)", "span", "%.2f"),
        ("process wall time (s)", "wall", "%.2f"),
        ("peak RSS (MB)", "rss", "%.0f"),
        ("test accuracy", "acc", "%.4f"),
        ("train loss, epoch 5", "loss", "%.4f"),
    )
    for label, k, f in rows:
        cells = [f % med["plugnet"][k]]
        for n in NAMES[1:]:
            ratio = med[n][k] / med["plugnet"][k] if k in ("span", "wall", "rss") else None
            cells.append((f % med[n][k]) + (" (%.2fx)" % ratio if ratio else ""))
        print("%-27s %-10s %-21s %s" % (label, *cells))
    print(
        "ratios are peer / plugnet (> 1: plugnet faster or smaller); median of the per-round "
        "span ratios: torch %.2fx, numpy %.2fx" % (rr[("torch", "span")], rr[("numpy", "span")])
    )

    p = med["plugnet"]
    checks = (
        ("plugnet span <= %.1f s" % TARGET_SPAN_S, p["span"] <= TARGET_SPAN_S, "%.2f s" % p["span"]),
        (
            ">= %.1fx faster than PyTorch" % TARGET_VS_TORCH,
            med["torch"]["span"] / p["span"] >= TARGET_VS_TORCH,
            "%.2fx" % (med["torch"]["span"] / p["span"]),
        ),
        (
            ">= %.1fx faster than NumPy" % TARGET_VS_NUMPY,
            med["numpy"]["span"] / p["span"] >= TARGET_VS_NUMPY,
            "%.2fx" % (med["numpy"]["span"] / p["span"]),
        ),
        ("peak RSS <= %.0f MB" % TARGET_RSS_MB, p["rss"] <= TARGET_RSS_MB, "%.0f MB" % p["rss"]),
    )
    print("\ntargets (issue 3, medians):")
    for what, ok, got in checks:
        print("  %-30s %-9s %s" % (what, got, "met" if ok else "MISSED"))


if __name__ == "__main__":
    main()
