"""SPMD partitioning of the jaxgemm primitives (``custom_partitioning`` + Shardy).

Every public primitive (:mod:`jaxgemm._primitive`) lowers through
``jax.experimental.custom_partitioning``: under ``jax.jit`` with sharded
operands XLA partitions the op instead of gathering its operands, and each
device runs the *local* primitive (same shape rule; the reference or the CUDA
kernel) on its shards.  With one device, inside ``shard_map`` (all axes
manual) or with partitioning disabled (:func:`jaxgemm.sharding.partitioning`)
the op lowers straight to the local primitive.

Each op is described by a :class:`_Layout`: the *factor* of every operand
and result dimension (``m``, ``n``, ``k``, ``g``, ...) and its *kind*:

* ``"d"``: a data dimension; for a factor with 128-blocked FP8 scales it is the
  Shardy compound factor ``(f, f_in)`` with ``f_in`` of size 128, so sharding
  ``f`` shards the data and its scale consistently and ``f_in`` (inside a
  block) is never sharded;
* ``"b"``: the ``ceil(d/128)`` scale dimension of a blocked factor (``f``);
* ``"p"``: a plain dimension (no blocking).

That gives the Shardy ``sharding_rule`` (used for propagation) and drives the
``partition`` callback, which gets the concrete shardings, picks one set of
mesh axes per factor, checks 128-block alignment (a misaligned blocked factor
is replicated, with a :class:`ShardingFallbackWarning`: never a wrong scale),
and returns the per-shard function.  Contraction factors (``k``) are reduction
factors: the per-shard function computes float32 partial products and
``psum``\\ s them before the cast.  See ``docs/sharding.md``.
"""
from __future__ import annotations

import dataclasses
import functools
import itertools
import math
import os
import sys
import warnings

import jax
import jax.numpy as jnp
import numpy as np
from jax.interpreters import mlir

from jaxgemm import _groups

try:  # public since jax 0.4.3x
    from jax.experimental.custom_partitioning import (
        ArrayMapping,
        CompoundFactor,
        SdyShardingRule,
        custom_partitioning,
    )
except ImportError:  # pragma: no cover - a jax without Shardy rules
    custom_partitioning = None

__all__ = ["ShardingFallbackWarning", "lowering", "layout_of", "sharding_rule",
           "get_enabled", "set_enabled"]

BLOCK = 128
_F32 = np.dtype(np.float32)
_state = {"enabled": True}


class ShardingFallbackWarning(UserWarning):
    """A sharded factor could not be kept (e.g. a shard boundary inside a 128-block).

    The factor was replicated instead (XLA gathers the operands along it): the
    result is correct, only the communication differs from what was asked.
    """


def get_enabled() -> bool:
    return _state["enabled"]


def set_enabled(on: bool) -> None:
    on = bool(on)
    if on != _state["enabled"]:
        _state["enabled"] = on
        jax.clear_caches()


# ------------------------------------------------------------------ layouts


@dataclasses.dataclass(frozen=True)
class _Layout:
    """Factor description of one op instance (shapes known)."""

    operands: tuple          # per operand: tuple of (factor, kind) per dim
    result: tuple            # (factor, kind) per result dim
    sizes: dict              # factor -> data size (the unblocked length)
    blocked: frozenset       # factors with a "b" (scale) dimension
    reduction: tuple         # factors summed over (absent from the result)
    replicate: frozenset     # factors never sharded
    replicated_operands: frozenset  # operand indices always replicated (group sizes)
    priority: tuple          # order in which factors claim mesh axes
    prefer: tuple            # operand indices searched for a factor's axes (-1: result)

    def aligned(self, f) -> bool:
        """Whether factor ``f`` can be split at 128-block boundaries at all.

        (A single block can't be split; Shardy also rejects a compound
        factor whose major part has size 1.)
        """
        n = self.sizes[f]
        return f not in self.blocked or (n > BLOCK and n % BLOCK == 0)


