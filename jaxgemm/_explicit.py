"""128-block reshapes that also work on arrays with *explicit* mesh-axis shardings.

Under ``jax.sharding.AxisType.Explicit`` (what ``jax.make_mesh`` creates by
default) an array's sharding is part of its type, and ``reshape`` must be told
the result's sharding wherever JAX cannot infer it, which it can't for
splitting a sharded axis into ``(blocks, 128)``.  The quantizers use these
helpers for every such reshape: the blocks axis keeps the mesh axes, the
128-axis is unsharded.  A sharded axis whose shards are not whole 128-blocks
(or that must be padded to whole blocks) is first gathered along that axis
(``jax.sharding.reshard``) with a :class:`ShardingFallbackWarning`: never a
scale block that straddles two devices.  Arrays without explicit axes (Auto
meshes, a single device, inside ``shard_map``) take the plain reshape.
"""
from __future__ import annotations

import math
import warnings

import jax
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from jaxgemm import layout

_BLK = layout.SCALE_BLOCK


def aval_spec(aval):
    """``(mesh, spec padded to aval.ndim)`` if the abstract value ``aval`` carries
    explicit mesh axes in its type, else None."""
    sharding = getattr(aval, "sharding", None)
    mesh = getattr(sharding, "mesh", None)
    types = getattr(mesh, "axis_types", ()) or ()
    if not any(t == jax.sharding.AxisType.Explicit for t in types):
        return None
    spec = tuple(sharding.spec)
    return mesh, spec + (None,) * (aval.ndim - len(spec))


def _spec_of(x):
    """:func:`aval_spec` of an array or tracer."""
    try:
        return aval_spec(jax.typeof(x))
    except Exception:  # noqa: BLE001 - not an array (or an old jax): no explicit axes
        return None


def axis_names(entry) -> tuple:
    """The mesh axis names of one PartitionSpec entry (None, a name, or a tuple)."""
    return () if entry is None else (entry,) if isinstance(entry, str) else tuple(entry)


def _ways(mesh, entry) -> int:
    return math.prod(mesh.shape[n] for n in axis_names(entry))


def _drop(x, mesh, spec, axes):
    """``x`` resharded with the mesh axes of ``axes`` removed (gathered)."""
    new = [None if i in axes else e for i, e in enumerate(spec)]
    return jax.sharding.reshard(x, NamedSharding(mesh, P(*new)))


def gather_unaligned(x, axes, padded, fn: str):
    """``x`` with every explicitly sharded axis in ``axes`` gathered whose shards
    would not be whole 128-blocks once padded to ``padded[i]``."""
    found = _spec_of(x)
    if found is None:
        return x
    mesh, spec = found
    axes = [a % x.ndim for a in axes]
    bad = [a for a, full in zip(axes, padded)
           if spec[a] is not None and (full != x.shape[a] or full % (_ways(mesh, spec[a]) * _BLK))]
    if not bad:
        return x
    from jaxgemm._partition import ShardingFallbackWarning

    warnings.warn(
        f"{fn}: axis {bad} of the {x.shape} input is split over mesh axes "
        f"{[spec[a] for a in bad]} in shards that are not whole {_BLK}-blocks; it is "
        "gathered along that axis before quantizing (correct, but the split is lost)",
        ShardingFallbackWarning, stacklevel=3)
    return _drop(x, mesh, spec, set(bad))


def replicate_axes(x, axes):
    """``x`` gathered along ``axes`` if they are explicitly sharded (for gathers
    with data-dependent indices along them, which JAX cannot shard by type)."""
    found = _spec_of(x)
    if found is None:
        return x
    mesh, spec = found
    axes = {a % x.ndim for a in axes}
    if all(spec[a] is None for a in axes):
        return x
    return _drop(x, mesh, spec, axes)


def typed_like(ct, source, perm=None):
    """``ct`` resharded to the explicit sharding type of ``source`` (its axes
    permuted by ``perm``: result axis i takes source axis perm[i]).  A custom
    VJP's cotangent must have its primal's type; the GEMM that computes it
    types its result from *its* operands (e.g. a weight gradient from the
    tokens), which need not match.  Without explicit axes ``ct`` is returned."""
    found = _spec_of(source)
    if found is None:
        return ct
    mesh, spec = found
    want = tuple(spec[i] for i in perm) if perm is not None else spec
    have = _spec_of(ct)
    if have is not None and tuple(have[1]) == want:
        return ct
    return jax.sharding.reshard(ct, NamedSharding(mesh, P(*want)))


def split_blocks(x, axes):
    """Each axis in ``axes`` (a multiple of 128 long) split into ``(n / 128, 128)``."""
    axes = {a % x.ndim for a in axes}
    shape, found = [], _spec_of(x)
    out_spec = []
    for i, d in enumerate(x.shape):
        entry = found[1][i] if found else None
        if i in axes:
            shape += [d // _BLK, _BLK]
            out_spec += [entry, None]
        else:
            shape.append(d)
            out_spec.append(entry)
    if found is None:
        return x.reshape(shape)
    return jax.lax.reshape(x, shape, out_sharding=NamedSharding(found[0], P(*out_spec)))


def merge_blocks(x, axes):
    """Inverse of :func:`split_blocks`: each ``(blocks, 128)`` pair starting at an
    axis in ``axes`` (axes of ``x``) merged back into one axis."""
    axes = {a % x.ndim for a in axes}
    shape, found = [], _spec_of(x)
    out_spec = []
    i = 0
    while i < x.ndim:
        entry = found[1][i] if found else None
        if i in axes:
            shape.append(x.shape[i] * x.shape[i + 1])
            i += 2
        else:
            shape.append(x.shape[i])
            i += 1
        out_spec.append(entry)
    if found is None:
        return x.reshape(shape)
    return jax.lax.reshape(x, shape, out_sharding=NamedSharding(found[0], P(*out_spec)))
