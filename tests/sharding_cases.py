"""Sharding checks run on 8 simulated CPU devices (used by tests/test_sharding.py).

``python tests/sharding_cases.py OUT.json [CASE ...]`` sets
``--xla_force_host_platform_device_count=8`` *before* importing jax, runs the
cases (all by default) and writes ``{case: {"ok": bool, "msg": str}}``.  Each
case compares a sharded ``jax.jit`` run with the unsharded run of the same op
(the float32 reference path) and, where it says so, inspects the compiled
(partitioned) HLO.  Importing this module does not start jax's backends.
"""
from __future__ import annotations

import itertools
import json
import os
import re
import sys
import time
import traceback
import warnings

N_DEVICES = 8
CASES = {}


def case(fn):
    CASES[fn.__name__] = fn
    return fn


# ------------------------------------------------------------------ helpers

_COLL_RE = re.compile(
    r"^\s*(?:ROOT\s+)?%\S+\s*=\s*(.*?)\s+"
    r"(all-gather|all-reduce|reduce-scatter|all-to-all|collective-permute)(?:-start)?\(")
_SHAPE_RE = re.compile(r"\b[a-z]+\d*[a-z0-9]*\[([\d,]*)\]")


def collectives(hlo: str):
    """``[(kind, [dims, ...])]`` of the collective instructions of an HLO module text."""
    out = []
    for line in hlo.splitlines():
        m = _COLL_RE.match(line)
        if m:
            dims = [tuple(int(v) for v in s.split(",") if v)
                    for s in _SHAPE_RE.findall(m.group(1))]
            out.append((m.group(2), dims))
    return out


def gathered_versions(global_shape, local_shape):
    """Shapes a (partly) all-gathered copy of a sharded array would have."""
    opts = [{lo, gl} for lo, gl in zip(local_shape, global_shape)]
    return {tuple(c) for c in itertools.product(*opts)} - {tuple(local_shape)}


def assert_no_gather_of(hlo, arrays):
    """No all-gather in ``hlo`` whose result is a gathered copy of one of ``arrays``."""
    bad = set()
    for a in arrays:
        local = a.sharding.shard_shape(a.shape)
        bad |= gathered_versions(a.shape, local)
    hits = [(k, d) for k, dims in collectives(hlo) if k == "all-gather"
            for d in dims if d in bad]
    assert not hits, f"weight all-gathered: {hits}"


def kinds(hlo):
    return sorted({k for k, _ in collectives(hlo)})


def close(out, ref, rtol=1e-5):
    import numpy as np

    out = np.asarray(out, np.float64)
    ref = np.asarray(ref, np.float64)
    assert out.shape == ref.shape, (out.shape, ref.shape)
    scale = max(float(np.max(np.abs(ref))), 1e-30)
    err = float(np.max(np.abs(out - ref))) / scale
    assert err <= rtol, f"relative max error {err:.3g} > {rtol:.1g}"
    return err


_ENV = {}


def env():
    if not _ENV:
        import jax
        import numpy as np
        from jax.sharding import NamedSharding
        from jax.sharding import PartitionSpec as P

        assert jax.device_count() == N_DEVICES, jax.devices()
        auto = jax.sharding.AxisType.Auto
        _ENV["mesh"] = jax.make_mesh((2, 4), ("x", "y"), axis_types=(auto, auto))
        _ENV["mesh8"] = jax.make_mesh((8,), ("e",), axis_types=(auto,))
        _ENV["rng"] = np.random.default_rng(0)
        _ENV["NS"], _ENV["P"] = NamedSharding, P
    return _ENV


def rand(*shape, dtype=None):
    import jax.numpy as jnp

    x = jnp.asarray(env()["rng"].standard_normal(shape).astype("float32"))
    return x if dtype is None else x.astype(dtype)


def put(x, *spec, mesh=None):
    """``jax.device_put`` with ``P(*spec)``; an FP8 pair gets the same spec twice."""
    import jax

    e = env()
    sh = e["NS"](mesh or e["mesh"], e["P"](*spec))
    if isinstance(x, tuple):
        return tuple(jax.device_put(v, sh) for v in x)
    return jax.device_put(x, sh)


def jit_check(fn, args, sharded_args, rtol=1e-5, out_shardings=None):
    """Unsharded vs sharded run of ``fn``; returns ``(out, compiled_hlo_text)``."""
    import jax

    ref = jax.jit(fn)(*args)
    f = jax.jit(fn, out_shardings=out_shardings)
    out = f(*sharded_args)
    for o, r in zip(jax.tree.leaves(out), jax.tree.leaves(ref)):
        close(o, r, rtol)
    return out, f.lower(*sharded_args).compile().as_text()


def fp8_pair_spec(spec_data, spec_scale=None):
    return spec_data, (spec_data if spec_scale is None else spec_scale)


# ------------------------------------------------------------------ dense


