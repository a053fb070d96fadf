"""The jaxgemm primitives: abstract evaluation, dispatch, lowering, batching.

One ``jax.extend.core.Primitive`` per op name (the keys of
``jaxgemm._kernels.KERNEL_IMPLS`` and ``jaxgemm.reference.REFERENCE_IMPLS``):

==================================  ===============================================
name                                operands; params
==================================  ===============================================
fp8_gemm_nt                         a, sa, b, sb[, c]; out_dtype, num_sms
bf16_gemm_nt                        a, b[, c]; out_dtype, num_sms
m_grouped_fp8_gemm_nt_contiguous    a, sa, b, sb, group_sizes; out_dtype, num_sms
m_grouped_bf16_gemm_nt_contiguous   a, b, group_sizes; out_dtype, num_sms
m_grouped_fp8_gemm_nt_masked        a, sa, b, sb, masked_m; expected_m, out_dtype, num_sms, zero_masked_rows
m_grouped_bf16_gemm_nt_masked       a, b, masked_m; expected_m, out_dtype, num_sms, zero_masked_rows
k_grouped_fp8_gemm_tn_contiguous    a, sa, b, sb, group_sizes[, c]; num_sms
k_grouped_bf16_gemm_tn_contiguous   a, b, group_sizes[, c]; num_sms
==================================  ===============================================

``out_dtype`` is a NumPy dtype, ``num_sms`` an int or None, ``expected_m`` an
int.  The operands are already validated by the public functions
(:mod:`jaxgemm.ops`), in the NT layout.

Lowering: each primitive lowers through ``custom_partitioning``
(:mod:`jaxgemm._partition`, see ``docs/sharding.md``), which binds the
per-shard primitive ``LOCAL_PRIMITIVES[name]`` (``name + "_local"``) on every
device's shards (or once, unsharded).  The local primitive lowers to the
reference implementation (``mlir.lower_fun``) on every platform; on ``cuda``
the implementation is picked when lowering, by the backend policy
(:mod:`jaxgemm._backend`): ``KERNEL_IMPLS[name]`` when it exists and the
policy resolves to ``"kernel"``, else the reference.

Differentiation: JVP and transpose rules in :mod:`jaxgemm._autodiff`
(registered at the end of this module).

Batching: the dense ops fold a batch axis of the A side (A, its scale, C)
into M when B is unbatched (one call); every other case maps the primitive
over the batch with ``jax.lax.map``.
"""
from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
from jax.extend.core import Primitive
from jax.interpreters import batching, mlir

from jaxgemm import _backend, _explicit, _partition
from jaxgemm.reference import REFERENCE_IMPLS

try:  # public in every supported jax
    from jax.core import ShapedArray
except ImportError:  # pragma: no cover - guard for a future jax
    from jax._src.core import ShapedArray  # type: ignore

__all__ = ["LOCAL_PRIMITIVES", "PRIMITIVES", "bind", "get_primitive", "select_impl"]

_F32 = np.dtype(np.float32)

# -------------------------------------------------------------- shape rules


def _result(shape, dtype, dims):
    """The result aval.  ``dims[i]`` lists the ``(operand aval, axis)`` pairs
    whose sharding result axis ``i`` takes under *explicit* mesh axes (where
    shardings are part of the types; the first sharded one wins), empty for an
    unsharded axis (contraction axes are reduced by the partitioning rules,
    ``_partition``).  A mesh axis already used by an earlier result axis is
    dropped; without explicit axes the result is a plain ShapedArray."""
    found = next((f for f in (_explicit.aval_spec(av) for d in dims for av, _ in d) if f),
                 None)
    if found is None:
        return ShapedArray(shape, dtype)
    mesh = found[0]
    spec, used = [], set()
    for options in dims:
        entry = next((f[1][ax] for f, ax in ((_explicit.aval_spec(av), ax)
                                             for av, ax in options) if f and f[1][ax]),
                     None)
        names = tuple(n for n in _explicit.axis_names(entry) if n not in used)
        used.update(names)
        spec.append(None if not names else names[0] if len(names) == 1 else names)
    return ShapedArray(shape, dtype,
                       sharding=jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec(*spec)))


