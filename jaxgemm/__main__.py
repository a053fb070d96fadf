"""``python -m jaxgemm``: environment report, self-check of every op, speed table.

Options: ``--quick`` (fewer shapes, shorter table), ``--no-bench`` (no table).
Exit status 1 if any self-check fails.
"""
from __future__ import annotations

import argparse
import sys

import numpy as np

# Thresholds on diff = 1 - 2 sum(xy) / sum(x^2 + y^2) against the float64
# oracle computed from the same (quantized) inputs.
FP8_THRESHOLD = 1e-3
BF16_THRESHOLD = 1e-4


def _line(msg: str = "") -> None:
    print(msg, flush=True)


def _versions():
    import jax
    try:
        from importlib.metadata import version
        jaxlib_v = version("jaxlib")
    except Exception:
        jaxlib_v = "unknown"
    return jax.__version__, jaxlib_v


def report_environment() -> None:
    import jax

    import jaxgemm
    from jaxgemm import _backend, _kernels

    jax_v, jaxlib_v = _versions()
    _line(f"jaxgemm {jaxgemm.__version__} (jax {jax_v}, jaxlib {jaxlib_v}, "
          f"python {sys.version.split()[0]})")
    _line(f"default backend: {jax.default_backend()}; devices: "
          f"{', '.join(str(d) for d in jax.devices())}")
    info = _backend.cuda_device_info()
    if info is None:
        _line("Hopper GPU: no (no CUDA device visible)")
    else:
        _line(f"Hopper GPU: {'yes' if _backend.hopper_available() else 'no'} "
              f"({info[1]}, compute capability {info[0]})")
    try:
        from jaxgemm import _ext  # the runtime's module (may not exist yet)
        rt = _ext.runtime_info()
        for k, v in dict(rt).items():
            _line(f"runtime {k}: {v}")
    except Exception as e:  # noqa: BLE001 - any failure means "unavailable"
        _line(f"NVRTC / kernel cache: unavailable ({type(e).__name__}: {e})")
    policy = _backend.get_backend()
    _line(f"backend policy: {policy} (JAXGEMM_BACKEND / jaxgemm.set_backend); "
          f"kernels registered: {len(_kernels.KERNEL_IMPLS)} "
          f"({', '.join(sorted(_kernels.KERNEL_IMPLS)) or 'none'})")
    if info is None:
        _line("CUDA lowering: n/a; every op runs the reference path on this machine")
    else:
        try:
            choice = _backend.resolve_policy(policy, info)
            _line(f"CUDA lowering: {choice} (ops without a registered kernel use the "
                  f"reference)")
        except RuntimeError as e:
            _line(f"CUDA lowering: error: {e}")


# ------------------------------------------------------------------ self-check


class _Checker:
    def __init__(self):
        self.failures = 0
        self.count = 0

    def record(self, name: str, ok: bool, diff: float, err: float, extra: str = ""):
        self.count += 1
        if not ok:
            self.failures += 1
        _line(f"{'PASS' if ok else 'FAIL'}  {name:<64s} diff={diff:.2e}  "
              f"max_abs_err={err:.2e}{('  ' + extra) if extra else ''}")

    def compare(self, name, out, ref, threshold, zero_mask=None):
        from jaxgemm import _oracle as O
        out64 = O.to64(out)
        ok = out64.shape == ref.shape and bool(np.all(np.isfinite(out64)))
        d = O.diff(out64, ref) if ok else float("nan")
        e = O.max_abs(out64, ref) if ok else float("nan")
        ok = ok and d <= threshold
        extra = ""
        if ok and zero_mask is not None and np.any(zero_mask):
            if np.any(out64[zero_mask] != 0):
                ok, extra = False, "rows outside the groups are not exactly zero"
        if out64.shape != ref.shape:
            extra = f"shape {out64.shape} != {ref.shape}"
        self.record(name, ok, d, e, extra)

    def run(self, name, thunk):
        try:
            thunk()
        except Exception as e:  # noqa: BLE001
            self.record(name, False, float("nan"), float("nan"),
                        f"raised {type(e).__name__}: {e}")


