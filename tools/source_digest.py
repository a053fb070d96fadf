"""The source digest a benchmark result records (benchmarks/common.py), for a
commit or the working tree: match a result file to the code that made it.

    python tools/source_digest.py            # the working tree
    python tools/source_digest.py 95a17a3    # a commit
"""
from __future__ import annotations

import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))
import common  # noqa: E402


def main() -> None:
    if len(sys.argv) < 2:
        print(common.source_digest())
        return
    with tempfile.TemporaryDirectory() as tmp:
        archive = Path(tmp) / "tree.tar"
        subprocess.run(["git", "-C", str(ROOT), "archive", "-o", str(archive), sys.argv[1],
                        *common.DIGEST_TREES], check=True)
        with tarfile.open(archive) as t:
            t.extractall(tmp, filter="data")
        print(common.source_digest(Path(tmp)))


if __name__ == "__main__":
    main()