def _abstract_dense(a, b, out_dtype):
    if a.ndim != 2 or b.ndim != 2:
        raise ValueError(f"dense GEMM primitive: a and b must be rank 2; got "
                         f"{a.shape} and {b.shape}")
    return _result((a.shape[0], b.shape[0]), np.dtype(out_dtype), [[(a, 0)], [(b, 0)]])


def _fp8_gemm_nt_abstract(a, sa, b, sb, *c, out_dtype, num_sms):
    return _abstract_dense(a, b, out_dtype)


def _bf16_gemm_nt_abstract(a, b, *c, out_dtype, num_sms):
    return _abstract_dense(a, b, out_dtype)


def _contig_abstract(a, b, out_dtype):
    return _result((a.shape[0], b.shape[1]), np.dtype(out_dtype), [[(a, 0)], [(b, 1)]])


def _m_fp8_contig_abstract(a, sa, b, sb, gs, *, out_dtype, num_sms):
    return _contig_abstract(a, b, out_dtype)


def _m_bf16_contig_abstract(a, b, gs, *, out_dtype, num_sms):
    return _contig_abstract(a, b, out_dtype)


def _masked_abstract(a, b, out_dtype):
    return _result((a.shape[0], a.shape[1], b.shape[1]), np.dtype(out_dtype),
                   [[(a, 0), (b, 0)], [(a, 1)], [(b, 1)]])


def _m_fp8_masked_abstract(a, sa, b, sb, mm, *, expected_m, out_dtype, num_sms,
                           zero_masked_rows=True):
    return _masked_abstract(a, b, out_dtype)


def _m_bf16_masked_abstract(a, b, mm, *, expected_m, out_dtype, num_sms,
                            zero_masked_rows=True):
    return _masked_abstract(a, b, out_dtype)


def _k_abstract(a, b, gs):
    return _result((gs.shape[0], a.shape[1], b.shape[1]), _F32, [[(gs, 0)], [(a, 1)], [(b, 1)]])


def _k_fp8_abstract(a, sa, b, sb, gs, *c, num_sms):
    return _k_abstract(a, b, gs)


def _k_bf16_abstract(a, b, gs, *c, num_sms):
    return _k_abstract(a, b, gs)


# name -> (shape rule, indices of the A-side operands that can fold into M or None)
_SPECS = {
    "fp8_gemm_nt": (_fp8_gemm_nt_abstract, {"fp8": True}),
    "bf16_gemm_nt": (_bf16_gemm_nt_abstract, {"fp8": False}),
    "m_grouped_fp8_gemm_nt_contiguous": (_m_fp8_contig_abstract, None),
    "m_grouped_bf16_gemm_nt_contiguous": (_m_bf16_contig_abstract, None),
    "m_grouped_fp8_gemm_nt_masked": (_m_fp8_masked_abstract, None),
    "m_grouped_bf16_gemm_nt_masked": (_m_bf16_masked_abstract, None),
    "k_grouped_fp8_gemm_tn_contiguous": (_k_fp8_abstract, None),
    "k_grouped_bf16_gemm_tn_contiguous": (_k_bf16_abstract, None),
}

# ------------------------------------------------------------------ dispatch


try:  # jax's own eager dispatch of a primitive (compiles it alone; cached)
    from jax.interpreters.xla import apply_primitive as _apply_primitive
except ImportError:  # pragma: no cover - guard for a jax that drops it
    _apply_primitive = None


@functools.lru_cache(maxsize=None)
def _jitted(prim, params_items):
    params = dict(params_items)
    return jax.jit(lambda *args: prim.bind(*args, **params))


