"""Backend policy: which implementation a primitive lowers to on CUDA.

Policy values (``JAXGEMM_BACKEND`` environment variable, :func:`set_backend`,
or the :func:`backend` context manager):

* ``"auto"`` (default): the CUDA kernels on a Hopper GPU (compute capability
  9.x); on any other CUDA GPU lowering raises a ``RuntimeError`` that names the
  GPU and says to set ``JAXGEMM_BACKEND=reference``.
* ``"kernel"``: the CUDA kernels; a non-Hopper CUDA GPU raises the same error.
* ``"reference"``: the pure-JAX reference implementation (slow, any device).

Non-CUDA platforms (CPU) always lower to the reference.  The policy is read
when an op is *lowered* (the first call of a jitted function for a given input
signature); :func:`set_backend`, :func:`backend` and :func:`set_num_sms` clear
JAX's compilation caches when they change a value, so later calls re-lower.
"""
from __future__ import annotations

import contextlib
import os
import threading

__all__ = [
    "BACKENDS",
    "backend",
    "get_backend",
    "set_backend",
    "get_num_sms",
    "set_num_sms",
    "hopper_available",
    "cuda_device_info",
    "resolve_policy",
]

BACKENDS = ("auto", "kernel", "reference")
ENV_VAR = "JAXGEMM_BACKEND"

_state = threading.local()
_global = {"backend": None, "num_sms": None}


def _check_backend(name, where: str) -> str:
    if not isinstance(name, str) or name.strip().lower() not in BACKENDS:
        raise ValueError(f"{where}: backend must be one of {BACKENDS}; got {name!r}")
    return name.strip().lower()


def _env_backend() -> str:
    v = os.environ.get(ENV_VAR, "auto")
    return _check_backend(v or "auto", f"environment variable {ENV_VAR}")


def get_backend() -> str:
    """The backend policy in force: ``"auto"``, ``"kernel"`` or ``"reference"``.

    Precedence: the innermost :func:`backend` context, then :func:`set_backend`,
    then the ``JAXGEMM_BACKEND`` environment variable (default ``"auto"``).
    """
    stack = getattr(_state, "stack", None)
    if stack:
        return stack[-1]
    if _global["backend"] is not None:
        return _global["backend"]
    return _env_backend()


def _clear_caches_if_changed(before, after) -> None:
    if before != after:
        import jax
        jax.clear_caches()


def set_backend(name: str | None) -> None:
    """Set the global backend policy (``None`` returns to ``JAXGEMM_BACKEND``).

    Clears JAX's compilation caches if the effective policy changes, so
    already-compiled functions re-lower with the new policy.
    """
    before = get_backend()
    _global["backend"] = None if name is None else _check_backend(name, "set_backend")
    _clear_caches_if_changed(before, get_backend())


@contextlib.contextmanager
def backend(name: str):
    """Context manager: use backend policy ``name`` for ops lowered inside it.

    Example::

        with jaxgemm.backend("reference"):
            d = jax.jit(jaxgemm.fp8_gemm_nt)(a, b)

    Lowering happens at the first call of a jitted function, so call (or
    ``.lower()``) it inside the block.  Entering and leaving clear JAX's
    compilation caches when the policy changes.
    """
    name = _check_backend(name, "backend")
    before = get_backend()
    stack = getattr(_state, "stack", None)
    if stack is None:
        stack = _state.stack = []
    stack.append(name)
    _clear_caches_if_changed(before, name)
    try:
        yield name
    finally:
        stack.pop()
        _clear_caches_if_changed(name, get_backend())


def get_num_sms() -> int | None:
    """Global SM budget of the kernels (``None``: all SMs of the GPU)."""
    return _global["num_sms"]


def _check_num_sms(n, where: str):
    if n is None:
        return None
    if isinstance(n, bool) or not isinstance(n, int):
        try:
            import operator
            n2 = operator.index(n)
        except TypeError:
            raise TypeError(f"{where}: num_sms must be a positive int or None; got "
                            f"{type(n).__name__} {n!r}") from None
        n = n2
    if n <= 0:
        raise ValueError(f"{where}: num_sms must be a positive int or None; got {n}")
    return int(n)


def set_num_sms(n: int | None) -> None:
    """Set the global number of SMs the kernels may use (``None``: all).

    A per-call ``num_sms=`` argument overrides it.  It is resolved when an op is
    traced, into the primitive's ``num_sms`` parameter; a change clears JAX's
    compilation caches.
    """
    n = _check_num_sms(n, "set_num_sms")
    before = _global["num_sms"]
    _global["num_sms"] = n
    _clear_caches_if_changed(before, n)


def resolve_num_sms(n, where: str):
    """The per-call value if given, else the global one (validated)."""
    n = _check_num_sms(n, where)
    return get_num_sms() if n is None else n


def cuda_device_info():
    """``(compute_capability, device_kind)`` of the first CUDA device, or ``None``.

    Never raises: returns ``None`` when JAX has no CUDA backend.
    """
    try:
        import jax
        devs = jax.devices("cuda")
    except Exception:  # no CUDA plugin / no GPU
        return None
    if not devs:
        return None
    d = devs[0]
    cc = getattr(d, "compute_capability", None)
    return (str(cc) if cc is not None else None, str(getattr(d, "device_kind", "?")))


def _is_hopper(cc) -> bool:
    return cc is not None and str(cc).split(".")[0] == "9"


def hopper_available() -> bool:
    """True if JAX sees a CUDA GPU of compute capability 9.x (Hopper)."""
    info = cuda_device_info()
    return info is not None and _is_hopper(info[0])


def resolve_policy(policy: str, device_info, has_kernel: bool = True) -> str:
    """Decide ``"kernel"`` or ``"reference"`` for a CUDA lowering.

    Args:
      policy: ``"auto"``, ``"kernel"`` or ``"reference"``.
      device_info: ``(compute_capability, device_kind)`` of the target GPU, or
        ``None`` when unknown (no CUDA device visible, e.g. cross-lowering); an
        unknown device is assumed to be the Hopper GPU the kernels target.
      has_kernel: whether a kernel implementation is registered for the op.

    Raises:
      RuntimeError: ``"auto"``/``"kernel"`` on a non-Hopper CUDA GPU.
    """
    policy = _check_backend(policy, "resolve_policy")
    if policy == "reference":
        return "reference"
    if device_info is not None and not _is_hopper(device_info[0]):
        cc, kind = device_info
        raise RuntimeError(
            f"jaxgemm: the CUDA kernels need a Hopper GPU (sm_90, compute capability "
            f"9.x), but this GPU is {kind} (compute capability {cc}); backend policy "
            f"is {policy!r}. Set {ENV_VAR}=reference (or jaxgemm.set_backend"
            f"('reference')) to run the slow pure-JAX reference path instead.")
    return "kernel" if has_kernel else "reference"