def _dense_inputs(m=64, n=1024, k=1024, per_row=False):
    import jaxgemm as jg

    a = jg.per_token_cast_to_fp8(rand(m, k))
    b = jg.per_token_cast_to_fp8(rand(n, k)) if per_row else jg.per_block_cast_to_fp8(rand(n, k))
    return a, b


def _gemm_f32(a, b):
    import jax.numpy as jnp

    import jaxgemm as jg

    return jg.fp8_gemm_nt(a, b, out_dtype=jnp.float32)


@case
def dense_fp8_m_data_parallel():
    a, b = _dense_inputs()
    _, hlo = jit_check(_gemm_f32, (a, b), (put(a, "x", None), b))
    assert kinds(hlo) == [], kinds(hlo)


@case
def dense_fp8_n_column_parallel():
    a, b = _dense_inputs()
    bs = put(b, ("x", "y"), None)
    out, hlo = jit_check(_gemm_f32, (a, b), (a, bs))
    assert kinds(hlo) == [], f"column TP needs no collective; got {collectives(hlo)}"
    assert_no_gather_of(hlo, bs)
    assert out.sharding.spec[1] == ("x", "y"), out.sharding


@case
def dense_fp8_k_row_parallel():
    a, b = _dense_inputs()
    as_, bs = put(a, None, "y"), put(b, None, "y")
    _, hlo = jit_check(_gemm_f32, (a, b), (as_, bs))
    assert_no_gather_of(hlo, bs)
    assert "all-reduce" in kinds(hlo) or "reduce-scatter" in kinds(hlo), collectives(hlo)
    assert "all-gather" not in kinds(hlo), collectives(hlo)


@case
def dense_fp8_m_and_n_2d():
    a, b = _dense_inputs()
    bs = put(b, "y", None)
    out, hlo = jit_check(_gemm_f32, (a, b), (put(a, "x", None), bs))
    assert kinds(hlo) == [], collectives(hlo)
    assert tuple(out.sharding.spec) == ("x", "y"), out.sharding


@case
def dense_fp8_m_and_k_2d():
    a, b = _dense_inputs()
    bs = put(b, None, "y")
    _, hlo = jit_check(_gemm_f32, (a, b), (put(a, "x", "y"), bs))
    assert_no_gather_of(hlo, bs)
    assert kinds(hlo) == ["all-reduce"], collectives(hlo)


@case
def dense_fp8_n_and_k_2d():
    a, b = _dense_inputs()
    bs = put(b, "x", "y")
    _, hlo = jit_check(_gemm_f32, (a, b), (put(a, None, "y"), bs))
    assert_no_gather_of(hlo, bs)
    assert "all-reduce" in kinds(hlo), collectives(hlo)


@case
def dense_fp8_k_with_c_and_bf16_out():
    import jax.numpy as jnp

    import jaxgemm as jg

    a, b = _dense_inputs()
    c = rand(64, 1024)
    as_, bs = put(a, None, ("x", "y")), put(b, None, ("x", "y"))
    # C is added once, after the psum of the float32 partial products.
    _, hlo = jit_check(lambda a, b, c: jg.fp8_gemm_nt(a, b, c=c), (a, b, c), (as_, bs, c))
    assert_no_gather_of(hlo, bs)
    # bfloat16 output: the partials are summed in float32, then cast (<= 1 bf16 ulp).
    jit_check(lambda a, b: jg.fp8_gemm_nt(a, b).astype(jnp.float32), (a, b), (as_, bs),
              rtol=2.0 ** -7)


@case
def dense_fp8_per_row_scale_any_n():
    # per-row B scales [N, ceil(K/128)] follow N: any N split works (64 rows/device)
    a, b = _dense_inputs(n=512, per_row=True)
    bs = put(b, ("x", "y"), None)
    _, hlo = jit_check(_gemm_f32, (a, b), (a, bs))
    assert kinds(hlo) == [], collectives(hlo)


@case
def dense_fp8_nn_layout_weight_kn():
    import jax.numpy as jnp

    import jaxgemm as jg

    a, b = _dense_inputs()
    w = (b[0].T, b[1].T)  # [K, N] storage, N sharded
    ws = put(w, None, "y")
    _, hlo = jit_check(lambda a, w: jg.fp8_gemm_nn(a, w, out_dtype=jnp.float32), (a, w),
                       (put(a, "x", None), ws))
    assert_no_gather_of(hlo, ws)


@case
def dense_bf16_n_and_k():
    import jax.numpy as jnp

    import jaxgemm as jg

    a, b = rand(64, 512, dtype=jnp.bfloat16), rand(256, 512, dtype=jnp.bfloat16)
    bs = put(b, "x", "y")
    _, hlo = jit_check(lambda a, b: jg.bf16_gemm_nt(a, b, out_dtype=jnp.float32), (a, b),
                       (put(a, None, "y"), bs))
    assert_no_gather_of(hlo, bs)
    assert "all-reduce" in kinds(hlo), collectives(hlo)


