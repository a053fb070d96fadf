"""API contract: argument checks, shape rules, jit, vmap, layouts, backend policy."""
from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxgemm as jg
from jaxgemm import _backend, _primitive
from jaxgemm import _oracle as O
from jaxgemm._validate import GroupSizesDtypeError

from helpers import BF16, F32, assert_close, fp8_block, fp8_token, rand, transpose

RNG = np.random.default_rng(0)
M, N, K, G = 64, 96, 7168 // 28, 3  # K = 256
A = fp8_token(RNG, M, K)
B = fp8_block(RNG, N, K)
AB, BB = rand(RNG, M, K, dtype=BF16), rand(RNG, N, K, dtype=BF16)
C = rand(RNG, M, N)
GS = jnp.asarray([20, 0, 30], jnp.int32)
BG = fp8_block(RNG, G, N, K)
BGB = rand(RNG, G, N, K, dtype=BF16)
A3 = fp8_token(RNG, G, 16, K)
A3B = rand(RNG, G, 16, K, dtype=BF16)
MM = jnp.asarray([0, 5, 16], jnp.int32)
KT = 200
XK, YK = rand(RNG, KT, 40), rand(RNG, KT, 24)
GK = jnp.asarray([100, 0, 60], jnp.int32)
AK = jg.per_token_cast_to_fp8_grouped(XK, GK)
BK = jg.per_token_cast_to_fp8_grouped(YK, GK)


def raises(exc, *needles):
    """pytest.raises that also checks each needle appears in the message."""
    class _Ctx:
        def __enter__(self):
            self.cm = pytest.raises(exc)
            self.info = self.cm.__enter__()
            return self.info

        def __exit__(self, *a):
            r = self.cm.__exit__(*a)
            msg = str(self.info.value)
            for nd in needles:
                assert nd in msg, f"{nd!r} not in {msg!r}"
            return r
    return _Ctx()


def assert_same(x, y):
    """Two computations of the same value.  On CPU, within one bf16 ulp of each
    element: eager runs a transposed operand's transpose on its own, jit may
    fold it into the dot, and on some CPUs (seen on an AMD EPYC host) the two
    orders of summation round a few bf16 elements differently.  On a GPU, XLA
    may pick different algorithms for different shapes, so allow one bf16 ulp
    of the largest element."""
    x64, y64 = O.to64(x), O.to64(y)
    if jax.default_backend() == "cpu":
        np.testing.assert_allclose(x64, y64, rtol=2.0 ** -7, atol=0)
    else:
        tol = 2.0 ** -7
        np.testing.assert_allclose(x64, y64, rtol=tol,
                                   atol=tol * float(np.max(np.abs(y64), initial=0.0)))


# ----------------------------------------------------------------- error paths

def test_non_tuple_operand():
    with raises(TypeError, "fp8_gemm_nt", "a must be an FP8 operand", "(data, scale)"):
        jg.fp8_gemm_nt(A[0], B)
    with raises(TypeError, "fp8_gemm_nn", "b must be an FP8 operand"):
        jg.fp8_gemm_nn(A, (B[0], B[1], B[1]))
    with raises(TypeError, "bf16_gemm_nt", "a must be a bfloat16 array"):
        jg.bf16_gemm_nt(A, BB)
    with raises(TypeError, "m_grouped_fp8_gemm_nt_contiguous", "b must be an FP8"):
        jg.m_grouped_fp8_gemm_nt_contiguous(A, BG[0], GS)


def test_dtype_errors():
    with raises(TypeError, "fp8_gemm_nt", "a.data", "bfloat16", "float8_e4m3fn"):
        jg.fp8_gemm_nt((AB, A[1]), B)
    with raises(TypeError, "fp8_gemm_nt", "b.scale", "bfloat16", "float32"):
        jg.fp8_gemm_nt(A, (B[0], B[1].astype(BF16)))
    with raises(TypeError, "bf16_gemm_tn", "b has dtype float32"):
        jg.bf16_gemm_tn(AB.T, BB.T.astype(F32))
    with raises(TypeError, "fp8_gemm_nt", "c has dtype bfloat16", "float32"):
        jg.fp8_gemm_nt(A, B, c=C.astype(BF16))
    with raises(TypeError, "m_grouped_bf16_gemm_nt_masked", "a has dtype float32"):
        jg.m_grouped_bf16_gemm_nt_masked(A3B.astype(F32), BGB, MM)
    with raises(TypeError, "k_grouped_fp8_gemm_tn_contiguous", "a.data"):
        jg.k_grouped_fp8_gemm_tn_contiguous((XK, AK[1]), BK, GK)