def _apply(prim, *args, **params):
    """Eager impl: compile the primitive alone and run it (cached per signature).

    Uses ``jax.interpreters.xla.apply_primitive`` (which also works under
    ``jax.disable_jit()``); without it, dispatches through ``jax.jit``.
    """
    if _apply_primitive is not None:
        return _apply_primitive(prim, *args, **params)
    return _jitted(prim, tuple(sorted(params.items())))(*args)


# ------------------------------------------------------------------ lowering


def select_impl(name: str):
    """``(choice, fn)`` for a CUDA lowering of ``name`` under the current policy.

    ``choice`` is ``"kernel"`` or ``"reference"``; raises ``RuntimeError`` on a
    non-Hopper GPU unless the policy is ``"reference"``.
    """
    from jaxgemm import _kernels  # imported lazily: CPU-only use never needs it

    kernel = _kernels.KERNEL_IMPLS.get(name)
    choice = _backend.resolve_policy(_backend.get_backend(),
                                     _backend.cuda_device_info(),
                                     has_kernel=kernel is not None)
    return choice, (kernel if choice == "kernel" else REFERENCE_IMPLS[name])


def _cuda_lowering(name, ctx, *args, **params):
    _, fn = select_impl(name)
    return mlir.lower_fun(functools.partial(fn, **params),
                          multiple_results=False)(ctx, *args)


# ------------------------------------------------------------------ batching


def _move_to_front(x, d, size):
    if d is None:
        return jnp.broadcast_to(x, (size,) + tuple(x.shape))
    return jnp.moveaxis(x, d, 0)


def _map_batch(prim, args, dims, params):
    size = next(x.shape[d] for x, d in zip(args, dims) if d is not None)
    idx = [i for i, d in enumerate(dims) if d is not None]
    xs = tuple(_move_to_front(args[i], dims[i], size) for i in idx)

    def body(batched):
        full = list(args)
        for i, x in zip(idx, batched):
            full[i] = x
        return prim.bind(*full, **params)

    return jax.lax.map(body, xs), 0


def _dense_batch(prim, fp8, args, dims, **params):
    nargs = len(args)
    a_side = (0, 1) if fp8 else (0,)
    has_c = nargs == (5 if fp8 else 3)
    if has_c:
        a_side = a_side + (nargs - 1,)
    b_side = [i for i in range(nargs) if i not in a_side]
    if any(dims[i] is not None for i in b_side):
        return _map_batch(prim, args, dims, params)
    size = next(args[i].shape[dims[i]] for i in a_side if dims[i] is not None)
    a_shape = list(args[0].shape)
    if dims[0] is not None:
        del a_shape[dims[0]]
    m = a_shape[0]
    full = list(args)
    for i in a_side:
        x = _move_to_front(args[i], dims[i], size)
        full[i] = x.reshape((size * x.shape[1],) + tuple(x.shape[2:]))
    out = prim.bind(*full, **params)
    return out.reshape((size, m) + tuple(out.shape[1:])), 0


def _grouped_batch(prim, args, dims, **params):
    return _map_batch(prim, args, dims, params)


# ------------------------------------------------- shard_map varying axes
#
# Inside ``jax.shard_map`` every value's type says over which manual mesh axes
# it varies (jax >= 0.10: ``aval.mat.varying``; earlier ``aval.vma``), and
# transposition checks that a cotangent has its primal's type.  JAX's own
# primitives first cast every operand to the union of the operands' varying
# axes (pvary: its transpose sums the cotangent of an invariant operand, such
# as a replicated weight, over those axes) and give the result that union.
# The jaxgemm primitives do the same; without it their results were typed
# invariant, which broke jax.grad inside shard_map and let an out_specs that
# promised replication pass unchecked.


def _varying_axes(aval) -> frozenset:
    mat = getattr(aval, "mat", None)
    if mat is not None:
        return frozenset(mat.varying)
    return frozenset(getattr(aval, "vma", ()) or ())