@case
def misaligned_k_is_replicated_with_warning():
    from jaxgemm.sharding import ShardingFallbackWarning

    a, b = _dense_inputs(n=256, k=384)  # 384 / 2 = 192: a shard boundary inside a block
    with warnings.catch_warnings(record=True) as rec:
        warnings.simplefilter("always")
        # only the data is split (its 3-block scale can't be, evenly)
        sharded = ((put(a[0], None, "x"), a[1]), (put(b[0], None, "x"), b[1]))
        _, hlo = jit_check(_gemm_f32, (a, b), sharded)
    msgs = [str(w.message) for w in rec if issubclass(w.category, ShardingFallbackWarning)]
    assert msgs and "'k'" in msgs[0] and "128" in msgs[0], [str(w.message) for w in rec]
    assert "all-gather" in kinds(hlo), collectives(hlo)  # K gathered instead


@case
def misaligned_n_per_block_is_replicated_with_warning():
    from jaxgemm.sharding import ShardingFallbackWarning

    a, b = _dense_inputs(n=384, k=256)  # N = 3 blocks over 2 devices
    bs = (put(b[0], "x", None), b[1])
    with warnings.catch_warnings(record=True) as rec:
        warnings.simplefilter("always")
        jit_check(_gemm_f32, (a, b), (a, bs))
    msgs = [str(w.message) for w in rec if issubclass(w.category, ShardingFallbackWarning)]
    assert msgs and "'n'" in msgs[0], [str(w.message) for w in rec]


@case
def k_not_multiple_of_128_stays_correct():
    a, b = _dense_inputs(n=256, k=200)  # K can't be split at all (need replication)
    jit_check(_gemm_f32, (a, b), (put(a, None, "x"), put(b, None, "x")))


@case
def partitioning_off_gathers_the_weight():
    import jaxgemm.sharding as jsh

    a, b = _dense_inputs()
    bs = put(b, ("x", "y"), None)
    with jsh.partitioning(False):
        _, hlo = jit_check(_gemm_f32, (a, b), (a, bs))
    try:
        assert_no_gather_of(hlo, bs)
    except AssertionError:
        return  # expected: without the rules XLA gathers B
    raise AssertionError("expected an all-gather of B with partitioning off")


@case
def vmap_of_sharded_dense():
    import jax
    import jax.numpy as jnp

    import jaxgemm as jg

    a = jg.per_token_cast_to_fp8(rand(4, 32, 512))
    _, b = _dense_inputs(k=512)
    bs = put(b, "y", None)
    f = jax.vmap(lambda a, b: jg.fp8_gemm_nt(a, b, out_dtype=jnp.float32), in_axes=(0, None))
    _, hlo = jit_check(f, (a, b), (put(a, "x"), bs))
    assert_no_gather_of(hlo, bs)


@case
def explicit_axes_mesh_dense():
    import jax

    mesh = jax.make_mesh((2, 4), ("x", "y"), axis_types=(jax.sharding.AxisType.Explicit,) * 2)
    a, b = _dense_inputs()
    ref = jax.jit(_gemm_f32)(a, b)
    out = jax.jit(_gemm_f32)(put(a, "x", None, mesh=mesh), put(b, "y", None, mesh=mesh))
    close(out, ref)


# ------------------------------------------------------------------ grouped


_GS = [10, 0, 20, 5, 30, 1, 7, 13]  # sum 86 of M = 96 rows; an empty group


def _m_contig_inputs(m=96, n=512, k=512, g=8):
    import jax.numpy as jnp

    import jaxgemm as jg

    a = jg.per_token_cast_to_fp8(rand(m, k))
    b = jg.per_block_cast_to_fp8(rand(g, n, k))
    return a, b, jnp.asarray(_GS[:g], jnp.int32)


def _m_contig(a, b, gs):
    import jax.numpy as jnp

    import jaxgemm as jg

    return jg.m_grouped_fp8_gemm_nt_contiguous(a, b, gs, out_dtype=jnp.float32)


def _only_group_size_gathers(hlo, g):
    gathers = [d for k, dims in collectives(hlo) if k == "all-gather" for d in dims]
    assert all(d == (g,) for d in gathers), f"unexpected all-gathers {gathers}"


@case
def m_grouped_fp8_expert_parallel():
    a, b, gs = _m_contig_inputs()
    bs = put(b, "e", None, None, mesh=env()["mesh8"])
    gss = put(gs, "e", mesh=env()["mesh8"])
    _, hlo = jit_check(_m_contig, (a, b, gs), (a, bs, gss))
    assert_no_gather_of(hlo, bs)
    _only_group_size_gathers(hlo, 8)
    assert "all-reduce" in kinds(hlo) or "reduce-scatter" in kinds(hlo), collectives(hlo)