def test_shape_errors_dense():
    with raises(ValueError, "fp8_gemm_nt", "a.data has shape (64, 256, 1)", "rank 2"):
        jg.fp8_gemm_nt((A[0][..., None], A[1]), B)
    with raises(ValueError, "fp8_gemm_nt", "b.data", "K (128)", "a.data's K (256)"):
        jg.fp8_gemm_nt(A, fp8_block(RNG, N, 128))
    with raises(ValueError, "fp8_gemm_nt: a.scale has shape (64, 1); expected (64, 2) = "
                "(M, ceil(K/128)) for a.data of shape (64, 256)"):
        jg.fp8_gemm_nt((A[0], A[1][:, :1]), B)
    with raises(ValueError, "fp8_gemm_nt", "b.scale has shape (96, 1)", "(1, 2)",
                "(96, 2)", "ceil(N/128)"):
        jg.fp8_gemm_nt(A, (B[0], jnp.ones((96, 1), F32)))
    with raises(ValueError, "fp8_gemm_tn", "a.scale", "(2, 64) = (ceil(K/128), M)"):
        jg.fp8_gemm_tn((A[0].T, A[1]), transpose(B))
    with raises(ValueError, "fp8_gemm_nn", "b.data", "[K, N]"):
        jg.fp8_gemm_nn(A, B)  # B given [N, K]: K mismatch on axis 0
    with raises(ValueError, "bf16_gemm_nt", "b", "a's K"):
        jg.bf16_gemm_nt(AB, BB[:, :100])
    with raises(ValueError, "fp8_gemm_nt", "c has shape (64, 95)", "(64, 96)"):
        jg.fp8_gemm_nt(A, B, c=C[:, :95])


def test_out_dtype_and_num_sms_errors():
    with raises(ValueError, "fp8_gemm_nt", "out_dtype=bfloat16", "not allowed with c"):
        jg.fp8_gemm_nt(A, B, c=C, out_dtype=BF16)
    with raises(ValueError, "bf16_gemm_nt", "out_dtype", "float16"):
        jg.bf16_gemm_nt(AB, BB, out_dtype=jnp.float16)
    with raises(ValueError, "m_grouped_fp8_gemm_nt_contiguous", "out_dtype"):
        jg.m_grouped_fp8_gemm_nt_contiguous(A, BG, GS, out_dtype="int8")
    with raises(ValueError, "fp8_gemm_nt", "num_sms", "0"):
        jg.fp8_gemm_nt(A, B, num_sms=0)
    with raises(TypeError, "fp8_gemm_nt", "num_sms"):
        jg.fp8_gemm_nt(A, B, num_sms=1.5)
    with raises(ValueError, "m_grouped_fp8_gemm_nt_masked", "expected_m", ">= 0"):
        jg.m_grouped_fp8_gemm_nt_masked(A3, BG, MM, expected_m=-1)
    with raises(TypeError, "expected_m", "static int"):
        jg.m_grouped_fp8_gemm_nt_masked(A3, BG, MM, expected_m=2.5)
    with raises(TypeError, "m_grouped_fp8_gemm_nt_masked", "zero_masked_rows", "bool"):
        jg.m_grouped_fp8_gemm_nt_masked(A3, BG, MM, zero_masked_rows=MM)


def test_masked_without_zero_rows_matches_on_valid_rows():
    # zero_masked_rows=False only changes what the kernel may leave in rows
    # past masked_m; the reference path (CPU) zeroes them either way.
    full = jg.m_grouped_fp8_gemm_nt_masked(A3, BG, MM)
    fast = jax.jit(lambda a, b, m: jg.m_grouped_fp8_gemm_nt_masked(
        a, b, m, zero_masked_rows=False))(A3, BG, MM)
    np.testing.assert_array_equal(np.asarray(full), np.asarray(fast))
    full16 = jg.m_grouped_bf16_gemm_nt_masked(A3B, BGB, MM)
    fast16 = jg.m_grouped_bf16_gemm_nt_masked(A3B, BGB, MM, zero_masked_rows=False)
    np.testing.assert_array_equal(np.asarray(full16), np.asarray(fast16))