def self_check(quick: bool = False, seed: int = 0) -> int:
    """Run every op against the NumPy oracle; return the number of failures."""
    import jax
    import jax.numpy as jnp

    import jaxgemm as jg
    from jaxgemm import _oracle as O

    rng = np.random.default_rng(seed)
    chk = _Checker()

    def rand(*shape):
        return jnp.asarray(rng.standard_normal(shape).astype(np.float32))

    def bf(*shape):
        return rand(*shape).astype(jnp.bfloat16)

    def T(pair):
        return (pair[0].T, pair[1].T)

    dense_shapes = [(37, 129, 256), (64, 200, 300)] if quick else \
        [(1, 1, 128), (37, 129, 256), (64, 200, 300), (130, 72, 7), (0, 16, 128)]
    for (m, n, k) in dense_shapes:
        x, w = rand(m, k), rand(n, k)
        a, b = jg.per_token_cast_to_fp8(x), jg.per_block_cast_to_fp8(w)
        b_row = jg.per_token_cast_to_fp8(w)  # per-row B scales
        c = rand(m, n)
        tag = f"M={m} N={n} K={k}"
        for lay, fn in [("nt", jg.fp8_gemm_nt), ("nn", jg.fp8_gemm_nn),
                        ("tn", jg.fp8_gemm_tn), ("tt", jg.fp8_gemm_tt)]:
            aa = a if lay[0] == "n" else T(a)
            bb = T(b) if lay[1] == "n" else b
            chk.run(f"fp8_gemm_{lay} {tag}", lambda: chk.compare(
                f"fp8_gemm_{lay} {tag}", jax.jit(fn)(aa, bb), O.gemm(aa, bb, None, lay),
                FP8_THRESHOLD))
        chk.run(f"fp8_gemm_nt {tag} per-row B, c, f32", lambda: chk.compare(
            f"fp8_gemm_nt {tag} per-row B, c, f32",
            jax.jit(lambda a, b, c: jg.fp8_gemm_nt(a, b, c=c))(a, b_row, c),
            O.gemm(a, b_row, c), FP8_THRESHOLD))
        xb, wb = x.astype(jnp.bfloat16), w.astype(jnp.bfloat16)
        for lay, fn in [("nt", jg.bf16_gemm_nt), ("nn", jg.bf16_gemm_nn),
                        ("tn", jg.bf16_gemm_tn), ("tt", jg.bf16_gemm_tt)]:
            aa = xb if lay[0] == "n" else xb.T
            bb = wb.T if lay[1] == "n" else wb
            chk.run(f"bf16_gemm_{lay} {tag}", lambda: chk.compare(
                f"bf16_gemm_{lay} {tag}", jax.jit(fn)(aa, bb), O.gemm(aa, bb, None, lay),
                BF16_THRESHOLD))

    # m-grouped contiguous: ragged, unaligned, empty groups, rows past the sum
    cont = [(200, 72, 256, [37, 0, 90, 1]), (64, 130, 300, [64])]
    if not quick:
        cont.append((100, 16, 128, [-5, 200, 10]))  # bad sizes: clamp semantics
    for (m, n, k, sizes) in cont:
        g = len(sizes)
        gs = jnp.asarray(sizes, jnp.int32)
        a = jg.per_token_cast_to_fp8(rand(m, k))
        b = jg.per_block_cast_to_fp8(rand(g, n, k))
        _, ends = O.bounds(sizes, m)
        zero = np.zeros((m, n), bool)
        zero[ends[-1]:] = True
        tag = f"M={m} N={n} K={k} sizes={sizes}"
        name = f"m_grouped_fp8_gemm_nt_contiguous {tag}"
        chk.run(name, lambda: chk.compare(
            name, jax.jit(jg.m_grouped_fp8_gemm_nt_contiguous)(a, b, gs),
            O.m_grouped_contiguous(a, b, sizes), FP8_THRESHOLD, zero))
        ab, bb = rand(m, k).astype(jnp.bfloat16), rand(g, n, k).astype(jnp.bfloat16)
        name = f"m_grouped_bf16_gemm_nt_contiguous {tag}"
        chk.run(name, lambda: chk.compare(
            name, jax.jit(jg.m_grouped_bf16_gemm_nt_contiguous)(ab, bb, gs),
            O.m_grouped_contiguous(ab, bb, sizes), BF16_THRESHOLD, zero))

    # m-grouped masked
    masked = [(3, 40, 72, 256, [0, 1, 40]), (2, 64, 130, 300, [17, 64])]
    for (g, m_max, n, k, mm) in masked:
        mmj = jnp.asarray(mm, jnp.int32)
        a = jg.per_token_cast_to_fp8(rand(g, m_max, k))
        b = jg.per_block_cast_to_fp8(rand(g, n, k))
        zero = np.zeros((g, m_max, n), bool)
        for i, v in enumerate(O.masked_sizes(mm, m_max)):
            zero[i, v:] = True
        tag = f"G={g} M_max={m_max} N={n} K={k} masked_m={mm}"
        name = f"m_grouped_fp8_gemm_nt_masked {tag}"
        chk.run(name, lambda: chk.compare(
            name, jax.jit(jg.m_grouped_fp8_gemm_nt_masked)(a, b, mmj),
            O.m_grouped_masked(a, b, mm), FP8_THRESHOLD, zero))
        ab, bb = bf(g, m_max, k), bf(g, n, k)
        name = f"m_grouped_bf16_gemm_nt_masked {tag}"
        chk.run(name, lambda: chk.compare(
            name, jax.jit(jg.m_grouped_bf16_gemm_nt_masked)(ab, bb, mmj),
            O.m_grouped_masked(ab, bb, mm), BF16_THRESHOLD, zero))

    # k-grouped (weight gradient): ragged K incl. an empty group, tokens past the sum
    kg = [(400, 72, 40, [130, 0, 1, 200])]
    if not quick:
        kg.append((256, 128, 136, [128, 128]))
    for (kt, m, n, sizes) in kg:
        g = len(sizes)
        gs = jnp.asarray(sizes, jnp.int32)
        x, y = rand(kt, m), rand(kt, n)
        a = jg.per_token_cast_to_fp8_grouped(x, gs)
        b = jg.per_token_cast_to_fp8_grouped(y, gs)
        c = rand(g, m, n)
        tag = f"K_total={kt} M={m} N={n} sizes={sizes}"
        name = f"k_grouped_fp8_gemm_tn_contiguous {tag} +c"
        chk.run(name, lambda: chk.compare(
            name, jax.jit(lambda a, b, c: jg.k_grouped_fp8_gemm_tn_contiguous(
                a, b, gs, c=c))(a, b, c),
            O.k_grouped(a, b, sizes, c), FP8_THRESHOLD))
        xb, yb = x.astype(jnp.bfloat16), y.astype(jnp.bfloat16)
        name = f"k_grouped_bf16_gemm_tn_contiguous {tag}"
        chk.run(name, lambda: chk.compare(
            name, jax.jit(lambda a, b: jg.k_grouped_bf16_gemm_tn_contiguous(
                a, b, gs))(xb, yb),
            O.k_grouped(xb, yb, sizes), BF16_THRESHOLD))

    # gradients (jax.grad of sum(D * W)): the BF16 backward GEMMs run on the
    # same path as the forward (kernels on Hopper), against the float64 oracle
    m, n, k, sizes = 100, 72, 136, [30, 0, 50]
    g = len(sizes)
    gs = jnp.asarray(sizes, jnp.int32)
    starts, ends = O.bounds(sizes, m)
    ab, bb, bg = bf(m, k), bf(n, k), bf(g, n, k)
    w = rand(m, n)
    w64, a64, b64, bg64 = O.to64(w), O.to64(ab), O.to64(bb), O.to64(bg)

    def grads(f, *args):
        return jax.jit(jax.grad(lambda *xs: jnp.sum(f(*xs).astype(jnp.float32) * w),
                                argnums=tuple(range(len(args)))))(*args)

    name = f"grad bf16_gemm_nt M={m} N={n} K={k}"

    def dense_grads():
        da, db = grads(lambda a, b: jg.bf16_gemm_nt(a, b), ab, bb)
        chk.compare(name + " dA", da, w64 @ b64, BF16_THRESHOLD)
        chk.compare(name + " dB", db, w64.T @ a64, BF16_THRESHOLD)
    chk.run(name, dense_grads)
    name = f"grad m_grouped_bf16_gemm_nt_contiguous M={m} sizes={sizes}"

    def grouped_grads():
        da, db = grads(lambda a, b: jg.m_grouped_bf16_gemm_nt_contiguous(a, b, gs), ab, bg)
        ra, rb = np.zeros((m, k)), np.zeros((g, n, k))
        for j, (st, en) in enumerate(zip(starts, ends)):
            ra[st:en] = w64[st:en] @ bg64[j]
            rb[j] = w64[st:en].T @ a64[st:en]
        zero = np.zeros((m, k), bool)
        zero[ends[-1]:] = True
        chk.compare(name + " dA", da, ra, BF16_THRESHOLD, zero)
        chk.compare(name + " dB", db, rb, BF16_THRESHOLD)
    chk.run(name, grouped_grads)

    # quantization round trips: elementwise e4m3 bound
    def _roundtrip(name, x, deq, scale_full):
        x64, d64 = O.to64(x), O.to64(deq)
        bound = 2.0 ** -4 * np.abs(x64) + 2.0 ** -10 * O.to64(scale_full) + 1e-30
        ok = bool(np.all(np.abs(d64 - x64) <= bound * (1 + 1e-6)))
        chk.record(name, ok and np.all(np.isfinite(d64)), O.diff(d64, x64),
                   O.max_abs(d64, x64), "" if ok else "exceeds the e4m3 rounding bound")

    x = rand(70, 300)
    for ue8m0 in (False, True):
        q = jg.per_token_cast_to_fp8(x, use_ue8m0=ue8m0)
        chk.run(f"per_token_cast_to_fp8 round trip ue8m0={ue8m0}", lambda: _roundtrip(
            f"per_token_cast_to_fp8 round trip [70,300] ue8m0={ue8m0}", x,
            jg.dequantize(*q), O.dequant(np.ones(x.shape, np.float32), q[1])))
    w = rand(2, 130, 300)
    q = jg.per_block_cast_to_fp8(w)
    chk.run("per_block_cast_to_fp8 round trip", lambda: _roundtrip(
        "per_block_cast_to_fp8 round trip [2,130,300]", w, jg.dequantize(*q),
        O.dequant(np.ones(w.shape, np.float32), q[1])))
    sizes = [130, 0, 1, 200]
    xg = rand(400, 24)
    q = jg.per_token_cast_to_fp8_grouped(xg, jnp.asarray(sizes, jnp.int32))
    rows = O.k_grouped_rows(sizes, 400)
    sfull = np.where(rows[:, None] >= 0, O.to64(q[1])[np.maximum(rows, 0)], 0.0)
    xg_in = np.where(rows[:, None] >= 0, O.to64(xg), 0.0)
    chk.run("per_token_cast_to_fp8_grouped round trip", lambda: _roundtrip(
        "per_token_cast_to_fp8_grouped round trip [400,24]", xg_in,
        jg.dequantize_k_grouped(*q, jnp.asarray(sizes, jnp.int32)), sfull))

    _line(f"self-check: {chk.count - chk.failures}/{chk.count} passed")
    return chk.failures