@case
def m_grouped_fp8_expert_and_data_parallel():
    a, b, gs = _m_contig_inputs()
    bs = put(b, "y", None, None)
    _, hlo = jit_check(_m_contig, (a, b, gs), (put(a, "x", None), bs, put(gs, "y")))
    assert_no_gather_of(hlo, bs)
    _only_group_size_gathers(hlo, 8)


@case
def m_grouped_fp8_rows_only():
    a, b, gs = _m_contig_inputs()
    _, hlo = jit_check(_m_contig, (a, b, gs), (put(a, ("x", "y"), None), b, gs))
    assert kinds(hlo) == [], collectives(hlo)


@case
def m_grouped_fp8_n_and_k():
    a, b, gs = _m_contig_inputs()
    bs = put(b, None, "x", "y")
    _, hlo = jit_check(_m_contig, (a, b, gs), (put(a, None, "y"), bs, gs))
    assert_no_gather_of(hlo, bs)


@case
def m_grouped_bf16_expert_parallel_and_k():
    import jax.numpy as jnp

    import jaxgemm as jg

    a, b = rand(96, 256, dtype=jnp.bfloat16), rand(8, 128, 256, dtype=jnp.bfloat16)
    gs = jnp.asarray(_GS, jnp.int32)
    bs = put(b, "x", None, "y")
    _, hlo = jit_check(
        lambda a, b, gs: jg.m_grouped_bf16_gemm_nt_contiguous(a, b, gs, out_dtype=jnp.float32),
        (a, b, gs), (put(a, None, "y"), bs, gs))
    assert_no_gather_of(hlo, bs)


def _masked_inputs(g=8, mx=64, n=512, k=512):
    import jax.numpy as jnp

    import jaxgemm as jg

    a = jg.per_token_cast_to_fp8(rand(g, mx, k))
    b = jg.per_block_cast_to_fp8(rand(g, n, k))
    mm = jnp.asarray([10, 0, 64, 5, 30, 1, 70, 13], jnp.int32)  # 70 > M_max: clipped
    return a, b, mm


def _masked(a, b, mm):
    import jax.numpy as jnp

    import jaxgemm as jg

    return jg.m_grouped_fp8_gemm_nt_masked(a, b, mm, out_dtype=jnp.float32)


@case
def masked_fp8_groups_and_rows():
    a, b, mm = _masked_inputs()
    bs = put(b, "x", None, None)
    _, hlo = jit_check(_masked, (a, b, mm), (put(a, "x", "y", None), bs, put(mm, "x")))
    assert kinds(hlo) == [], collectives(hlo)


@case
def masked_fp8_n_and_k():
    a, b, mm = _masked_inputs()
    bs = put(b, None, "x", "y")
    _, hlo = jit_check(_masked, (a, b, mm), (put(a, None, None, "y"), bs, mm))
    assert_no_gather_of(hlo, bs)
    assert "all-reduce" in kinds(hlo), collectives(hlo)


@case
def masked_bf16_groups():
    import jax.numpy as jnp

    import jaxgemm as jg

    a, b = rand(8, 32, 256, dtype=jnp.bfloat16), rand(8, 128, 256, dtype=jnp.bfloat16)
    mm = jnp.asarray([3, 0, 32, 5, 30, 1, 7, 13], jnp.int32)
    bs = put(b, "e", None, None, mesh=env()["mesh8"])
    _, hlo = jit_check(
        lambda a, b, mm: jg.m_grouped_bf16_gemm_nt_masked(a, b, mm, out_dtype=jnp.float32),
        (a, b, mm), (put(a, "e", mesh=env()["mesh8"]), bs, put(mm, "e", mesh=env()["mesh8"])))
    assert kinds(hlo) == [], collectives(hlo)


def _k_inputs(t=512, m=256, n=128):
    import jax.numpy as jnp

    import jaxgemm as jg

    gs = jnp.asarray([100, 0, 60, 129, 30, 1, 70, 13], jnp.int32)
    x, dy = rand(t, m), rand(t, n)
    return (jg.per_token_cast_to_fp8_grouped(x, gs), jg.per_token_cast_to_fp8_grouped(dy, gs),
            gs, rand(8, m, n), x, dy)


@case
def k_grouped_fp8_groups_on_output():
    import jaxgemm as jg

    a, b, gs, c, _, _ = _k_inputs()
    f = lambda a, b, gs, c: jg.k_grouped_fp8_gemm_tn_contiguous(a, b, gs, c=c)  # noqa: E731
    out, hlo = jit_check(f, (a, b, gs, c), (a, b, gs, put(c, "y", "x", None)))
    assert out.sharding.spec[0] == "y", out.sharding
    _only_group_size_gathers(hlo, 8)
    # G split 8 ways, M and N too, without C: the output sharding decides.
    mesh = env()["mesh"]
    jit_check(lambda a, b, gs: jg.k_grouped_fp8_gemm_tn_contiguous(a, b, gs), (a, b, gs),
              (put(a, None, "x"), put(b, None, "y"), gs),
              out_shardings=env()["NS"](mesh, env()["P"](None, "x", "y")))