def _with_varying(out, axes: frozenset, avals):
    if not axes:
        return out
    mesh = next((a.sharding.mesh for a in avals
                 if getattr(a, "sharding", None) is not None and not a.sharding.mesh.empty), None)
    if mesh is not None and out.sharding.mesh.empty:
        # The manual axes live on the shard_map's mesh: type the result on it.
        out = out.update(sharding=jax.sharding.NamedSharding(
            mesh, jax.sharding.PartitionSpec(*[None] * len(out.shape))))
    if hasattr(out, "update_manual_axis_type"):
        return out.update_manual_axis_type(out.mat.update(varying=axes))
    return out.update(vma=axes)  # pragma: no cover - jax < 0.10


def _cast_varying(x, axes: tuple):
    if hasattr(jax.lax, "pcast"):
        return jax.lax.pcast(x, axes, to="varying")
    return jax.lax.pvary(x, axes)  # pragma: no cover - jax < 0.10


def _match_varying(args):
    avals = [jax.typeof(x) for x in args]
    axes = frozenset().union(*(_varying_axes(a) for a in avals))
    if not axes:
        return args
    return tuple(x if _varying_axes(a) == axes
                 else _cast_varying(x, tuple(sorted(axes - _varying_axes(a), key=str)))
                 for x, a in zip(args, avals))


def _varying_abstract(abstract):
    def rule(*avals, **params):
        out = abstract(*avals, **params)
        return _with_varying(out, frozenset().union(*(_varying_axes(a) for a in avals)),
                             avals)
    return rule


class _GemmPrimitive(Primitive):
    """A Primitive whose operands are cast to their common varying axes."""

    def bind(self, *args, **params):
        return super().bind(*_match_varying(args), **params)


# ------------------------------------------------------------------ registry


def _make_local(name, abstract):
    # The per-device primitive: lowers to the reference, or on CUDA by policy.
    p = _GemmPrimitive(name + "_local")
    p.def_abstract_eval(_varying_abstract(abstract))
    p.def_impl(functools.partial(_apply, p))
    mlir.register_lowering(
        p, mlir.lower_fun(REFERENCE_IMPLS[name], multiple_results=False))
    mlir.register_lowering(p, functools.partial(_cuda_lowering, name),
                           platform="cuda")
    LOCAL_PRIMITIVES[name] = p
    return p


def _make(name, abstract, dense):
    p = _GemmPrimitive(name)
    p.def_abstract_eval(_varying_abstract(abstract))
    p.def_impl(functools.partial(_apply, p))
    # Lowers through custom_partitioning (jaxgemm._partition), which binds the
    # local primitive on every shard (or once, unsharded).
    local = _make_local(name, abstract)
    mlir.register_lowering(p, _partition.lowering(name, local))
    _partition.requires_devices(p, local)
    if dense is not None:
        batching.primitive_batchers[p] = functools.partial(_dense_batch, p,
                                                           dense["fp8"])
    else:
        batching.primitive_batchers[p] = functools.partial(_grouped_batch, p)
    return p


#: Primitive name -> the per-shard ``Primitive`` (``name + "_local"``).
LOCAL_PRIMITIVES: dict = {}
#: Primitive name -> ``jax.extend.core.Primitive``.
PRIMITIVES = {name: _make(name, abstract, dense)
              for name, (abstract, dense) in _SPECS.items()}


def get_primitive(name: str) -> Primitive:
    return PRIMITIVES[name]


def bind(name: str, *operands, **params):
    """Bind primitive ``name`` (operands already validated and in NT layout)."""
    return PRIMITIVES[name].bind(*operands, **params)


# Differentiation rules (jaxgemm._autodiff): JVPs and transposes that run the
# backward GEMMs on the same primitives.
from jaxgemm import _autodiff  # noqa: E402

_autodiff.register(PRIMITIVES)
