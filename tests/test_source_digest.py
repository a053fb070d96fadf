"""The source digest benchmark results carry (benchmarks/common.py): it must
name the code exactly, for the working tree and for an A/B kernel folder."""
from __future__ import annotations

import shutil
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))
import common  # noqa: E402


def _copy_trees(dst: Path) -> None:
    for tree in common.DIGEST_TREES:
        shutil.copytree(ROOT / tree, dst / tree,
                        ignore=shutil.ignore_patterns("__pycache__", "*.pyc", "*.so"))


def test_digest_follows_every_byte_of_the_sources(tmp_path):
    _copy_trees(tmp_path)
    d0 = common.source_digest(tmp_path)
    assert d0 == common.source_digest(tmp_path)            # deterministic
    assert d0 == common.source_digest(ROOT)                # build outputs do not count
    f = tmp_path / "src_cuda" / "ptx.cuh"
    f.write_bytes(f.read_bytes() + b" ")
    assert common.source_digest(tmp_path) != d0            # one byte of a kernel header


def test_a_kernel_folder_stands_in_for_src_cuda(tmp_path):
    shutil.copytree(ROOT / "src_cuda", tmp_path / "variant")
    assert common.source_digest(ROOT, tmp_path / "variant") == common.source_digest(ROOT)
    (tmp_path / "variant" / "fp8_mainloop.cuh").write_text("// a variant\n")
    assert common.source_digest(ROOT, tmp_path / "variant") != common.source_digest(ROOT)