@case
def k_grouped_bf16_tokens_and_groups():
    import jax.numpy as jnp

    import jaxgemm as jg

    _, _, gs, c, x, dy = _k_inputs()
    xb, dyb = x.astype(jnp.bfloat16), dy.astype(jnp.bfloat16)
    f = lambda a, b, gs, c: jg.k_grouped_bf16_gemm_tn_contiguous(a, b, gs, c=c)  # noqa: E731
    _, hlo = jit_check(f, (xb, dyb, gs, c), (put(xb, "x", None), put(dyb, "x", None), gs,
                                             put(c, "y", None, None)))
    assert "all-reduce" in kinds(hlo), collectives(hlo)  # token partial sums


# ------------------------------------------------------------------ training ops


def _grads(loss, argnums):
    import jax

    return jax.value_and_grad(loss, argnums=argnums)


@case
def fp8_linear_grads_data_and_column_parallel():
    import jax.numpy as jnp

    import jaxgemm as jg

    x, w, ct = rand(512, 512), rand(512, 1024) * 0.05, rand(512, 1024)
    f = _grads(lambda x, w, ct: jnp.sum(jg.fp8_linear(x, w) * ct), (0, 1))
    ws = put(w, None, "y")
    out, hlo = jit_check(f, (x, w, ct), (put(x, "x", None), ws, put(ct, "x", "y")))
    assert_no_gather_of(hlo, ws)
    assert "all-gather" not in kinds(hlo), collectives(hlo)
    assert tuple(out[1][1].sharding.spec) == (None, "y"), out[1][1].sharding  # dW stays split


@case
def fp8_linear_grads_row_parallel():
    import jax.numpy as jnp

    import jaxgemm as jg

    x, w, ct = rand(512, 1024), rand(1024, 512) * 0.05, rand(512, 512)
    f = _grads(lambda x, w, ct: jnp.sum(jg.fp8_linear(x, w) * ct), (0, 1))
    ws = put(w, "y", None)
    _, hlo = jit_check(f, (x, w, ct), (put(x, "x", "y"), ws, put(ct, "x", None)))
    assert_no_gather_of(hlo, ws)
    assert "all-gather" not in kinds(hlo), collectives(hlo)
    assert "all-reduce" in kinds(hlo), collectives(hlo)


@case
def fp8_ragged_dot_grads_expert_parallel():
    import jax.numpy as jnp

    import jaxgemm as jg

    x, w, ct = rand(256, 256), rand(8, 256, 256) * 0.05, rand(256, 256)
    gs = jnp.asarray([10, 0, 60, 5, 30, 1, 70, 13], jnp.int32)
    f = _grads(lambda x, w, ct, gs: jnp.sum(jg.fp8_ragged_dot(x, w, gs) * ct), (0, 1))
    ws = put(w, "y", None, None)
    mesh = env()["mesh"]
    ns, p = env()["NS"], env()["P"]
    out_sh = (ns(mesh, p()), (ns(mesh, p("x", None)), ns(mesh, p("y", None, None))))
    out, hlo = jit_check(f, (x, w, ct, gs), (put(x, "x", None), ws, put(ct, "x", None),
                                             put(gs, "y")), out_shardings=out_sh)
    assert_no_gather_of(hlo, ws)


@case
def flax_fp8_moe_experts_over_8_devices():
    import jax
    import jax.numpy as jnp
    from flax import nnx

    from jaxgemm.flax import Fp8MoE

    moe = Fp8MoE(128, 128, 8, num_experts_per_tok=2, rngs=nnx.Rngs(0))
    graphdef, params = nnx.split(moe)
    x = rand(128, 128)

    def loss(params, x):
        y, aux = nnx.merge(graphdef, params)(x)
        return jnp.mean(y * y) + 1e-2 * aux

    mesh8 = env()["mesh8"]
    ns, p = env()["NS"], env()["P"]
    p_sh = jax.tree.map(lambda a: ns(mesh8, p("e") if a.ndim == 3 else p()), params)
    sparams = jax.device_put(params, p_sh)
    f = jax.value_and_grad(loss)
    # A chain of FP8 GEMMs: a float32 rounding difference upstream (psum order)
    # can flip the FP8 rounding of a requantized intermediate, hence 2e-3.
    out, hlo = jit_check(f, (params, x), (sparams, x), rtol=2e-3,
                         out_shardings=(ns(mesh8, p()), p_sh))
    experts = [a for a in jax.tree.leaves(sparams) if a.ndim == 3]
    assert len(experts) == 3
    assert_no_gather_of(hlo, experts)