# ------------------------------------------------------------------ benchmark

BENCH_SHAPES = [(64, 2112, 7168), (128, 7168, 2048), (4096, 7168, 2048),
                (4096, 4096, 7168)]


def _time(fn, inputs, runs: int = 20) -> float:
    """Median kernel time of one call (seconds), from the profiler (_timing)."""
    from jaxgemm import _timing

    return _timing.time_op(fn, inputs, reps=runs)["us"] * 1e-6


def bench(quick: bool = False) -> None:
    import jax
    import jax.numpy as jnp

    import jaxgemm as jg
    from jaxgemm import _primitive

    choice, _ = _primitive.select_impl("fp8_gemm_nt")
    _line(f"speed table (fp8_gemm_nt via the {choice} path; median kernel time of 20 "
          "jitted calls over 4 distinct inputs)")
    _line(f"{'M x N x K':>20s} {'jaxgemm us':>11s} {'TFLOPS':>7s} {'XLA fp8 us':>11s} "
          f"{'TFLOPS':>7s} {'XLA bf16 us':>12s} {'TFLOPS':>7s} {'vs fp8':>7s} "
          f"{'vs bf16':>7s}")
    f_jg = jax.jit(jg.fp8_gemm_nt)
    dn = (((1,), (1,)), ((), ()))
    f_xla8 = jax.jit(lambda a, b: jax.lax.dot_general(
        a, b, dn, preferred_element_type=jnp.float32))
    f_bf16 = jax.jit(lambda a, b: jnp.dot(a, b.T))
    shapes = BENCH_SHAPES[:2] if quick else BENCH_SHAPES
    key = jax.random.PRNGKey(0)
    for (m, n, k) in shapes:
        ins_jg, ins_8, ins_16 = [], [], []
        for _ in range(4):
            key, k1, k2 = jax.random.split(key, 3)
            x = jax.random.normal(k1, (m, k), jnp.bfloat16)
            w = jax.random.normal(k2, (n, k), jnp.bfloat16)
            a, b = jg.per_token_cast_to_fp8(x), jg.per_block_cast_to_fp8(w)
            ins_jg.append((a, b))
            ins_8.append((a[0], b[0]))
            ins_16.append((x, w))
        t_jg = _time(f_jg, ins_jg)
        t_8 = _time(f_xla8, ins_8)
        t_16 = _time(f_bf16, ins_16)
        fl = 2.0 * m * n * k
        _line(f"{f'{m}x{n}x{k}':>20s} {t_jg * 1e6:11.1f} {fl / t_jg / 1e12:7.1f} "
              f"{t_8 * 1e6:11.1f} {fl / t_8 / 1e12:7.1f} {t_16 * 1e6:12.1f} "
              f"{fl / t_16 / 1e12:7.1f} {t_8 / t_jg:6.2f}x {t_16 / t_jg:6.2f}x")