def test_grouped_errors():
    fn = "m_grouped_fp8_gemm_nt_contiguous"
    with raises(GroupSizesDtypeError, fn, "group_sizes has dtype int64"):
        jg.m_grouped_fp8_gemm_nt_contiguous(A, BG, np.array([1, 2, 3], np.int64))
    assert issubclass(GroupSizesDtypeError, TypeError)
    assert issubclass(GroupSizesDtypeError, ValueError)
    with raises(ValueError, fn, "group_sizes has shape (2,)", "(3,) = [G]"):
        jg.m_grouped_fp8_gemm_nt_contiguous(A, BG, GS[:2])
    with raises(ValueError, fn, "group_sizes has shape (3, 1)"):
        jg.m_grouped_fp8_gemm_nt_contiguous(A, BG, GS[:, None])
    with raises(ValueError, fn, "b.scale", "(3, 1, 2) = (G, ceil(N/128), ceil(K/128))"):
        jg.m_grouped_fp8_gemm_nt_contiguous(A, (BG[0], BG[1][:, :, :1]), GS)
    with raises(ValueError, fn, "b.data", "rank 3"):
        jg.m_grouped_fp8_gemm_nt_contiguous(A, B, GS)
    with raises(ValueError, fn, "b.data", "a.data's K"):
        jg.m_grouped_fp8_gemm_nt_contiguous(A, fp8_block(RNG, G, N, 128), GS)
    fn = "m_grouped_fp8_gemm_nt_masked"
    with raises(ValueError, fn, "b.data", "G (3)", "a.data's G (2)"):
        jg.m_grouped_fp8_gemm_nt_masked((A3[0][:2], A3[1][:2]), BG, MM[:2])
    with raises(ValueError, fn, "masked_m has shape (2,)", "(3,)"):
        jg.m_grouped_fp8_gemm_nt_masked(A3, BG, MM[:2])
    with raises(GroupSizesDtypeError, fn, "masked_m has dtype float32"):
        jg.m_grouped_fp8_gemm_nt_masked(A3, BG, MM.astype(F32))
    with raises(ValueError, fn, "a.scale", "(G, M_max, ceil(K/128))"):
        jg.m_grouped_fp8_gemm_nt_masked((A3[0], A3[1][:, :, :1]), BG, MM)
    with raises(ValueError, "m_grouped_bf16_gemm_nt_masked", "b", "G (3)"):
        jg.m_grouped_bf16_gemm_nt_masked(A3B[:2], BGB, MM[:2])
    fn = "k_grouped_fp8_gemm_tn_contiguous"
    with raises(ValueError, fn, "a.scale", "k_grouped_scale_rows(K_total, G)"):
        jg.k_grouped_fp8_gemm_tn_contiguous((AK[0], AK[1][:-1]), BK, GK)
    with raises(ValueError, fn, "b.data", "K_total (199)", "a.data's K_total (200)"):
        jg.k_grouped_fp8_gemm_tn_contiguous(AK, (BK[0][:199], BK[1]), GK)
    with raises(ValueError, fn, "c has shape (3, 40, 23)", "(3, 40, 24) = [G, M, N]"):
        jg.k_grouped_fp8_gemm_tn_contiguous(AK, BK, GK, c=jnp.zeros((3, 40, 23)))
    with raises(GroupSizesDtypeError, fn, "group_sizes has dtype uint32"):
        jg.k_grouped_fp8_gemm_tn_contiguous(AK, BK, GK.astype(jnp.uint32))
    with raises(ValueError, fn, "group_sizes has shape ()"):
        jg.k_grouped_fp8_gemm_tn_contiguous(AK, BK, GK[0])
    with raises(ValueError, "k_grouped_bf16_gemm_tn_contiguous", "rank 2"):
        jg.k_grouped_bf16_gemm_tn_contiguous(XK.astype(BF16)[None], YK.astype(BF16), GK)


def test_lists_accepted_for_group_sizes():
    out = jg.m_grouped_fp8_gemm_nt_contiguous(A, BG, [20, 0, 30])
    assert_same((out),
                                  O.to64(jg.m_grouped_fp8_gemm_nt_contiguous(A, BG, GS)))


def test_check_group_sizes():
    jg.check_group_sizes(np.array([1, 0, 5]), 6)
    jg.check_group_sizes(jnp.asarray([1, 0, 5], jnp.int32), 10)
    with raises(ValueError, "group_sizes[1] = -1", "negative"):
        jg.check_group_sizes([1, -1, 5], 10)
    with raises(ValueError, "sum(group_sizes) = 7", "exceeds", "6"):
        jg.check_group_sizes([1, 1, 5], 6)
    with raises(ValueError, "masked_m[2] = 9", "M_max = 8"):
        jg.check_group_sizes([8, 0, 9], 8, masked=True)
    jg.check_group_sizes([8, 8, 8], 8, masked=True)
    with raises(ValueError, "1-D integer"):
        jg.check_group_sizes(np.array([1.5]), 8)
    with raises(TypeError, "traced"):
        jax.jit(lambda g: jg.check_group_sizes(g, 8))(GS)


# ----------------------------------------------------------------- shape rules / jit

OPS = {
    "fp8_gemm_nt": (jg.fp8_gemm_nt, (A, B), {"c": C}),
    "fp8_gemm_nn": (jg.fp8_gemm_nn, (A, transpose(B)), {}),
    "fp8_gemm_tn": (jg.fp8_gemm_tn, (transpose(A), transpose(B)), {"out_dtype": F32}),
    "fp8_gemm_tt": (jg.fp8_gemm_tt, (transpose(A), B), {}),
    "bf16_gemm_nt": (jg.bf16_gemm_nt, (AB, BB), {}),
    "bf16_gemm_nn": (jg.bf16_gemm_nn, (AB, BB.T), {"c": C}),
    "bf16_gemm_tn": (jg.bf16_gemm_tn, (AB.T, BB.T), {}),
    "bf16_gemm_tt": (jg.bf16_gemm_tt, (AB.T, BB), {}),
    "m_grouped_fp8_gemm_nt_contiguous": (jg.m_grouped_fp8_gemm_nt_contiguous,
                                         (A, BG, GS), {}),
    "m_grouped_bf16_gemm_nt_contiguous": (jg.m_grouped_bf16_gemm_nt_contiguous,
                                          (AB, BGB, GS), {"out_dtype": F32}),
    "m_grouped_fp8_gemm_nt_masked": (jg.m_grouped_fp8_gemm_nt_masked, (A3, BG, MM),
                                     {"expected_m": 4}),
    "m_grouped_bf16_gemm_nt_masked": (jg.m_grouped_bf16_gemm_nt_masked,
                                      (A3B, BGB, MM), {}),
    "k_grouped_fp8_gemm_tn_contiguous": (jg.k_grouped_fp8_gemm_tn_contiguous,
                                         (AK, BK, GK), {}),
    "k_grouped_bf16_gemm_tn_contiguous": (jg.k_grouped_bf16_gemm_tn_contiguous,
                                          (XK.astype(BF16), YK.astype(BF16), GK),
                                          {"c": jnp.ones((3, 40, 24), F32)}),
}
EXPECTED = {
    "fp8_gemm_nt": ((M, N), F32), "fp8_gemm_nn": ((M, N), BF16),
    "fp8_gemm_tn": ((M, N), F32), "fp8_gemm_tt": ((M, N), BF16),
    "bf16_gemm_nt": ((M, N), BF16), "bf16_gemm_nn": ((M, N), F32),
    "bf16_gemm_tn": ((M, N), BF16), "bf16_gemm_tt": ((M, N), BF16),
    "m_grouped_fp8_gemm_nt_contiguous": ((M, N), BF16),
    "m_grouped_bf16_gemm_nt_contiguous": ((M, N), F32),
    "m_grouped_fp8_gemm_nt_masked": ((G, 16, N), BF16),
    "m_grouped_bf16_gemm_nt_masked": ((G, 16, N), BF16),
    "k_grouped_fp8_gemm_tn_contiguous": ((G, 40, 24), F32),
    "k_grouped_bf16_gemm_tn_contiguous": ((G, 40, 24), F32),
}


