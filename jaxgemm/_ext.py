"""The native extension: NVRTC discovery, JIT configuration, FFI registration.

Importing this module never needs CUDA.  NVRTC is looked up (and its builtins
library preloaded) on first use; the XLA FFI targets are registered with the
CUDA platform the first time a kernel is lowered.
"""
from __future__ import annotations

import ctypes
import glob
import os
import shutil
import subprocess
import tempfile
import threading
from pathlib import Path

from jaxgemm import _jaxgemm_ext as native

_lock = threading.Lock()
_configured = False
_nvrtc_error: str | None = None
_registered = False

#: Custom-call target of the dense GEMMs (fp8 and bf16; the kernel is an attribute).
DENSE_TARGET = "jaxgemm_dense_gemm"
#: Custom-call target of the m-grouped FP8 GEMMs (contiguous and masked).
GROUPED_TARGET = "jaxgemm_grouped_gemm"
#: Custom-call target of the k-grouped FP8 GEMM (MoE weight gradient).
K_GROUPED_TARGET = "jaxgemm_k_grouped_gemm"
#: Packs token-major k-grouped operands into the K-major group-padded layout.
K_GROUPED_PACK_TARGET = "jaxgemm_k_grouped_pack"
#: Name under which the per-instance kernel state type is registered with XLA.
STATE_TYPE = "jaxgemm.KernelState"


def source_dir() -> str:
    """Folder of the CUDA kernel sources the JIT compiles.

    ``JAXGEMM_SOURCE_DIR`` overrides; an installed wheel carries them in
    ``jaxgemm/src_cuda``; a source checkout (editable install) in ``src_cuda/``.
    """
    env = os.environ.get("JAXGEMM_SOURCE_DIR")
    if env:
        return env
    pkg = Path(__file__).resolve().parent
    for cand in (pkg / "src_cuda", pkg.parent / "src_cuda"):
        if (cand / "fp8_gemm_nt.cuh").is_file():
            return str(cand)
    raise RuntimeError(f"jaxgemm: kernel sources not found next to {pkg}; set JAXGEMM_SOURCE_DIR")


def cache_dir() -> str:
    """On-disk kernel cache: ``JAXGEMM_CACHE_DIR`` or ``~/.cache/jaxgemm``."""
    return os.environ.get("JAXGEMM_CACHE_DIR") or os.path.join(
        os.path.expanduser("~"), ".cache", "jaxgemm")


def _nvrtc_candidates() -> list[str]:
    cands: list[str] = []
    env = os.environ.get("JAXGEMM_NVRTC_PATH")
    if env:
        cands.append(env)
    try:  # the nvidia-cuda-nvrtc wheel (what jax[cuda13] installs)
        import nvidia  # type: ignore

        for root in list(nvidia.__path__):
            for sub in ("cu13", "cuda_nvrtc"):
                cands += sorted(glob.glob(os.path.join(root, sub, "lib", "libnvrtc.so*")))
    except ImportError:
        pass
    for var in ("CUDA_HOME", "CUDA_PATH"):
        if os.environ.get(var):
            cands += sorted(glob.glob(os.path.join(os.environ[var], "lib64", "libnvrtc.so*")))
    cands += sorted(glob.glob("/usr/local/cuda/lib64/libnvrtc.so*"))
    cands.append("libnvrtc.so.13")
    cands.append("libnvrtc.so.12")
    # Skip the alt/static flavours; prefer the versioned shared object.
    return [c for c in cands if "alt" not in os.path.basename(c) and not c.endswith(".a")]


def _preload_builtins(lib: str) -> None:
    # Some NVRTC wheels have no RPATH: nvrtcCompileProgram then fails to open
    # libnvrtc-builtins unless it is already loaded (build-facts).
    folder = os.path.dirname(lib)
    if not folder:
        return
    for b in sorted(glob.glob(os.path.join(folder, "libnvrtc-builtins.so*"))):
        try:
            ctypes.CDLL(b, mode=ctypes.RTLD_GLOBAL)
            return
        except OSError:
            continue


def ensure_jit() -> None:
    """Configures the JIT and loads NVRTC (once). Raises RuntimeError if NVRTC is missing."""
    global _configured, _nvrtc_error
    with _lock:
        if not _configured:
            native.configure_jit(source_dir(), cache_dir())
            errors = []
            for cand in _nvrtc_candidates():
                if os.path.sep in cand and not os.path.exists(cand):
                    continue
                try:
                    _preload_builtins(cand)
                    native.load_nvrtc(cand)
                    break
                except RuntimeError as e:  # try the next candidate
                    errors.append(str(e))
            else:
                _nvrtc_error = "NVRTC not found (tried: " + "; ".join(errors[-3:]) + ")"
            _configured = True
    if _nvrtc_error is not None:
        raise RuntimeError(
            f"jaxgemm: {_nvrtc_error}. Install it with `pip install nvidia-cuda-nvrtc` "
            "(or jaxgemm[cuda]) or set JAXGEMM_NVRTC_PATH to libnvrtc.so.")


def nvrtc_available() -> bool:
    try:
        ensure_jit()
        return True
    except RuntimeError:
        return False


def nvdisasm_path() -> str | None:
    """nvdisasm from the nvidia-cuda-nvdisasm wheel, else on PATH (developer tool)."""
    try:
        import nvidia  # type: ignore

        for root in nvidia.__path__:
            for cand in glob.glob(os.path.join(root, "*", "bin", "nvdisasm")):
                return cand
    except ImportError:
        pass
    return shutil.which("nvdisasm")


def disassemble(cubin: bytes) -> list[str] | None:
    """The SASS instructions of a cubin, one per line (addresses and encodings
    stripped), or None without nvdisasm.  For tests and tools, never the
    execute path."""
    tool = nvdisasm_path()
    if tool is None:
        return None
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "k.cubin")
        with open(path, "wb") as f:
            f.write(cubin)
        out = subprocess.run([tool, "-c", path], capture_output=True, text=True,
                             check=True).stdout
    return [ln.split("*/", 1)[-1].strip() for ln in out.splitlines() if "/*" in ln and "*/" in ln]


def runtime_info() -> dict:
    """NVRTC, driver and cache facts, for `python -m jaxgemm` and bug reports."""
    try:
        ensure_jit()
        err = None
    except RuntimeError as e:
        err = str(e)
    info = dict(native.runtime_info())
    info["nvrtc_error"] = err
    return info


def ensure_registered() -> None:
    """Registers the FFI state type and custom-call targets with XLA's CUDA platform."""
    global _registered
    ensure_jit()
    with _lock:
        if _registered:
            return
        import jax.ffi

        jax.ffi.register_ffi_type(STATE_TYPE, native.state_type(), platform="CUDA")
        for name, handlers in native.registrations().items():
            jax.ffi.register_ffi_target(name, handlers, platform="CUDA", api_version=1)
        _registered = True