def _d(f):
    return (f, "d")


def _b(f):
    return (f, "b")


def _p(f):
    return (f, "p")


def layout_of(name: str, shapes, params) -> _Layout:
    """The :class:`_Layout` of primitive ``name`` for operand shapes ``shapes``."""
    nops = len(shapes)
    if name in ("fp8_gemm_nt", "bf16_gemm_nt"):
        fp8 = name.startswith("fp8")
        m, k = shapes[0]
        n = shapes[2][0] if fp8 else shapes[1][0]
        if fp8:
            per_row = shapes[3][0] == n and n != -(-n // BLOCK)
            ops = [(_d("m"), _d("k")), (_p("m"), _b("k")), (_d("n"), _d("k")),
                   ((_p("n") if per_row else _b("n")), _b("k"))]
            blocked = {"k"} | (set() if per_row else {"n"})
        else:
            ops = [(_d("m"), _d("k")), (_d("n"), _d("k"))]
            blocked = set()
        if nops == len(ops) + 1:
            ops.append((_d("m"), _d("n")))
        return _Layout(tuple(ops), (_d("m"), _d("n")), {"m": m, "n": n, "k": k},
                       frozenset(blocked), ("k",), frozenset(), frozenset(),
                       ("n", "k", "m"), (2 if fp8 else 1, 0, -1))
    if name.startswith("m_grouped") and name.endswith("contiguous"):
        fp8 = "fp8" in name
        m, k = shapes[0]
        g, n = (shapes[2] if fp8 else shapes[1])[:2]
        if fp8:
            ops = [(_d("m"), _d("k")), (_p("m"), _b("k")),
                   (_p("g"), _d("n"), _d("k")), (_p("g"), _b("n"), _b("k")), (_p("g"),)]
        else:
            ops = [(_d("m"), _d("k")), (_p("g"), _d("n"), _d("k")), (_p("g"),)]
        return _Layout(tuple(ops), (_d("m"), _d("n")), {"m": m, "n": n, "k": k, "g": g},
                       frozenset({"k", "n"} if fp8 else ()), ("k", "g"), frozenset(),
                       frozenset({nops - 1}), ("g", "n", "k", "m"),
                       (2 if fp8 else 1, 0, -1))
    if name.startswith("m_grouped") and name.endswith("masked"):
        fp8 = "fp8" in name
        g, mx, k = shapes[0]
        n = (shapes[2] if fp8 else shapes[1])[1]
        if fp8:
            ops = [(_p("g"), _d("m"), _d("k")), (_p("g"), _p("m"), _b("k")),
                   (_p("g"), _d("n"), _d("k")), (_p("g"), _b("n"), _b("k")), (_p("g"),)]
        else:
            ops = [(_p("g"), _d("m"), _d("k")), (_p("g"), _d("n"), _d("k")), (_p("g"),)]
        return _Layout(tuple(ops), (_p("g"), _d("m"), _d("n")),
                       {"m": mx, "n": n, "k": k, "g": g},
                       frozenset({"k", "n"} if fp8 else ()), ("k",), frozenset(),
                       frozenset(), ("g", "n", "k", "m"), (2 if fp8 else 1, 0, -1))
    if name.startswith("k_grouped"):
        fp8 = "fp8" in name
        t, m = shapes[0]
        n = (shapes[2] if fp8 else shapes[1])[1]
        gi = 4 if fp8 else 2
        g = shapes[gi][0]
        if fp8:
            ops = [(_p("t"), _p("m")), (_p("r"), _p("m")), (_p("t"), _p("n")),
                   (_p("r"), _p("n")), (_p("g"),)]
            sizes = {"t": t, "m": m, "n": n, "g": g, "r": shapes[1][0]}
            # Group-aligned scale rows depend on the run-time group sizes: the
            # token axis can't be split consistently with its scales.
            reduction, replicate = (), frozenset({"t", "r"})
        else:
            ops = [(_p("t"), _p("m")), (_p("t"), _p("n")), (_p("g"),)]
            sizes = {"t": t, "m": m, "n": n, "g": g}
            reduction, replicate = ("t",), frozenset()
        if nops == len(ops) + 1:
            ops.append((_p("g"), _p("m"), _p("n")))
        return _Layout(tuple(ops), (_p("g"), _p("m"), _p("n")), sizes, frozenset(),
                       reduction, replicate, frozenset({gi}), ("g", "m", "n", "t"),
                       (-1, nops - 1 if nops > gi + 1 else -1, 0, 2 if fp8 else 1))
    raise KeyError(name)  # pragma: no cover


def sharding_rule(lay: _Layout) -> "SdyShardingRule":
    """The Shardy rule of a layout (compound factors for 128-blocked axes)."""
    sizes, need_rep, red = {}, [], []

    def dim(f, kind):
        if f in lay.blocked:
            if lay.aligned(f) and f not in lay.replicate:
                if kind == "d":
                    sizes[f + "_in"] = BLOCK
                    return CompoundFactor(f, f + "_in")
                return f
            return f + "_d" if kind == "d" else f
        return f

    operands = tuple(ArrayMapping(*(dim(f, kd) for f, kd in op)) for op in lay.operands)
    result = (ArrayMapping(*(dim(f, kd) for f, kd in lay.result)),)
    used = []  # in order of first appearance: Shardy wants special factors sorted
    for mp in operands + result:
        for d in mp:
            for x in (d if isinstance(d, tuple) else (d,)):
                if x not in used:
                    used.append(x)
    for f in used:
        base = f[:-3] if f.endswith(("_in",)) else (f[:-2] if f.endswith("_d") else f)
        if f.endswith("_in"):
            need_rep.append(f)  # inside a 128-block: never split
        elif base in lay.replicate or (base in lay.blocked and not lay.aligned(base)):
            need_rep.append(f)
        elif f in lay.reduction:
            red.append(f)
    return SdyShardingRule(operands, result, reduction_factors=tuple(red),
                           need_replication_factors=tuple(need_rep), **sizes)


# ------------------------------------------------------------------ partition


def _spec_dims(sharding, ndim, mesh=None, shape=None):
    """Mesh axes per dimension of an operand's sharding (``None``: unreadable).

    ``partition`` gets raw shardings (``decode_shardings=False``): a NamedSharding
    is read directly, anything else is matched against the NamedShardings of
    ``mesh`` (:func:`_match_mesh_axes`).
    """
    spec = getattr(sharding, "spec", None)
    if spec is None:
        if mesh is None or shape is None:
            return None
        return _match_mesh_axes(sharding, tuple(shape), mesh)
    out = []
    for i in range(ndim):
        e = spec[i] if i < len(spec) else None
        if e is None:
            out.append(())
        elif isinstance(e, str):
            out.append((e,))
        else:
            out.append(tuple(e))
    return out


def _match_mesh_axes(sharding, shape, mesh):
    """Mesh axes per dimension of a raw (HLO-level) sharding, or ``None``.

    Shardy can split a dimension over a *sub-axis* (part of a mesh axis, e.g.
    ``"model":(1)4`` of an 8-way axis): the quantizer's reshape of a weight
    sharded 64 columns per device puts one on its ``[N/128, K/128]`` scale.
    No PartitionSpec expresses that, so jax's own decoding (the default
    ``decode_shardings=True``) raised IndivisibleError before our callback
    ran.  Here such a sharding just yields ``None`` ("unreadable"); ``decide``
    then ignores it, which is safe: ``partition`` states the shardings it
    needs and XLA reshards the operand to them.  Only public APIs
    (``shard_shape``, ``is_equivalent_to``): the candidate specs are the mesh
    axis tuples whose product gives each dimension's shard size.
    """
    from jax.sharding import NamedSharding, PartitionSpec

    try:
        local = tuple(sharding.shard_shape(shape))
    except Exception:  # noqa: BLE001 - an exotic sharding: treat as unreadable
        return None
    names = [a for a in mesh.axis_names if mesh.shape[a] > 1]
    cands = []
    for n, s in zip(shape, local):
        opts = [()] if n == s else []
        for r in range(1, len(names) + 1):
            for axes in itertools.permutations(names, r):
                t = _axes_size(mesh, axes)
                if n != s and -(-n // t) == s:
                    opts.append(axes)
        cands.append(opts)
    for combo in itertools.product(*cands):
        flat = [a for axes in combo for a in axes]
        if len(set(flat)) != len(flat):
            continue
        spec = PartitionSpec(*[(ax[0] if len(ax) == 1 else ax) if ax else None
                               for ax in combo])
        try:
            if NamedSharding(mesh, spec).is_equivalent_to(sharding, len(shape)):
                return list(combo)
        except Exception:  # noqa: BLE001
            return None
    return None


def _axes_size(mesh, axes):
    return int(math.prod(mesh.shape[a] for a in axes))


def decide(lay: _Layout, mesh, arg_specs, result_spec, name="jaxgemm"):
    """Mesh axes per factor: ``{factor: tuple of mesh axis names}``."""
    fax, used = {}, set()
    factors = list(lay.priority) + [f for f in lay.sizes if f not in lay.priority]
    for f in factors:
        if f in lay.replicate:
            fax[f] = ()
            continue
        cand = ()
        for i in lay.prefer:
            dims = lay.result if i == -1 else lay.operands[i]
            specs = result_spec if i == -1 else arg_specs[i]
            if specs is None:
                continue
            for d, (ff, kind) in enumerate(dims):
                if ff == f and kind != "b" and specs[d]:
                    cand = specs[d]
                    break
            if cand:
                break
        if not cand:  # any other operand that shards it
            for i, dims in enumerate(lay.operands):
                if arg_specs[i] is None or i in lay.replicated_operands:
                    continue
                for d, (ff, kind) in enumerate(dims):
                    if ff == f and kind != "b" and arg_specs[i][d]:
                        cand = arg_specs[i][d]
                        break
                if cand:
                    break
        cand = tuple(a for a in cand if a not in used and a in mesh.shape)
        if cand and f in lay.blocked:
            s = _axes_size(mesh, cand)
            size = lay.sizes[f]
            if not lay.aligned(f) or size % (BLOCK * s):
                warnings.warn(
                    f"{name}: axis {f!r} of length {size} is sharded {s} ways over mesh "
                    f"axes {cand}, which puts a shard boundary inside a {BLOCK}-wide "
                    f"FP8 scale block ({f} must be a multiple of {BLOCK}*{s} = "
                    f"{BLOCK * s}); replicating it instead (the operands are gathered "
                    f"along {f!r}).", ShardingFallbackWarning, stacklevel=2)
                cand = ()
        if cand and f == "k" and f not in lay.blocked and lay.sizes[f] % _axes_size(mesh, cand):
            # XLA pads an uneven split; padding inside a contraction would be summed.
            warnings.warn(
                f"{name}: the contraction axis 'k' of length {lay.sizes[f]} is split "
                f"unevenly over mesh axes {cand}; replicating it instead.",
                ShardingFallbackWarning, stacklevel=2)
            cand = ()
        fax[f] = cand
        used.update(cand)
    return fax


def _named(mesh, dims, fax, replicated=False):
    from jax.sharding import NamedSharding, PartitionSpec

    spec = []
    for f, _ in dims:
        ax = () if replicated else fax.get(f, ())
        spec.append(None if not ax else (ax[0] if len(ax) == 1 else tuple(ax)))
    return NamedSharding(mesh, PartitionSpec(*spec))


def shard_index(mesh, axes):
    """Linear index of this device's shard along ``axes`` (0 if none)."""
    idx = jnp.int32(0)
    for a in axes:
        idx = idx * mesh.shape[a] + jax.lax.axis_index(a).astype(jnp.int32)
    return idx


def _window(gs, total, lo, rows, g0, g_local, g_shards):
    """Local group sizes and the first local row for rows ``[lo, lo + rows)``.

    ``gs`` are the *global* group sizes (clamp semantics over ``total``); the
    local groups are ``[g0, g0 + g_local)`` (the groups past ``G`` of the last
    shard are empty).  Returns ``(sizes [g_local], shift)``: local group ``j``
    has ``sizes[j]`` rows, the first local group starting at local row
    ``shift``; the groups are contiguous and in order.
    """
    start, end = _groups.clamped_group_bounds(gs, total)
    g = gs.shape[0]
    pad = g_local * g_shards - g
    if pad:
        last = end[-1:]
        start = jnp.concatenate([start, jnp.broadcast_to(last, (pad,))])
        end = jnp.concatenate([end, jnp.broadcast_to(last, (pad,))])
    if g_shards > 1:
        start = jax.lax.dynamic_slice_in_dim(start, g0, g_local)
        end = jax.lax.dynamic_slice_in_dim(end, g0, g_local)
    s = jnp.clip(start, lo, lo + rows) - lo
    e = jnp.clip(end, lo, lo + rows) - lo
    return (e - s).astype(jnp.int32), s[0].astype(jnp.int32)


def _roll(x, shift, axis=0):
    return jnp.roll(x, shift, axis=axis)


# ------------------------------------------------------------------ per-shard fns


def _psum(x, axes):
    return jax.lax.psum(x, tuple(axes)) if axes else x


def _local_dtype(params, k_axes):
    odt = np.dtype(params["out_dtype"])
    return _F32 if (k_axes and odt != _F32) else odt


def _dense_fn(local, lay, fax, params, mesh):
    has_c = len(lay.operands) in (3, 5)
    k_ax = fax["k"]

    def fn(*ops):
        if not k_ax:
            return local.bind(*ops, **params)
        main = ops[:-1] if has_c else ops
        d = local.bind(*main, out_dtype=_F32, num_sms=params["num_sms"])
        d = _psum(d, k_ax)
        if has_c:
            d = d + ops[-1].astype(_F32)
        return d.astype(params["out_dtype"])

    return fn


def _m_contiguous_fn(local, lay, fax, params, mesh):
    fp8 = len(lay.operands) == 5
    m_ax, g_ax, k_ax = fax["m"], fax["g"], fax["k"]
    m_total = lay.sizes["m"]
    g_shards = _axes_size(mesh, g_ax)

    def fn(*ops):
        a, gs = ops[0], ops[-1]
        b = ops[2] if fp8 else ops[1]
        rows, g_local = a.shape[0], b.shape[0]
        shift = None
        if m_ax or g_ax:
            lo = shard_index(mesh, m_ax) * rows
            g0 = shard_index(mesh, g_ax) * g_local
            gs, sh = _window(gs, m_total, lo, rows, g0, g_local, g_shards)
            if g_ax:
                shift = sh
        data = list(ops[:-1])
        if shift is not None:  # the local experts' rows start at local row 0
            data[0] = _roll(data[0], -shift)
            if fp8:
                data[1] = _roll(data[1], -shift)
        d = local.bind(*data, gs, out_dtype=_local_dtype(params, k_ax),
                       num_sms=params["num_sms"])
        if shift is not None:
            d = _roll(d, shift)
        d = _psum(d, k_ax + g_ax)  # rows of other experts are 0 here: exact
        return d.astype(params["out_dtype"])

    return fn


def _masked_fn(local, lay, fax, params, mesh):
    m_ax, k_ax = fax["m"], fax["k"]
    m_max = lay.sizes["m"]

    def fn(*ops):
        a, mm = ops[0], ops[-1]
        rows = a.shape[1]
        mm = _groups.clamped_masked_m(mm, m_max)
        if m_ax:
            lo = shard_index(mesh, m_ax) * rows
            mm = jnp.clip(mm - lo, 0, rows).astype(jnp.int32)
        d = local.bind(*ops[:-1], mm, expected_m=min(int(params["expected_m"]), rows),
                       out_dtype=_local_dtype(params, k_ax), num_sms=params["num_sms"],
                       zero_masked_rows=params.get("zero_masked_rows", True))
        d = _psum(d, k_ax)
        return d.astype(params["out_dtype"])

    return fn


def _k_grouped_fn(local, lay, fax, params, mesh):
    fp8 = len(lay.operands) >= 5 and lay.operands[1][0][0] == "r"
    gi = 4 if fp8 else 2
    has_c = len(lay.operands) == gi + 2
    t_ax, g_ax = fax.get("t", ()), fax["g"]
    t_total = lay.sizes["t"]
    g_shards = _axes_size(mesh, g_ax)

    def fn(*ops):
        ops = list(ops)
        gs = ops[gi]
        c = ops[gi + 1] if has_c else None
        g_local = c.shape[0] if has_c else None
        if g_local is None:
            g_local = -(-gs.shape[0] // g_shards)
        if t_ax or g_ax:
            rows = ops[0].shape[0]
            lo = shard_index(mesh, t_ax) * rows
            g0 = shard_index(mesh, g_ax) * g_local
            sizes, shift = _window(gs, t_total, lo, rows, g0, g_local, g_shards)
            if g_ax:
                tok = (0, 2) if fp8 else (0, 1)
                for i in tok:
                    ops[i] = _roll(ops[i], -shift)
                if fp8:  # scale rows of the groups before g0
                    start, end = _groups.clamped_group_bounds(gs, t_total)
                    nblk = (end - start + (BLOCK - 1)) // BLOCK
                    first_row = (jnp.cumsum(nblk) - nblk)
                    pad = g_local * g_shards - gs.shape[0]
                    if pad:
                        first_row = jnp.concatenate(
                            [first_row, jnp.broadcast_to(jnp.sum(nblk), (pad,))])
                    r0 = jax.lax.dynamic_slice_in_dim(first_row, g0, 1)[0]
                    ops[1] = _roll(ops[1], -r0)
                    ops[3] = _roll(ops[3], -r0)
            gs = sizes
        main = ops[:gi] + [gs]
        if has_c and not t_ax:
            return local.bind(*main, c, **params)
        d = local.bind(*main, **params)
        d = _psum(d, t_ax)
        if has_c:
            d = d + c
        return d

    return fn


_FNS = {
    "fp8_gemm_nt": _dense_fn,
    "bf16_gemm_nt": _dense_fn,
    "m_grouped_fp8_gemm_nt_contiguous": _m_contiguous_fn,
    "m_grouped_bf16_gemm_nt_contiguous": _m_contiguous_fn,
    "m_grouped_fp8_gemm_nt_masked": _masked_fn,
    "m_grouped_bf16_gemm_nt_masked": _masked_fn,
    "k_grouped_fp8_gemm_tn_contiguous": _k_grouped_fn,
    "k_grouped_bf16_gemm_tn_contiguous": _k_grouped_fn,
}


def _warn_unread(name, lay, fax, arg_shapes, arg_specs, result_shape, result_spec):
    """Warn about unreadable (sub-axis) shardings whose split ``decide`` didn't keep.

    Such a split is dropped (XLA reshards the operand); say so only where the
    factor ends up replicated, i.e. where the communication differs from what
    was asked (usually with the misaligned-block warning of ``decide``).
    """
    items = [(f"operand {i}", s, lay.operands[i]) for i, s in enumerate(arg_shapes)
             if arg_specs[i] is None]
    if result_spec is None:
        items.append(("the result", result_shape, lay.result))
    lost = []
    for what, s, dims in items:
        try:
            local = tuple(s.sharding.shard_shape(tuple(s.shape)))
        except Exception:  # noqa: BLE001
            local = tuple(s.shape)
        split = [f for (f, _), n, ln in zip(dims, s.shape, local) if ln < n and not fax.get(f)]
        if split:
            lost.append(f"{what} {tuple(s.shape)} split along {sorted(set(split))} by "
                        f"{s.sharding}")
    if lost:
        warnings.warn(
            f"{name}: ignoring shardings that no PartitionSpec of the mesh expresses "
            f"(Shardy sub-axes: parts of a mesh axis, e.g. from a reshape of an array "
            f"whose shards are smaller than a {BLOCK}-wide FP8 scale block): "
            f"{'; '.join(lost)}. Those axes are replicated instead (XLA gathers the "
            f"operands); to keep a blocked axis sharded, make each shard a multiple "
            f"of {BLOCK}.", ShardingFallbackWarning, stacklevel=3)


def plan(name, local, lay, params, mesh, arg_shapes, result_shape):
    """What ``partition`` returns: ``(mesh, fn, result_sharding, arg_shardings)``."""
    arg_specs = [_spec_dims(s.sharding, len(s.shape), mesh, s.shape) for s in arg_shapes]
    result_spec = _spec_dims(result_shape.sharding, len(result_shape.shape), mesh,
                             result_shape.shape)
    fax = decide(lay, mesh, arg_specs, result_spec, name)
    _warn_unread(name, lay, fax, arg_shapes, arg_specs, result_shape, result_spec)
    if os.environ.get("JAXGEMM_DEBUG_PARTITION"):
        print(f"[jaxgemm] partition {name}: args {arg_specs} result {result_spec} "
              f"-> {fax}", file=sys.stderr)
    arg_sh = tuple(_named(mesh, dims, fax, i in lay.replicated_operands)
                   for i, dims in enumerate(lay.operands))
    out_sh = _named(mesh, lay.result, fax)
    return mesh, _FNS[name](local, lay, fax, params, mesh), out_sh, arg_sh


# ------------------------------------------------------------------ lowering


@functools.lru_cache(maxsize=None)
def _partitioned(name, local, shapes, params_items):
    params = dict(params_items)
    lay = layout_of(name, shapes, params)

    def fwd(*ops):
        return local.bind(*ops, **params)

    def partition(mesh, arg_shapes, result_shape):
        return plan(name, local, lay, params, mesh, arg_shapes, result_shape)

    cp = custom_partitioning(fwd)
    # decode_shardings=False: jax's decoding to NamedSharding fails on Shardy
    # sub-axes (IndivisibleError before ``partition`` runs); plan() reads them.
    cp.def_partition(partition, sharding_rule=sharding_rule(lay), decode_shardings=False)
    return cp


def lowering(name, local):
    """The MLIR lowering rule of primitive ``name`` (binds ``local`` per shard)."""

    def rule(ctx, *args, **params):
        shapes = tuple(tuple(int(d) for d in a.shape) for a in ctx.avals_in)
        if (custom_partitioning is None or not _state["enabled"]
                or any(0 in s for s in shapes)):
            fn = functools.partial(local.bind, **params)
        else:
            fn = _partitioned(name, local, shapes, tuple(sorted(params.items())))
        return mlir.lower_fun(fn, multiple_results=False)(ctx, *args)

    return rule


def requires_devices(*prims) -> None:
    """Mark primitives whose lowering needs the device assignment (custom_partitioning)."""
    try:
        from jax._src import dispatch
        dispatch.prim_requires_devices_during_lowering.update(prims)
    except (ImportError, AttributeError):  # pragma: no cover - a jax without it
        pass