# ------------------------------------------------------------------ sub-axis shardings
# A weight split 64 columns per device (8 devices): the shard boundary is inside
# a 128-block, and the in-jit quantizer's reshape makes Shardy shard the scales
# over a *sub-axis* ("e":(1)4), which no PartitionSpec can express.  jax used to
# fail decoding it (IndivisibleError) before jaxgemm's partition callback ran.


def _fallback_msgs(rec):
    from jaxgemm.sharding import ShardingFallbackWarning

    return [str(w.message) for w in rec if issubclass(w.category, ShardingFallbackWarning)]


@case
def subaxis_scales_of_64_wide_shards_fall_back():
    import jax.numpy as jnp

    import jaxgemm as jg

    mesh8 = env()["mesh8"]
    a, b = rand(32, 512), rand(512, 512)  # A split on K, B on N: 64 per device each

    def f(a, b):
        return jg.fp8_gemm_nt(jg.per_token_cast_to_fp8(a), jg.per_block_cast_to_fp8(b),
                              out_dtype=jnp.float32)

    with warnings.catch_warnings(record=True) as rec:
        warnings.simplefilter("always")
        jit_check(f, (a, b), (put(a, None, "e", mesh=mesh8), put(b, "e", None, mesh=mesh8)))
    msgs = _fallback_msgs(rec)
    assert any("'k'" in m and "128" in m for m in msgs), msgs
    assert any("'n'" in m and "128" in m for m in msgs), msgs


@case
def fp8_linear_grads_64_columns_per_device():
    import jax.numpy as jnp

    import jaxgemm as jg

    mesh8 = env()["mesh8"]
    x, w, ct = rand(32, 128), rand(128, 512) * 0.05, rand(32, 512)
    f = _grads(lambda x, w, ct: jnp.sum(jg.fp8_linear(x, w) * ct), (0, 1))
    with warnings.catch_warnings(record=True) as rec:
        warnings.simplefilter("always")
        out, _ = jit_check(f, (x, w, ct), (x, put(w, None, "e", mesh=mesh8),
                                           put(ct, None, "e", mesh=mesh8)))
    msgs = _fallback_msgs(rec)
    assert any("'n'" in m for m in msgs), msgs          # forward: N = 512 over 8
    assert any("'k'" in m for m in msgs), msgs          # dgrad: contraction N over 8
    assert any("sub-axes" in m for m in msgs), msgs     # the scales' sub-axis, named


# ------------------------------------------------------------------ explicit mesh axes
# jax.make_mesh creates Explicit axes by default: shardings are part of the
# array types, and the quantizers' block reshapes must name their result's
# sharding (jaxgemm/_explicit.py).


def _explicit_mesh():
    import jax

    return jax.make_mesh((2, 4), ("x", "y"),
                         axis_types=(jax.sharding.AxisType.Explicit,) * 2)


@case
def explicit_axes_fp8_linear_grads():
    import jax.numpy as jnp

    import jaxgemm as jg

    mesh = _explicit_mesh()
    f = _grads(lambda x, w, ct: jnp.sum(jg.fp8_linear(x, w) * ct), (0, 1))
    # column parallel, row parallel (K split), and a 3-D activation [B, S, D]
    for xs, ws, cs, shp in (((("x", None)), (None, "y"), ("x", "y"), (512, 512, 1024)),
                            ((("x", "y")), ("y", None), ("x", None), (512, 1024, 512))):
        m, k, n = shp
        x, w, ct = rand(m, k), rand(k, n) * 0.05, rand(m, n)
        out, hlo = jit_check(f, (x, w, ct), (put(x, *xs, mesh=mesh), put(w, *ws, mesh=mesh),
                                             put(ct, *cs, mesh=mesh)))
        assert "all-gather" not in kinds(hlo), collectives(hlo)
    x3, w3 = rand(4, 64, 512), rand(512, 1024)
    y, _ = jit_check(jg.fp8_linear, (x3, w3),
                     (put(x3, "x", None, None, mesh=mesh), put(w3, None, "y", mesh=mesh)))
    assert tuple(y.sharding.spec) == ("x", None, "y"), y.sharding