def test_op_table_is_complete():
    assert set(OPS) == set(jg.DENSE_GEMMS) | set(jg.GROUPED_GEMMS)
    assert len(OPS) == 14


@pytest.mark.parametrize("name", sorted(OPS))
def test_eval_shape_and_jit(name):
    fn, args, kw = OPS[name]
    f = functools.partial(fn, **kw)
    shp = jax.eval_shape(f, *args)
    assert (shp.shape, np.dtype(shp.dtype)) == (EXPECTED[name][0],
                                               np.dtype(EXPECTED[name][1]))
    eager = f(*args)
    jitted = jax.jit(f)(*args)
    assert eager.shape == shp.shape and eager.dtype == shp.dtype
    assert_same((eager), O.to64(jitted))


def test_eval_shape_on_shape_dtype_structs():
    sds = jax.ShapeDtypeStruct
    a = (sds((4096, 7168), jnp.float8_e4m3fn), sds((4096, 56), F32))
    b = (sds((2112, 7168), jnp.float8_e4m3fn), sds((17, 56), F32))
    out = jax.eval_shape(jg.fp8_gemm_nt, a, b)
    assert out.shape == (4096, 2112) and out.dtype == BF16
    bg = (sds((256, 2048, 7168), jnp.float8_e4m3fn), sds((256, 16, 56), F32))
    gs = sds((256,), jnp.int32)
    out = jax.eval_shape(jg.m_grouped_fp8_gemm_nt_contiguous, a, bg, gs)
    assert out.shape == (4096, 2048)


def test_primitive_names_and_params():
    assert set(_primitive.PRIMITIVES) == {
        "fp8_gemm_nt", "bf16_gemm_nt", "m_grouped_fp8_gemm_nt_contiguous",
        "m_grouped_bf16_gemm_nt_contiguous", "m_grouped_fp8_gemm_nt_masked",
        "m_grouped_bf16_gemm_nt_masked", "k_grouped_fp8_gemm_tn_contiguous",
        "k_grouped_bf16_gemm_tn_contiguous"}
    jaxpr = jax.make_jaxpr(lambda a, b: jg.fp8_gemm_nn(a, b))(A, transpose(B))
    eqn = [e for e in jaxpr.eqns if e.primitive.name == "fp8_gemm_nt"][0]
    assert eqn.params == {"out_dtype": np.dtype(BF16), "num_sms": None}
    jaxpr = jax.make_jaxpr(lambda a, b, m: jg.m_grouped_fp8_gemm_nt_masked(a, b, m))(
        A3, BG, MM)
    assert jaxpr.eqns[-1].params["expected_m"] == 16


# ----------------------------------------------------------------- layouts

def test_nn_tn_tt_match_nt():
    ref = O.to64(jg.fp8_gemm_nt(A, B, c=C))
    for fn, a, b in [(jg.fp8_gemm_nn, A, transpose(B)), (jg.fp8_gemm_tn, transpose(A), transpose(B)),
                     (jg.fp8_gemm_tt, transpose(A), B)]:
        np.testing.assert_allclose(O.to64(fn(a, b, c=C)), ref, rtol=1e-6, atol=1e-5)
    ref = O.to64(jg.bf16_gemm_nt(AB, BB))
    for fn, a, b in [(jg.bf16_gemm_nn, AB, BB.T), (jg.bf16_gemm_tn, AB.T, BB.T),
                     (jg.bf16_gemm_tt, AB.T, BB)]:
        np.testing.assert_allclose(O.to64(fn(a, b)), ref, rtol=2 ** -8, atol=1e-3)


# ----------------------------------------------------------------- vmap

def _prims(jaxpr):
    return {e.primitive.name for e in jaxpr.eqns}


def test_vmap_fold_into_m():
    a = fp8_token(RNG, 3, 20, K)
    c = rand(RNG, 3, 20, N)
    f = jax.vmap(lambda a, c: jg.fp8_gemm_nt(a, B, c=c))
    jaxpr = jax.make_jaxpr(f)(a, c)
    assert "fp8_gemm_nt" in _prims(jaxpr.jaxpr) and "scan" not in _prims(jaxpr.jaxpr)
    out = f(a, c)
    for i in range(3):
        assert_same((out[i]),
                                      O.to64(jg.fp8_gemm_nt((a[0][i], a[1][i]), B, c=c[i])))
    # batch axis not in front, c unbatched (broadcast), bf16
    ab = rand(RNG, 20, 4, K, dtype=BF16)
    f = jax.vmap(lambda a: jg.bf16_gemm_nt(a, BB, c=C[:20]), in_axes=1)
    out = f(ab)
    assert out.shape == (4, 20, N)
    for i in range(4):
        assert_same((out[i]), O.to64(jg.bf16_gemm_nt(
            ab[:, i], BB, c=C[:20])))


