"""Shared pieces of the benchmark scripts: shape sets, goals, result files,
the table printer and the PNG chart."""
from __future__ import annotations

import datetime
import json
import os
import subprocess
from pathlib import Path

import jax

DATA = Path(__file__).resolve().parent / "data"
RESULTS = Path(__file__).resolve().parent / "results"


def shapes() -> dict:
    """The benchmark shape sets (a copy of the project's shared/perf/shapes.json)."""
    return json.loads((DATA / "shapes.json").read_text())


def goals() -> dict:
    return json.loads((DATA / "goals_h100.json").read_text())


def commit() -> str:
    if os.environ.get("JAXGEMM_COMMIT"):
        return os.environ["JAXGEMM_COMMIT"]
    try:
        head = subprocess.run(["git", "rev-parse", "--short=12", "HEAD"], capture_output=True,
                              text=True, check=True).stdout.strip()
        # A copied working tree (the device runs) can carry edits past the
        # .git it came with: say so instead of naming a commit it is not.
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, check=True).stdout.strip()
        return head + ("+modified" if dirty else "")
    except Exception:
        return "unknown"


# What decides the code that ran: kernels, FFI handlers, the Python package.
DIGEST_TREES = ("src_cuda", "ffi", "jaxgemm")
_ROOT = Path(__file__).resolve().parent.parent


def source_digest(root: Path = _ROOT, kernel_dir: Path | None = None) -> str:
    """SHA-256 (16 hex digits) over the files of DIGEST_TREES under `root`,
    with `kernel_dir` (an A/B source folder) standing in for src_cuda.  The
    commit recorded with a result can be wrong where a copied working tree
    carries a stale .git; this digest cannot: `tools/source_digest.py REV`
    computes it for any commit."""
    import hashlib
    h = hashlib.sha256()
    for tree in DIGEST_TREES:
        base = kernel_dir if (tree == "src_cuda" and kernel_dir) else root / tree
        files = sorted(p for p in Path(base).rglob("*") if p.is_file()
                       and "__pycache__" not in p.parts and p.suffix not in (".pyc", ".so"))
        for f in files:
            h.update(f"{tree}/{f.relative_to(base).as_posix()}\0".encode())
            h.update(f.read_bytes())
            h.update(b"\0")
    return h.hexdigest()[:16]


def gpu_facts() -> dict:
    dev = jax.devices()[0]
    facts = {"gpu": getattr(dev, "device_kind", str(dev)), "platform": dev.platform}
    try:
        q = subprocess.run(
            ["nvidia-smi", "--query-gpu=name,clocks.sm,clocks.max.sm,clocks.mem,power.draw,"
             "temperature.gpu,driver_version", "--format=csv,noheader"],
            capture_output=True, text=True, timeout=10).stdout.strip()
        facts["nvidia_smi"] = q
    except Exception:
        pass
    return facts


def results_dir() -> Path:
    """Where result files go: JAXGEMM_RESULTS_DIR (the device runs' $OUT) or benchmarks/results."""
    out_dir = Path(os.environ.get("JAXGEMM_RESULTS_DIR", RESULTS))
    out_dir.mkdir(parents=True, exist_ok=True)
    return out_dir


def checkpoint(name: str, records: list[dict]) -> Path:
    """Writes the records so far to `<name>_partial.json` (overwritten each time), so a run
    cut short by a time limit still leaves its finished sets; write_results removes it."""
    path = results_dir() / f"{name}_partial.json"
    path.write_text(json.dumps({"partial": True, "commit": commit(), "gpu": gpu_facts().get("gpu"),
                                "records": records}, indent=1))
    return path


def write_results(name: str, records: list[dict], extra: dict | None = None) -> Path:
    facts = gpu_facts()
    doc = {
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "commit": commit(),
        "source_digest": source_digest(kernel_dir=Path(os.environ["JAXGEMM_SOURCE_DIR"])
                                       if os.environ.get("JAXGEMM_SOURCE_DIR") else None),
        "gpu": facts.get("gpu"),
        "jax": jax.__version__,
        "device_facts": facts,
        **(extra or {}),
        "records": records,
    }
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%d-%H%M")
    out_dir = results_dir()
    path = out_dir / f"{name}_{stamp}.json"
    if path.exists():  # two runs within a minute: keep both
        path = out_dir / f"{name}_{stamp}{datetime.datetime.now().strftime('%S')}.json"
    path.write_text(json.dumps(doc, indent=1))
    (out_dir / f"{name}_partial.json").unlink(missing_ok=True)
    return path


def print_table(rows: list[dict], cols: list[tuple[str, str, str]]) -> None:
    """rows: dicts; cols: (key, header, format)."""
    widths = [max(len(h), 8) for _, h, _ in cols]
    cells = []
    for r in rows:
        line = []
        for (k, _, fmt), w in zip(cols, widths):
            v = r.get(k)
            line.append("-" if v is None else (fmt.format(v) if fmt else str(v)))
        cells.append(line)
    widths = [max(w, *(len(c[i]) for c in cells)) if cells else w for i, w in enumerate(widths)]
    print("  ".join(h.rjust(w) for (_, h, _), w in zip(cols, widths)))
    for line in cells:
        print("  ".join(c.rjust(w) for c, w in zip(line, widths)))


def bar_chart(path: Path, title: str, labels: list[str], series: dict[str, list[float]],
              goal: list[float] | None = None) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return
    import numpy as np

    x = np.arange(len(labels))
    width = 0.8 / max(1, len(series))
    fig, ax = plt.subplots(figsize=(max(8, len(labels) * 0.9), 5))
    for i, (name, vals) in enumerate(series.items()):
        ax.bar(x + i * width - 0.4 + width / 2, [v or 0 for v in vals], width, label=name)
    if goal:
        ax.scatter(x, goal, marker="_", s=300, color="black", label="goal", zorder=5)
    ax.set_xticks(x)
    ax.set_xticklabels(labels, rotation=60, ha="right", fontsize=8)
    ax.set_ylabel("TFLOPS")
    ax.set_title(title)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
