"""Trace-time argument checks shared by every public op.

Each error names the function, the argument (``a.scale``, ``group_sizes``...),
what it got and what it needs.  Wrong dtypes raise ``TypeError``; wrong ranks,
shapes and values raise ``ValueError``.  A wrongly typed ``group_sizes`` /
``masked_m`` raises :class:`GroupSizesDtypeError`, which is both.
"""
from __future__ import annotations

from typing import Sequence

import jax.numpy as jnp
import numpy as np

from jaxgemm import _backend, layout

FP8 = np.dtype(jnp.float8_e4m3fn)
BF16 = np.dtype(jnp.bfloat16)
F32 = np.dtype(np.float32)
I32 = np.dtype(np.int32)
OUT_DTYPES = (BF16, F32)
_BLK = layout.SCALE_BLOCK


class GroupSizesDtypeError(TypeError, ValueError):
    """``group_sizes`` / ``masked_m`` is not int32 (a TypeError and a ValueError)."""


def _shape(x) -> tuple:
    return tuple(int(d) for d in x.shape)


def as_array(fn: str, name: str, x):
    """``x`` if it has ``shape`` and ``dtype``, else ``jnp.asarray(x)``."""
    if hasattr(x, "shape") and hasattr(x, "dtype"):
        return x
    try:
        return jnp.asarray(x)
    except Exception as e:
        raise TypeError(f"{fn}: {name} must be an array; got {type(x).__name__}") from e


def check_dtype(fn: str, name: str, x, allowed: Sequence) -> None:
    dt = np.dtype(x.dtype)
    allowed = tuple(np.dtype(a) for a in allowed)
    if dt not in allowed:
        need = " or ".join(str(a) for a in allowed)
        raise TypeError(f"{fn}: {name} has dtype {dt}; expected {need}")


def fp8_operand(fn: str, name: str, x):
    """Unpack and type-check an FP8 operand ``(data, scale)``."""
    if not isinstance(x, (tuple, list)) or len(x) != 2:
        got = (f"a {type(x).__name__} of length {len(x)}"
               if isinstance(x, (tuple, list)) else type(x).__name__)
        if hasattr(x, "dtype"):
            got += f" with dtype {np.dtype(x.dtype)}"
        raise TypeError(
            f"{fn}: {name} must be an FP8 operand, a pair (data, scale) with data "
            f"float8_e4m3fn and scale float32 (see jaxgemm.per_token_cast_to_fp8 / "
            f"per_block_cast_to_fp8); got {got}")
    data = as_array(fn, f"{name}.data", x[0])
    scale = as_array(fn, f"{name}.scale", x[1])
    check_dtype(fn, f"{name}.data", data, (FP8,))
    check_dtype(fn, f"{name}.scale", scale, (F32,))
    return data, scale


def bf16_operand(fn: str, name: str, x):
    if isinstance(x, (tuple, list)):
        raise TypeError(f"{fn}: {name} must be a bfloat16 array; got a "
                        f"{type(x).__name__} (FP8 pairs go to the fp8_* functions)")
    x = as_array(fn, name, x)
    check_dtype(fn, name, x, (BF16,))
    return x


def _fmt_axes(names: Sequence[str]) -> str:
    return "[" + ", ".join(names) + "]"


def check_rank(fn: str, name: str, x, axes: Sequence[str]) -> None:
    if x.ndim != len(axes):
        raise ValueError(f"{fn}: {name} has shape {_shape(x)}; expected rank "
                         f"{len(axes)} {_fmt_axes(axes)}")


def dims(x, axes: Sequence[str]) -> dict:
    return dict(zip(axes, _shape(x)))


def check_dim(fn: str, name: str, x, axes: Sequence[str], axis: str, want: int,
              source: str) -> None:
    """``x``'s axis ``axis`` must equal ``want`` (which comes from ``source``)."""
    got = dims(x, axes)[axis]
    if got != want:
        raise ValueError(
            f"{fn}: {name} has shape {_shape(x)} = {_fmt_axes(axes)}; its {axis} "
            f"({got}) must equal {source} ({want})")