def test_vmap_lax_map_path():
    bb = fp8_block(RNG, 2, N, K)
    f = jax.vmap(lambda b: jg.fp8_gemm_tt(transpose(A), b))
    jaxpr = jax.make_jaxpr(f)(bb)
    assert "scan" in _prims(jaxpr.jaxpr)
    out = f(bb)
    for i in range(2):
        assert_same((out[i]),
                                      O.to64(jg.fp8_gemm_tt(transpose(A), (bb[0][i], bb[1][i]))))
    gs = jnp.asarray([[10, 10, 10], [0, 64, 0]], jnp.int32)
    f = jax.vmap(lambda g: jg.m_grouped_fp8_gemm_nt_contiguous(A, BG, g))
    out = f(gs)
    for i in range(2):
        assert_same((out[i]), O.to64(
            jg.m_grouped_fp8_gemm_nt_contiguous(A, BG, gs[i])))
    mm = jnp.asarray([[1, 2, 3], [16, 0, 4]], jnp.int32)
    out = jax.vmap(lambda m: jg.m_grouped_bf16_gemm_nt_masked(A3B, BGB, m))(mm)
    assert_same((out[1]), O.to64(
        jg.m_grouped_bf16_gemm_nt_masked(A3B, BGB, mm[1])))
    xs = jnp.stack([XK, XK * 2]).astype(BF16)
    out = jax.vmap(lambda x: jg.k_grouped_bf16_gemm_tn_contiguous(x, YK.astype(BF16), GK))(xs)
    assert_same((out[1]), O.to64(
        jg.k_grouped_bf16_gemm_tn_contiguous(xs[1], YK.astype(BF16), GK)))


def test_vmap_nested_and_zero_batch():
    a = fp8_token(RNG, 2, 3, 8, K)
    out = jax.vmap(jax.vmap(lambda a: jg.fp8_gemm_nt(a, B)))(a)
    assert out.shape == (2, 3, 8, N)
    assert_same((out[1, 2]),
                                  O.to64(jg.fp8_gemm_nt((a[0][1, 2], a[1][1, 2]), B)))
    a0 = fp8_token(RNG, 0, 8, K)
    assert jax.vmap(lambda a: jg.fp8_gemm_nt(a, B))(a0).shape == (0, 8, N)


# ----------------------------------------------------------------- zero sizes

def test_zero_sizes():
    a0 = fp8_token(RNG, 0, K)
    assert jg.fp8_gemm_nt(a0, B).shape == (0, N)
    out = jg.m_grouped_fp8_gemm_nt_contiguous(a0, BG, jnp.zeros((3,), jnp.int32))
    assert out.shape == (0, N)
    out = jg.m_grouped_fp8_gemm_nt_contiguous(A, BG, jnp.zeros((3,), jnp.int32))
    assert np.all(O.to64(out) == 0)
    out = jg.k_grouped_bf16_gemm_tn_contiguous(XK.astype(BF16), YK.astype(BF16),
                                               jnp.zeros((3,), jnp.int32))
    assert out.shape == (3, 40, 24) and np.all(O.to64(out) == 0)


# ----------------------------------------------------------------- backend policy

@pytest.fixture
def clean_backend(monkeypatch):
    monkeypatch.delenv("JAXGEMM_BACKEND", raising=False)
    # conftest runs non-kernel tests inside `backend("reference")` on a GPU
    # machine: set that context aside while testing the policy itself
    stack = getattr(_backend._state, "stack", None) or []
    saved, stack[:] = list(stack), []
    _backend._state.stack = stack
    jg.set_backend(None)
    jg.set_num_sms(None)
    yield monkeypatch
    jg.set_backend(None)
    jg.set_num_sms(None)
    stack[:] = saved


def test_backend_switching(clean_backend):
    assert jg.get_backend() == "auto"
    clean_backend.setenv("JAXGEMM_BACKEND", "Reference")
    assert jg.get_backend() == "reference"
    clean_backend.setenv("JAXGEMM_BACKEND", "bogus")
    with raises(ValueError, "JAXGEMM_BACKEND", "bogus"):
        jg.get_backend()
    clean_backend.delenv("JAXGEMM_BACKEND")
    jg.set_backend("kernel")
    assert jg.get_backend() == "kernel"
    with jg.backend("reference"):
        assert jg.get_backend() == "reference"
        with jg.backend("auto"):
            assert jg.get_backend() == "auto"
        assert jg.get_backend() == "reference"
        assert_close(jg.fp8_gemm_nt(A, B), O.gemm(A, B))
    assert jg.get_backend() == "kernel"
    if jax.default_backend() == "cpu":  # CPU runs the reference whatever the policy
        assert_close(jg.fp8_gemm_nt(A, B), O.gemm(A, B))
    jg.set_backend(None)
    assert jg.get_backend() == "auto"
    with raises(ValueError, "set_backend", "cuda"):
        jg.set_backend("cuda")
    with raises(ValueError, "backend"):
        with jg.backend("fast"):
            pass


