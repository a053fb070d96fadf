"""Device-time measurement shared by the benchmarks and `python -m jaxgemm`.

JAX ops are timed by kernel time from the profiler: the jitted op runs
`reps` times over `len(input_sets)` distinct input sets (rotating, so the
operands come from HBM rather than the 50 MB L2), inside a profiler trace;
the GPU kernel events of the trace are summed per call (every kernel the op
launches counts, scale transposes and pads included) and the median over
calls is reported.  Without GPU events (CPU) it falls back to wall time.
"""
from __future__ import annotations

import glob
import os
import statistics
import tempfile
import time

import jax

_DEBUG = bool(os.environ.get("JAXGEMM_TIMING_DEBUG"))


def _gpu_kernel_events(trace_dir: str):
    """``[(start_ns, duration_ns, name, hlo_module, hlo_op)]`` of the GPU work
    in a profiler trace (host transfers left out)."""
    from jax._src.lib import _profile_data  # jaxlib's XSpace reader

    paths = glob.glob(f"{trace_dir}/**/*.xplane.pb", recursive=True)
    if not paths:
        return []
    pd = _profile_data.ProfileData.from_file(paths[0])
    events = []
    for plane in pd.planes:
        if not plane.name.startswith("/device:GPU"):
            continue
        for line in plane.lines:
            # A stream line's name lists every kind of work on it (e.g.
            # "Stream #20(MemcpyD2D,Compute)"), so copies are told apart per
            # event: skipping such a line would drop the kernels that share it.
            if _DEBUG:
                print(f"[jaxgemm timing] {plane.name} / {line.name}: {len(list(line.events))} events")
            if line.name.startswith("XLA "):  # "XLA Ops"/"XLA Modules": the same work, coarser
                continue
            for ev in line.events:
                # Device-side copies and memsets are part of an op's cost (XLA
                # copies a non-donated argument into an aliased output with a
                # D2D memcpy, which an earlier version of this timer skipped);
                # only host transfers are left out.
                ename = ev.name.lower().replace(" ", "")
                if any(t in ename for t in ("h2d", "d2h", "htod", "dtoh", "hosttodevice",
                                            "devicetohost")):
                    continue
                stats = dict(ev.stats)
                events.append((ev.start_ns, ev.duration_ns, ev.name, stats.get("hlo_module", ""),
                               str(stats.get("hlo_op", ""))))
    return events


def time_op(fn, input_sets, *, reps: int = 30, module_hint: str | None = None) -> dict:
    """Median device time (us) of one call of `fn(*inputs)` over rotating inputs."""
    jfn = fn if hasattr(fn, "lower") else jax.jit(fn)
    for s in input_sets:  # compile + warm up (JIT, caches, clocks)
        jax.block_until_ready(jfn(*s))
    jax.block_until_ready(jfn(*input_sets[0]))
    with tempfile.TemporaryDirectory() as d:
        with jax.profiler.trace(d):
            t0 = time.perf_counter()
            for i in range(reps):
                out = jfn(*input_sets[i % len(input_sets)])
            jax.block_until_ready(out)
            wall = (time.perf_counter() - t0) / reps
        events = _gpu_kernel_events(d)
    if module_hint:
        hinted = [e for e in events if module_hint in e[3]]
        events = hinted or events
    if not events:
        return {"us": wall * 1e6, "method": "wall", "kernels_per_call": 0}
    events.sort()
    per_call = len(events) / reps
    k = max(1, round(per_call))
    # Group consecutive kernels into calls; each call launches the same k kernels.
    sums = [sum(e[1] for e in events[i:i + k]) for i in range(0, len(events) - k + 1, k)]
    # Per-kernel medians (position i of each call), to see where a call's time goes.
    per_kernel = [(events[i][2][:100], statistics.median(
        e[1] for e in events[i:len(events) - k + 1 + i:k]) / 1e3) for i in range(k)]
    return {"us": statistics.median(sums) / 1e3, "method": "profiler",
            "kernels_per_call": per_call, "wall_us": wall * 1e6,
            "kernel_names": sorted({e[2][:80] for e in events[:k]}),
            "per_kernel_us": per_kernel}


def num_sets_for(bytes_per_set: int, *, target: int = 160 << 20, max_sets: int = 8) -> int:
    """Distinct input sets so that one rotation streams well past the L2."""
    return max(2, min(max_sets, -(-target // max(bytes_per_set, 1))))