def check_scale(fn: str, name: str, data, scale, axes: Sequence[str],
                kinds: Sequence) -> None:
    """Check a scale's shape against its data.

    ``kinds`` has one entry per axis: ``"full"`` (unblocked), ``"block"``
    (blocked by 128) or a tuple of those (either accepted; the first is listed
    first).  The scale's axis order is the data's.
    """
    dshape = _shape(data)
    cands = [([], [])]
    for ax, d, kind in zip(axes, dshape, kinds):
        opts = kind if isinstance(kind, tuple) else (kind,)
        new = []
        for shp, desc in cands:
            for k in opts:
                if k == "full":
                    new.append((shp + [d], desc + [ax]))
                else:
                    new.append((shp + [layout.num_scale_blocks(d)],
                                desc + [f"ceil({ax}/{_BLK})"]))
        cands = new
    sshape = _shape(scale)
    if any(tuple(s) == sshape for s, _ in cands):
        return
    expected = " or ".join(f"{tuple(s)} = ({', '.join(dsc)})" for s, dsc in cands)
    raise ValueError(
        f"{fn}: {name}.scale has shape {sshape}; expected {expected} for "
        f"{name}.data of shape {dshape}")


def check_c(fn: str, c, want_shape: tuple, axes: Sequence[str]):
    if c is None:
        return None
    c = as_array(fn, "c", c)
    check_dtype(fn, "c", c, (F32,))
    if _shape(c) != tuple(want_shape):
        raise ValueError(f"{fn}: c has shape {_shape(c)}; expected {tuple(want_shape)} "
                         f"= {_fmt_axes(axes)}")
    return c


def out_dtype(fn: str, out_dtype, has_c: bool) -> np.dtype:
    """Resolve ``out_dtype``: default bfloat16, float32 with ``c``."""
    if out_dtype is None:
        return F32 if has_c else BF16
    try:
        dt = np.dtype(out_dtype)
    except TypeError:
        raise ValueError(f"{fn}: out_dtype must be bfloat16 or float32; got "
                         f"{out_dtype!r}") from None
    if has_c and dt != F32:
        raise ValueError(f"{fn}: out_dtype={dt} is not allowed with c; with an "
                         f"accumulator c (float32) the output is float32 (pass "
                         f"out_dtype=None or float32)")
    if dt not in OUT_DTYPES:
        raise ValueError(f"{fn}: out_dtype must be bfloat16 or float32; got {dt}")
    return dt


def num_sms(fn: str, n):
    return _backend.resolve_num_sms(n, fn)


def group_sizes(fn: str, name: str, gs, g: int | None, what: str = "G"):
    """``gs`` must be an int32 ``[G]`` array (lists/tuples are converted).

    With ``g=None`` any length is accepted (the group count comes from ``gs``).
    """
    want = f"({g},) = [{what}]" if g is not None else f"[{what}] (rank 1)"
    if isinstance(gs, (list, tuple)):
        gs = jnp.asarray(gs, dtype=jnp.int32)
    if not (hasattr(gs, "shape") and hasattr(gs, "dtype")):
        raise GroupSizesDtypeError(
            f"{fn}: {name} must be an int32 array of shape {want}; got "
            f"{type(gs).__name__}")
    if np.dtype(gs.dtype) != I32:
        raise GroupSizesDtypeError(
            f"{fn}: {name} has dtype {np.dtype(gs.dtype)}; expected int32 of shape "
            f"{want}")
    if len(gs.shape) != 1 or (g is not None and _shape(gs) != (g,)):
        extra = " (one entry per group of b)" if g is not None else ""
        raise ValueError(f"{fn}: {name} has shape {_shape(gs)}; expected {want}{extra}")
    return gs


def static_int(fn: str, name: str, v, *, minimum: int = 0) -> int:
    import operator
    if isinstance(v, bool):
        raise TypeError(f"{fn}: {name} must be a static int; got bool")
    try:
        v = operator.index(v)
    except TypeError:
        raise TypeError(f"{fn}: {name} must be a static int; got "
                        f"{type(v).__name__} {v!r}") from None
    if v < minimum:
        raise ValueError(f"{fn}: {name} must be >= {minimum}; got {v}")
    return int(v)