def test_resolve_policy():
    rp = _backend.resolve_policy
    hopper = ("9.0", "NVIDIA H100 80GB HBM3")
    ampere = ("8.0", "NVIDIA A100-SXM4-80GB")
    assert rp("auto", hopper) == "kernel"
    assert rp("kernel", hopper) == "kernel"
    assert rp("auto", hopper, has_kernel=False) == "reference"
    assert rp("reference", hopper) == "reference"
    assert rp("reference", ampere) == "reference"
    assert rp("auto", None) == "kernel"  # unknown target (cross-lowering)
    for pol in ("auto", "kernel"):
        with raises(RuntimeError, "A100", "8.0", "JAXGEMM_BACKEND=reference"):
            rp(pol, ampere)
    with raises(ValueError, "resolve_policy"):
        rp("gpu", hopper)


def test_select_impl_uses_registered_kernel(clean_backend):
    from jaxgemm import _kernels
    from jaxgemm import reference as R

    def fake(*ops, **params):
        return R.fp8_gemm_nt(*ops, **params)

    clean_backend.setitem(_kernels.KERNEL_IMPLS, "fp8_gemm_nt", fake)
    clean_backend.delitem(_kernels.KERNEL_IMPLS, "bf16_gemm_nt", raising=False)
    clean_backend.setattr(_backend, "cuda_device_info", lambda: ("9.0", "H100"))
    assert _primitive.select_impl("fp8_gemm_nt") == ("kernel", fake)
    assert _primitive.select_impl("bf16_gemm_nt") == ("reference", R.bf16_gemm_nt)
    with jg.backend("reference"):
        assert _primitive.select_impl("fp8_gemm_nt")[0] == "reference"
    clean_backend.setattr(_backend, "cuda_device_info", lambda: ("8.9", "NVIDIA L4"))
    with raises(RuntimeError, "NVIDIA L4", "JAXGEMM_BACKEND=reference"):
        _primitive.select_impl("fp8_gemm_nt")


def test_hopper_available_on_cpu():
    assert isinstance(jg.hopper_available(), bool)
    if not any(d.platform == "gpu" for d in jax.devices()):
        assert not jg.hopper_available()
        assert _backend.cuda_device_info() is None


# ----------------------------------------------------------------- num_sms

def _num_sms_param(f, *args):
    jaxpr = jax.make_jaxpr(f)(*args)
    return [e.params["num_sms"] for e in jaxpr.eqns if "num_sms" in e.params][0]


def test_num_sms_plumbing(clean_backend):
    assert jg.get_num_sms() is None
    assert _num_sms_param(jg.fp8_gemm_nt, A, B) is None
    assert _num_sms_param(lambda a, b: jg.fp8_gemm_nt(a, b, num_sms=66), A, B) == 66
    jg.set_num_sms(100)
    assert jg.get_num_sms() == 100
    assert _num_sms_param(jg.fp8_gemm_nt, A, B) == 100
    assert _num_sms_param(lambda a, b: jg.fp8_gemm_nt(a, b, num_sms=np.int64(8)), A, B) == 8
    assert _num_sms_param(jg.m_grouped_bf16_gemm_nt_contiguous, AB, BGB, GS) == 100
    assert _num_sms_param(jg.k_grouped_fp8_gemm_tn_contiguous, AK, BK, GK) == 100
    jg.set_num_sms(None)
    assert _num_sms_param(jg.fp8_gemm_nt, A, B) is None
    with raises(ValueError, "set_num_sms", "-3"):
        jg.set_num_sms(-3)
    with raises(TypeError, "set_num_sms"):
        jg.set_num_sms("all")


def test_cuda_lowering_follows_policy(clean_backend):
    # Cross-lower for CUDA on this machine (jax.export) with a fake kernel: the
    # primitive's CUDA lowering picks the kernel or the reference by policy.
    from jaxgemm import _kernels

    def fake(a, sa, b, sb, *c, out_dtype, num_sms):
        return jnp.full((a.shape[0], b.shape[0]), 7.0, out_dtype)

    clean_backend.setitem(_kernels.KERNEL_IMPLS, "fp8_gemm_nt", fake)
    clean_backend.setattr(_backend, "cuda_device_info", lambda: ("9.0", "H100"))

    def lowered():
        exp = jax.export.export(jax.jit(jg.fp8_gemm_nt), platforms=("cuda",))(A, B)
        return exp.mlir_module()

    assert "dense<7.000000e+00>" in lowered()
    with jg.backend("reference"):
        txt = lowered()
        assert "dense<7.000000e+00>" not in txt and "dot_general" in txt
    clean_backend.setattr(_backend, "cuda_device_info", lambda: ("8.6", "RTX 3090"))
    with raises(RuntimeError, "RTX 3090", "JAXGEMM_BACKEND=reference"):
        lowered()
    if jax.default_backend() == "cpu":  # the CPU lowering never consults the policy
        assert_close(jg.fp8_gemm_nt(A, B), O.gemm(A, B))