@case
def explicit_axes_quantizers_and_fallback():
    import jax.numpy as jnp
    import numpy as np

    import jaxgemm as jg

    mesh = _explicit_mesh()
    w = rand(4, 512, 384)  # N split 4 ways: 128 rows, one block, per device
    (d, s), _ = jit_check(jg.per_block_cast_to_fp8_grouped, (w,),
                          (put(w, "x", "y", None, mesh=mesh),), rtol=0)
    assert tuple(s.sharding.spec)[:2] == ("x", "y"), s.sharding  # the split is kept
    x = rand(256, 256)  # K split 8 ways: 32 columns per device, not whole blocks
    with warnings.catch_warnings(record=True) as rec:
        warnings.simplefilter("always")
        out = jg.per_token_cast_to_fp8(put(x, None, ("x", "y"), mesh=mesh))
    ref = jg.per_token_cast_to_fp8(x)
    assert np.array_equal(np.asarray(out[1]), np.asarray(ref[1]))
    assert np.array_equal(np.asarray(out[0], np.float32), np.asarray(ref[0], np.float32))
    assert any("whole 128-blocks" in m for m in _fallback_msgs(rec)), _fallback_msgs(rec)
    # the MoE path: expert-parallel fp8_ragged_dot, forward and gradients
    xr, we, ct = rand(256, 256), rand(8, 256, 256) * 0.05, rand(256, 256)
    gs = jnp.asarray([10, 0, 60, 5, 30, 1, 70, 13], jnp.int32)
    f = _grads(lambda x, w, ct: jnp.sum(jg.fp8_ragged_dot(x, w, gs) * ct), (0, 1))
    jit_check(f, (xr, we, ct), (put(xr, "x", None, mesh=mesh), put(we, "y", None, None, mesh=mesh),
                                put(ct, "x", None, mesh=mesh)))


# ------------------------------------------------------------------ num_sms / CUDA lowering


@case
def num_sms_survives_partitioning_cuda_lowering():
    """A CUDA lowering from this CPU machine: the partitioned program runs the
    kernel on local shapes with the static num_sms (the CPU compile of it then
    fails for lack of a CUDA FFI handler, after SPMD partitioning)."""
    import glob
    import tempfile

    import jax

    import jaxgemm as jg

    try:
        from jaxgemm import _ext
        _ext.ensure_registered()
    except Exception as e:  # no native extension / NVRTC here
        return f"skip: {type(e).__name__}: {e}"
    a, b = _dense_inputs(m=64, n=1024, k=1024)
    bs = put(b, ("x", "y"), None)
    f = jax.jit(lambda a, b: jg.fp8_gemm_nt(a, b, num_sms=77))
    low = f.trace(a, bs).lower(lowering_platforms=("cuda",))
    assert "CustomSPMDPartitioning" in low.as_text() and "sdy.sharding_rule" in low.as_text()
    d = tempfile.mkdtemp()
    try:
        low.compile(compiler_options={"xla_dump_to": d, "xla_dump_hlo_as_text": True})
    except Exception as e:  # expected on CPU
        assert "jaxgemm_dense_gemm" in str(e), e
    text = "".join(open(p).read() for p in glob.glob(os.path.join(d, "*after_optimizations.txt")))
    calls = [ln for ln in text.splitlines() if 'custom_call_target="jaxgemm_dense_gemm"' in ln]
    assert calls, "no jaxgemm_dense_gemm call in the partitioned module"
    # local shapes: B [1024/8, 1024], D [64, 128]
    assert any("f8e4m3fn[128,1024]" in ln and "[64,128]" in ln for ln in calls), calls
    assert all("num_sms=77" in ln.replace(" ", "") or "num_sms = 77" in ln for ln in calls), calls
    # shard_map: the op is a plain per-device call
    mesh = env()["mesh"]
    P = env()["P"]
    sm = jax.jit(jax.shard_map(lambda a, b: jg.fp8_gemm_nt(a, b, num_sms=77), mesh=mesh,
                               in_specs=(P(), P(("x", "y"))), out_specs=P(None, ("x", "y"))))
    txt = sm.trace(a, bs).lower(lowering_platforms=("cuda",)).as_text()
    calls = [ln for ln in txt.splitlines() if "@jaxgemm_dense_gemm" in ln]
    assert calls and all("num_sms = 77" in ln for ln in calls), calls
    assert all("tensor<128x1024xf8E4M3FN>" in ln for ln in calls), calls


# ------------------------------------------------------- shard_map typing + grads


def _varying(x):
    import jax

    aval = jax.typeof(x)
    mat = getattr(aval, "mat", None)
    return frozenset(mat.varying) if mat is not None else frozenset(getattr(aval, "vma", ()))