#: (label, groups, rows per group, N, K) of the grouped speed rows.
GROUPED_BENCH = {"contiguous": (8, 4096, 4096, 7168), "masked": (32, 1024, 4096, 7168),
                 "k_grouped": (4, 4096, 7168, 4096)}


def bench_grouped(quick: bool = False, shapes=None) -> None:
    """MoE rows: each grouped kernel against what XLA offers for the same work."""
    import jax
    import jax.numpy as jnp

    import jaxgemm as jg

    shapes = dict(shapes or GROUPED_BENCH)
    if quick:
        shapes = {"contiguous": shapes["contiguous"]}
    bf = jnp.bfloat16
    key = jax.random.PRNGKey(1)
    _line("grouped speed table (median kernel time; TFLOPS count the real rows)")
    _line(f"{'op':>12s} {'G x rows x N x K':>22s} {'jaxgemm us':>11s} {'TFLOPS':>7s} "
          f"{'XLA peer':>24s} {'us':>9s} {'TFLOPS':>7s} {'speed-up':>8s}")

    def row(label, shape, flops, t_jg, peer, t_peer):
        _line(f"{label:>12s} {shape:>22s} {t_jg * 1e6:11.1f} {flops / t_jg / 1e12:7.1f} "
              f"{peer:>24s} {t_peer * 1e6:9.1f} {flops / t_peer / 1e12:7.1f} "
              f"{t_peer / t_jg:7.2f}x")

    if "contiguous" in shapes:
        g, r, n, k = shapes["contiguous"]
        x = jax.random.normal(key, (g * r, k), bf)
        w = jax.random.normal(jax.random.fold_in(key, 1), (g, n, k), bf)
        a, b = jg.per_token_cast_to_fp8(x), jg.per_block_cast_to_fp8_grouped(w)
        gs = jnp.full((g,), r, jnp.int32)
        t_jg = _time(jax.jit(jg.m_grouped_fp8_gemm_nt_contiguous), [(a, b, gs)])
        wt = jnp.swapaxes(w, 1, 2)
        t_x = _time(jax.jit(jax.lax.ragged_dot), [(x, wt, gs)])
        row("contiguous", f"{g}x{r}x{n}x{k}", 2.0 * g * r * n * k, t_jg,
            "ragged_dot bf16", t_x)
    if "masked" in shapes:
        g, r, n, k = shapes["masked"]
        em = max(1, r // 5)
        x = jax.random.normal(key, (g, r, k), bf)
        w = jax.random.normal(jax.random.fold_in(key, 2), (g, n, k), bf)
        a, b = jg.per_token_cast_to_fp8(x), jg.per_block_cast_to_fp8_grouped(w)
        mm = jnp.full((g,), em, jnp.int32)
        f = jax.jit(lambda a, b, s: jg.m_grouped_fp8_gemm_nt_masked(
            a, b, s, expected_m=em, zero_masked_rows=False))
        t_jg = _time(f, [(a, b, mm)])
        t_x = _time(jax.jit(lambda p, q: jnp.einsum("gmk,gnk->gmn", p, q)), [(x, w)])
        row("masked", f"{g}x{em}/{r}x{n}x{k}", 2.0 * g * em * n * k, t_jg,
            "einsum bf16 (all rows)", t_x)
    if "k_grouped" in shapes:
        g, m, n, kpg = shapes["k_grouped"]
        gs = jnp.full((g,), kpg, jnp.int32)
        x = jax.random.normal(key, (g * kpg, m), bf)
        y = jax.random.normal(jax.random.fold_in(key, 3), (g * kpg, n), bf)
        a = jg.per_token_cast_to_fp8_grouped(x, gs)
        b = jg.per_token_cast_to_fp8_grouped(y, gs)
        t_jg = _time(jax.jit(jg.k_grouped_fp8_gemm_tn_contiguous), [(a, b, gs)])
        dn = jax.lax.RaggedDotDimensionNumbers(
            dot_dimension_numbers=(((0,), (0,)), ((), ())), lhs_ragged_dimensions=[0],
            rhs_group_dimensions=[])
        t_x = _time(jax.jit(lambda p, q, s: jax.lax.ragged_dot_general(
            p, q, s, dn, preferred_element_type=jnp.float32)), [(x, y, gs)])
        row("k_grouped", f"{g}x{m}x{n}x{kpg}", 2.0 * g * kpg * m * n, t_jg,
            "ragged_dot_general bf16", t_x)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m jaxgemm", description=__doc__)
    p.add_argument("--quick", action="store_true", help="fewer shapes")
    p.add_argument("--no-bench", action="store_true", help="skip the speed table")
    args = p.parse_args(argv)

    from jaxgemm import _backend

    report_environment()
    _line()
    failures = self_check(quick=args.quick)
    _line()
    if not _backend.hopper_available():
        _line("kernels need a Hopper GPU (sm_90); ran the reference path")
    elif args.no_bench:
        _line("speed table skipped (--no-bench)")
    else:
        try:
            bench(quick=args.quick)
            _line()
            bench_grouped(quick=args.quick)
        except Exception as e:  # noqa: BLE001
            _line(f"speed table failed: {type(e).__name__}: {e}")
            failures += 1
    if failures:
        _line(f"FAILED: {failures} self-check(s)")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