def test_disable_jit():
    with jax.disable_jit():
        out = jg.fp8_gemm_nt(A, B)
        outv = jax.vmap(lambda a: jg.fp8_gemm_nt(a, B))((A[0][None], A[1][None]))
    assert_close(out, O.gemm(A, B))
    assert_same((outv[0]), O.to64(out))


@pytest.mark.parametrize("m,tma", [(64, 0), (1025, 1)])
def test_cuda_lowering_picks_the_scale_layout(clean_backend, m, tma):
    # Cross-lowered for CUDA (no GPU needed): from 1024 rows the FP8 dense call
    # hands the kernel transposed A scales [Kb, M padded to 4] and B scales
    # with K blocks padded to 4, and says so in its scales_tma attribute
    # (ffi/layout.h); below, the scales go as they are.
    import re

    clean_backend.setattr(_backend, "cuda_device_info", lambda: ("9.0", "H100"))
    clean_backend.delenv("JAXGEMM_TMA_SCALES", raising=False)
    k, n = 640, 256
    a = jg.per_token_cast_to_fp8(jnp.asarray(np.random.default_rng(m).standard_normal((m, k)),
                                             jnp.float32))
    b = jg.per_block_cast_to_fp8(jnp.ones((n, k), jnp.float32))
    exp = jax.export.export(
        jax.jit(jg.fp8_gemm_nt), platforms=("cuda",),
        disabled_checks=[jax.export.DisabledSafetyCheck.custom_call("jaxgemm_dense_gemm")])(a, b)
    calls = [ln for ln in exp.mlir_module().splitlines() if "custom_call @jaxgemm_dense_gemm" in ln]
    assert len(calls) == 1
    assert re.search(r"scales_tma = (\d)", calls[0]).group(1) == str(tma)
    sa, sb = ("tensor<5x1028xf32>", "tensor<2x8xf32>") if tma else (f"tensor<{m}x5xf32>",
                                                                    "tensor<2x5xf32>")
    assert f"{sa}, tensor<{n}x{k}xf8E4M3FN>, {sb})" in calls[0], calls[0]


def _set_or_unset(mp, name, value):
    """An environment switch for one test: value None unsets it."""
    if value is None:
        mp.delenv(name, raising=False)
    else:
        mp.setenv(name, value)


@pytest.mark.parametrize("switch,k,kernel,block", [
    (None, 512, "bf16_gemm_nt_pingpong", (128, 128)),  # short K: ping-pong by default
    (None, 2048, "bf16_gemm_nt", None),                # long K: the cooperative kernel
    ("0", 512, "bf16_gemm_nt", None),                  # the A/B switch, off
    ("1", 2048, "bf16_gemm_nt_pingpong", (128, 128)),  # and on
])
def test_cuda_lowering_bf16_pingpong_choice(clean_backend, switch, k, kernel, block):
    # Cross-lowered for CUDA: large BF16 GEMMs at K <= BF16_PINGPONG_MAX_K go
    # to the ping-pong kernel with 128x128 tiles, the rest to the cooperative
    # one; JAXGEMM_BF16_PINGPONG overrides that either way.
    import re

    clean_backend.setattr(_backend, "cuda_device_info", lambda: ("9.0", "H100"))
    _set_or_unset(clean_backend, "JAXGEMM_BF16_PINGPONG", switch)
    a = jnp.ones((4096, k), jnp.bfloat16)
    b = jnp.ones((8192, k), jnp.bfloat16)
    exp = jax.export.export(  # a fresh function: lowerings are cached per function
        jax.jit(lambda x, y: jg.bf16_gemm_nt(x, y)), platforms=("cuda",),
        disabled_checks=[jax.export.DisabledSafetyCheck.custom_call("jaxgemm_dense_gemm")])(a, b)
    calls = [ln for ln in exp.mlir_module().splitlines() if "custom_call @jaxgemm_dense_gemm" in ln]
    assert len(calls) == 1
    assert f'kernel = "{kernel}"' in calls[0], calls[0]
    if block:
        assert re.search(r"block_m = (\d+)", calls[0]).group(1) == str(block[0])
        assert re.search(r"block_n = (\d+)", calls[0]).group(1) == str(block[1])


@pytest.mark.parametrize("masked,rows,forced,tma", [
    (False, 12288, None, 2),                           # 256-row tiles: row boxes
    (True, 12288, None, 0),   # masked at K <= 2048: 128-row tiles (MASKED_128_ROW_MAX_K)
    (False, 96, None, 0),                              # 64-row tiles: cp.async
    (False, 96, "2", 2), (True, 96, "2", 2), (True, 12288, "2", 2), (False, 12288, "0", 0)])
