"""Summary of the multi-GPU training runs of ``tools/multi_gpu_run.sh``.

Reads the ``sharded_moe_*.json`` files that ``examples/sharded_moe.py --json``
wrote in one folder (one-GPU runs and N-GPU runs of the same per-GPU batch),
prints step times, weak-scaling efficiency (one-GPU step time / N-GPU step
time: 1.0 means N GPUs process N times the tokens in the same time), final
losses and the collectives of each compiled step, and writes a results file in
the format of ``../shared/README.md`` (``op: train_step``, top-level
``num_gpus``).

    python benchmarks/multi_gpu_summary.py RUN_DIR NUM_GPUS [--gpu NAME] [--commit SHA] [--jax V]
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_sharded import collectives_in  # noqa: E402

LAYOUTS = {"data": "experts split, dense layers data parallel",
           "tensor": "experts split, dense layers tensor parallel"}


def _load(run_dir: Path, name: str):
    p = run_dir / f"sharded_moe_{name}.json"
    return json.loads(p.read_text()) if p.exists() else None


def _record(run: dict, dtype: str, layout: str, num_gpus: int, **more) -> dict:
    step_us = run["median_step_s"] * 1e6
    return dict(op="train_step", impl="jaxgemm_fp8" if dtype == "fp8" else "xla_bf16",
                layout=layout, num_gpus=num_gpus, mesh=run["mesh"],
                tokens_per_step=run["tokens_per_step"], us=round(step_us, 1),
                tokens_per_s=round(run["tokens_per_step"] / run["median_step_s"]),
                final_loss=round(run["losses"][-1], 4), losses=run["losses"],
                config=run["config"], **more)


def summarize(run_dir: Path, n: int) -> list[dict]:
    records = []
    for dtype in ("fp8", "bf16"):
        one = _load(run_dir, f"{dtype}_1gpu")
        if one:
            records.append(_record(one, dtype, "1gpu", 1))
        for layout, words in LAYOUTS.items():
            many = _load(run_dir, f"{dtype}_{n}gpu_{layout}")
            if not (one and many):
                continue
            eff = one["median_step_s"] / many["median_step_s"]
            hlo = run_dir / f"hlo_{dtype}_{n}gpu_{layout}.txt"
            coll = collectives_in(hlo.read_text()) if hlo.exists() else None
            records.append(_record(many, dtype, f"ep_{'dp' if layout == 'data' else 'tp'}", n,
                                   weak_scaling_efficiency=round(eff, 3), collectives=coll))
            print(f"{dtype} ({words}): {n} GPUs {many['median_step_s'] * 1e3:.2f} ms/step "
                  f"({many['tokens_per_step']} tok), 1 GPU {one['median_step_s'] * 1e3:.2f} "
                  f"ms/step ({one['tokens_per_step']} tok): weak-scaling efficiency {eff:.3f}; "
                  f"final loss {many['losses'][-1]:.4f} vs 1 GPU {one['losses'][-1]:.4f}")
            if coll is not None:
                print("  collectives in the step: " + ", ".join(coll))
    for layout in LAYOUTS:
        f, g = _load(run_dir, f"fp8_{n}gpu_{layout}"), _load(run_dir, f"bf16_{n}gpu_{layout}")
        if f and g:
            print(f"FP8 vs BF16 on {n} GPUs ({layout} parallel dense): final loss "
                  f"{f['losses'][-1]:.4f} vs {g['losses'][-1]:.4f} "
                  f"({(f['losses'][-1] / g['losses'][-1] - 1) * 100:+.2f}%), step "
                  f"{f['median_step_s'] * 1e3:.2f} vs {g['median_step_s'] * 1e3:.2f} ms "
                  f"({g['median_step_s'] / f['median_step_s']:.2f}x)")
    for extra, note in (("fp8_1gpu_again", "the one-GPU FP8 run repeated (spread)"),
                        ("fp8_1gpu_old", "the one-GPU FP8 run of an older example version")):
        r = _load(run_dir, extra)
        if r:
            records.append(_record(r, "fp8", "1gpu", 1, note=note))
            print(f"{extra}: {r['median_step_s'] * 1e3:.2f} ms/step, final loss "
                  f"{r['losses'][-1]:.4f} ({note})")
    return records


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("run_dir", type=Path)
    ap.add_argument("num_gpus", type=int)
    ap.add_argument("--gpu", default=None, help="GPU name (default: what JAX sees here)")
    ap.add_argument("--commit", default=None, help="commit of the run (default: JAXGEMM_COMMIT)")
    ap.add_argument("--jax", default=None, help="jax version of the run (default: this one)")
    args = ap.parse_args(argv)
    records = summarize(args.run_dir, args.num_gpus)
    if args.commit:
        os.environ["JAXGEMM_COMMIT"] = args.commit
    import common

    path = common.write_results("multi_gpu_train", records, extra={"num_gpus": args.num_gpus})
    if args.gpu or args.jax:  # summarized off the device: say what the run had
        doc = json.loads(path.read_text())
        if args.gpu:
            doc["gpu"] = args.gpu
            doc["device_facts"] = {"gpu": args.gpu, "note": "summarized off the device"}
        if args.jax:
            doc["jax"] = args.jax
        path.write_text(json.dumps(doc, indent=1))
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
