#!/usr/bin/env python3
"""Plot a soak's CSV (bench/soak.sh): `bench/soak_plot.py CSV PNG [WARMUP_SECONDS]`.

One PNG, four panels over time: Moat's RSS, open file descriptors, threads, and each traffic
kind's p99 latency per 10-second window (log scale). The warm-up the summary leaves out is
shaded (default: min(120 s, a quarter of the run), as bench/soak.sh uses).

Needs matplotlib (from PyPI). When it is missing, this script makes a virtual environment in
~/.cache/moat-soak-venv, installs matplotlib there with pip, and runs itself again with it.
"""
import csv
import os
import subprocess
import sys
from pathlib import Path

VENV = Path.home() / ".cache" / "moat-soak-venv"


def ensure_matplotlib():
    try:
        import matplotlib  # noqa: F401
        return
    except ImportError:
        pass
    py = VENV / "bin" / "python"
    if os.environ.get("MOAT_SOAK_VENV") == "1":
        sys.exit("matplotlib is still missing inside " + str(VENV))
    if not py.exists():
        print(f"matplotlib missing: installing it into {VENV}", file=sys.stderr)
        subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True)
    probe = subprocess.run([str(py), "-c", "import matplotlib"], capture_output=True)
    if probe.returncode != 0:
        subprocess.run([str(py), "-m", "pip", "install", "-q", "matplotlib"], check=True)
    os.environ["MOAT_SOAK_VENV"] = "1"
    os.execv(str(py), [str(py), *sys.argv])


def main():
    if len(sys.argv) not in (3, 4):
        sys.exit(__doc__.splitlines()[0])
    ensure_matplotlib()
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FuncFormatter, MaxNLocator

    src, out = sys.argv[1], sys.argv[2]
    rows = list(csv.DictReader(open(src)))
    if not rows:
        sys.exit(f"{src}: no rows")
    t = [int(r["t_s"]) / 60 for r in rows]
    span = int(rows[-1]["t_s"])
    warmup = int(sys.argv[3]) if len(sys.argv) == 4 else min(120, span // 4)

    def col(name, div=1.0):
        return [float(r[name]) / div if r.get(name) else float("nan") for r in rows]

    kinds = [c[: -len("_p99_ms")] for c in rows[0] if c.endswith("_p99_ms")]
    fig, axes = plt.subplots(4, 1, sharex=True, figsize=(11, 12))
    panels = [
        ("RSS (MB)", col("rss_kb", 1024)),
        ("open file descriptors", col("fds")),
        ("threads", col("threads")),
    ]
    for ax, (label, values) in zip(axes, panels):
        ax.plot(t, values, marker=".", linewidth=1)
        ax.set_ylabel(label)
        lo, hi = min(values), max(values)
        pad = max((hi - lo) * 0.2, hi * 0.05, 1)
        ax.set_ylim(max(0, lo - pad), hi + pad)
        if label != "RSS (MB)":
            ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    ax = axes[3]
    for k in kinds:
        ax.plot(t, col(f"{k}_p99_ms"), marker=".", linewidth=1, label=k)
    ax.set_yscale("log")
    ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    ax.yaxis.set_minor_formatter(FuncFormatter(lambda v, _: ""))
    ax.set_ylabel("p99 latency per window (ms)")
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1), fontsize="small")
    ax.set_xlabel("minutes")
    ax.set_xlim(left=0)
    for ax in axes:
        ax.grid(True, alpha=0.3)
        if warmup:
            ax.axvspan(0, warmup / 60, color="grey", alpha=0.15)
    rate = sum(float(r.get("page_rate") or 0) + float(r.get("html_rate") or 0)
               + float(r.get("decoy_rate") or 0) for r in rows) / len(rows)
    fig.suptitle(f"Moat soak: {Path(src).name} ({span / 60:.0f} min, "
                 f"~{rate:.0f} HTTP req/s; warm-up shaded)")
    fig.tight_layout()
    fig.savefig(out, dpi=100)
    print(out)


if __name__ == "__main__":
    main()