def test_cuda_lowering_m_grouped_scale_layout(clean_backend, masked, rows, forced, tma):
    # Cross-lowered for CUDA (no GPU needed): the FP8 m-grouped call with
    # 256-row tiles hands the kernel its scales as TMA row boxes (scales_tma
    # = 2): K blocks padded to 4, A scales [rows, Kb4] (the masked layout's
    # groups flattened), B scales [G * N blocks, Kb4]; smaller tiles keep the
    # cp.async loader and the scales as they are (_config.
    # grouped_scales_by_tma); JAXGEMM_TMA_SCALES=0/2 forces either.
    import re

    clean_backend.setattr(_backend, "cuda_device_info", lambda: ("9.0", "H100"))
    _set_or_unset(clean_backend, "JAXGEMM_TMA_SCALES", forced)
    g, n, k = 3, 256, 640
    rng = np.random.default_rng(g)
    shape = (g, rows // g, k) if masked else (rows, k)
    a = jg.per_token_cast_to_fp8(jnp.asarray(rng.standard_normal(shape), jnp.float32))
    b = jg.per_block_cast_to_fp8_grouped(jnp.ones((g, n, k), jnp.float32))
    sizes = jnp.full((g,), rows // g, jnp.int32)
    if masked:
        fn = functools.partial(jg.m_grouped_fp8_gemm_nt_masked, expected_m=rows // g)
    else:
        fn = jg.m_grouped_fp8_gemm_nt_contiguous
    # A fresh function per case: jit's trace cache does not see the env var.
    exp = jax.export.export(
        jax.jit(lambda a, b, s: fn(a, b, s)), platforms=("cuda",),
        disabled_checks=[jax.export.DisabledSafetyCheck.custom_call("jaxgemm_grouped_gemm")])(
            a, b, sizes)
    calls = [ln for ln in exp.mlir_module().splitlines()
             if "custom_call @jaxgemm_grouped_gemm" in ln]
    assert len(calls) == 1
    assert re.search(r"scales_tma = (\d)", calls[0]).group(1) == str(tma)
    if tma:
        sa, sb = f"tensor<{rows}x8xf32>", f"tensor<{g * 2}x8xf32>"
    else:
        sa = f"tensor<{g}x{rows // g}x5xf32>" if masked else f"tensor<{rows}x5xf32>"
        sb = f"tensor<{g}x2x5xf32>"
    assert f"{sa}, tensor<{g}x{n}x{k}xf8E4M3FN>, {sb}" in calls[0], calls[0]


def test_ffi_call_hook_sees_each_launch_spec(clean_backend):
    # tests/conftest.py's spec-recording mode (and so tools/prewarm_jit.py's
    # spec list) stands on _kernels._ffi_call_hook: cross-lowering a call for
    # CUDA hands it the launch's spec, which compile_kernel accepts as is.
    from jaxgemm import _ext, _kernels

    seen = []

    def hook(target, result, operands, attrs):
        seen.append((target, dict(attrs)))
        return jnp.zeros(result.shape, result.dtype)

    clean_backend.setattr(_kernels, "_ffi_call_hook", hook)
    clean_backend.setattr(_backend, "cuda_device_info", lambda: ("9.0", "H100"))
    rng = np.random.default_rng(11)
    a = jg.per_token_cast_to_fp8(jnp.asarray(rng.standard_normal((200, 640)), jnp.float32))
    b = jg.per_block_cast_to_fp8(jnp.asarray(rng.standard_normal((384, 640)), jnp.float32))
    jax.export.export(jax.jit(jg.fp8_gemm_nt), platforms=("cuda",))(a, b)
    assert [t for t, _ in seen] == [_ext.DENSE_TARGET]
    spec = seen[0][1]
    assert (spec["kernel"], spec["n"], spec["k"]) == ("fp8_gemm_nt", 384, 640)
    if _ext.nvrtc_available():
        assert _ext.native.compile_kernel(spec)["cubin_size"] > 0


def test_export_with_jaxgemm_disabled_checks_round_trips(clean_backend):
    # A training-style function touching every custom-call target, exported
    # for CPU and CUDA with jaxgemm.export_disabled_checks(): the CUDA module
    # holds the kernels' calls, and the deserialized export runs on CPU (the
    # reference) with the same result as the function itself.
    clean_backend.setattr(_backend, "cuda_device_info", lambda: ("9.0", "H100"))
    rng = np.random.default_rng(11)
    gs = jnp.asarray([40, 0, 24], jnp.int32)
    x = jnp.asarray(rng.standard_normal((64, 256)), jnp.float32)
    w = jnp.asarray(rng.standard_normal((3, 128, 256)), jnp.float32)

    def f(x, w, gs):
        a = jg.per_token_cast_to_fp8(x)
        d = jg.m_grouped_fp8_gemm_nt_contiguous(a, jg.per_block_cast_to_fp8_grouped(w), gs)
        e = jg.fp8_gemm_nt(a, jg.per_block_cast_to_fp8(w[0]))
        kg = jg.k_grouped_fp8_gemm_tn_contiguous(jg.per_token_cast_to_fp8_grouped(x, gs),
                                                 jg.per_token_cast_to_fp8_grouped(d, gs), gs)
        return d, e, kg

    with pytest.raises(ValueError, match="custom call"):
        jax.export.export(jax.jit(f), platforms=("cuda",))(x, w, gs)
    exp = jax.export.export(jax.jit(f), platforms=("cpu", "cuda"),
                            disabled_checks=jg.export_disabled_checks())(x, w, gs)
    text = exp.mlir_module()
    for target in ("jaxgemm_dense_gemm", "jaxgemm_grouped_gemm", "jaxgemm_k_grouped_gemm",
                   "jaxgemm_k_grouped_pack"):
        assert f"custom_call @{target}" in text, target
    back = jax.export.deserialize(exp.serialize())
    for got, want in zip(back.call(x, w, gs), jax.jit(f)(x, w, gs)):
        np.testing.assert_array_equal(np.asarray(got), np.asarray(want))