@case
def shard_map_results_vary_like_their_operands():
    # Inside shard_map each result is typed varying over the union of its
    # operands' manual axes (as JAX's own dot is), so an out_specs that promises
    # replication of a per-shard result is refused instead of silently
    # returning one shard's value.
    import jax
    import jax.numpy as jnp
    import pytest

    import jaxgemm as jg

    mesh, P = env()["mesh"], env()["P"]
    a, w = rand(64, 256, dtype=jnp.bfloat16), rand(128, 256, dtype=jnp.bfloat16)
    gs = jnp.asarray([10, 0, 6], jnp.int32)
    wg = rand(3, 128, 256, dtype=jnp.bfloat16)
    seen = {}

    def body(a, w, wg):
        seen["dense"] = _varying(jg.bf16_gemm_nt(a, w))
        seen["weight_side"] = _varying(jg.bf16_gemm_nt(w, a))
        seen["fp8"] = _varying(jg.fp8_gemm_nt(jg.per_token_cast_to_fp8(a.astype(jnp.float32)),
                                              jg.per_block_cast_to_fp8(w.astype(jnp.float32))))
        seen["m_grouped"] = _varying(jg.m_grouped_bf16_gemm_nt_contiguous(a, wg, gs))
        seen["k_grouped"] = _varying(jg.k_grouped_bf16_gemm_tn_contiguous(a, a, gs))
        return jg.bf16_gemm_nt(a, w)

    f = jax.shard_map(body, mesh=mesh, in_specs=(P("x"), P(), P()), out_specs=P("x"))
    jax.jit(f).trace(a, w, wg)
    assert all(v == {"x"} for v in seen.values()), seen
    bad = jax.shard_map(lambda a, w: jg.bf16_gemm_nt(a, w), mesh=mesh,
                        in_specs=(P("x"), P()), out_specs=P())
    with pytest.raises(Exception, match="out_specs"):
        jax.jit(bad).trace(a, w).lower()


@case
def grad_inside_shard_map():
    # Data parallel over x: per-shard rows, a replicated weight whose gradient
    # is the sum of the shards' (the transpose of the implicit pvary).
    import jax
    import jax.numpy as jnp

    import jaxgemm as jg

    mesh, P = env()["mesh"], env()["P"]
    a, w = rand(64, 256, dtype=jnp.bfloat16), rand(128, 256, dtype=jnp.bfloat16)
    wg = rand(4, 128, 256, dtype=jnp.bfloat16)
    gs = jnp.asarray([3, 0, 9, 4], jnp.int32)  # per shard: 16 rows, 16 used
    cot = rand(64, 128)

    def dense(a, w):
        return jg.bf16_gemm_nt(a, w, out_dtype=jnp.float32)

    def grouped(a, wg):
        return jg.m_grouped_bf16_gemm_nt_contiguous(a, wg, gs, out_dtype=jnp.float32)

    for fn, b in ((dense, w), (grouped, wg)):
        sm = jax.shard_map(fn, mesh=mesh, in_specs=(P("x"), P()), out_specs=P("x"))
        got = jax.jit(jax.grad(lambda a, b: jnp.sum(sm(a, b) * cot), (0, 1)))(a, b)
        # The same per-shard computation, unsharded: rows split in 2 halves.
        def loop(a, b):
            halves = [fn(a[i * 32:(i + 1) * 32], b) for i in range(2)]
            return jnp.sum(jnp.concatenate(halves) * cot)
        want = jax.jit(jax.grad(loop, (0, 1)))(a, b)
        for g, r in zip(got, want):
            close(g.astype(jnp.float32), r.astype(jnp.float32), rtol=1e-2)


@case
def grad_of_sharded_bf16_under_jit():
    # jax.grad through the partitioned ops (custom_partitioning): the backward
    # GEMMs are partitioned like any other jaxgemm call.
    import jax
    import jax.numpy as jnp

    import jaxgemm as jg

    a, w = rand(64, 512, dtype=jnp.bfloat16), rand(256, 512, dtype=jnp.bfloat16)
    cot = rand(64, 256)

    def loss(a, w):
        return jnp.sum(jg.bf16_gemm_nt(a, w, out_dtype=jnp.float32) * cot)

    g = jax.jit(jax.grad(loss, (0, 1)))
    want = g(a, w)
    for sa, sw in (((("x",), None), (("y",), None)), ((None, "y"), (None, "y"))):
        got = g(put(a, *sa), put(w, *sw))
        for x, r in zip(got, want):
            close(x.astype(jnp.float32), r.astype(jnp.float32), rtol=1e-2)


# ------------------------------------------------------------------ driver


def run(names):
    results = {}
    for name in names:
        t0 = time.perf_counter()
        try:
            note = CASES[name]()
            results[name] = {"ok": True, "msg": note or ""}
        except Exception as e:  # noqa: BLE001 - reported to the test
            results[name] = {"ok": False, "msg": f"{type(e).__name__}: {e}\n"
                                                 f"{traceback.format_exc()[-3000:]}"}
        results[name]["seconds"] = round(time.perf_counter() - t0, 2)
        print(f"{name}: {'ok' if results[name]['ok'] else 'FAIL'} "
              f"({results[name]['seconds']} s)", file=sys.stderr, flush=True)
    return results


def main(argv):
    out = argv[0]
    names = argv[1:] or list(CASES)
    os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") +
                               f" --xla_force_host_platform_device_count={N_DEVICES}").strip()
    os.environ.setdefault("JAX_PLATFORMS", "cpu")
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    with open(out, "w") as fh:
        json.dump(run(names), fh, indent=1)


if __name__ == "__main__":
    main(sys.argv[1:])
