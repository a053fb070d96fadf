"""examples/train_moe.py: the tiny config trains on CPU in both dtypes."""
from __future__ import annotations

import importlib.util
import json
import math
import sys
from pathlib import Path

import pytest

pytest.importorskip("flax")
pytest.importorskip("optax")

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def _load():
    sys.path.insert(0, str(EXAMPLES))
    spec = importlib.util.spec_from_file_location("train_moe", EXAMPLES / "train_moe.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.mark.parametrize("dtype", ["fp8", "bf16"])
def test_tiny_training_loss_goes_down(dtype, tmp_path):
    train_moe = _load()
    out = tmp_path / f"{dtype}.json"
    run = train_moe.main(["--config", "tiny", "--dtype", dtype, "--steps", "10",
                          "--quiet", "--out", str(out)])
    losses = run["losses"]
    assert len(losses) == 10 and all(math.isfinite(v) for v in losses)
    assert sum(losses[-3:]) / 3 < losses[0] - 0.1, losses
    assert all(math.isfinite(v) for v in run["aux_losses"])
    saved = json.loads(out.read_text())
    assert saved["dtype"] == dtype and saved["losses"] == losses
    assert len(saved["step_times_s"]) == 10 and saved["median_step_s"] > 0


def test_plot_fp8_vs_bf16(tmp_path):
    pytest.importorskip("matplotlib")
    train_moe = _load()
    runs = []
    for i, dtype in enumerate(("fp8", "bf16")):
        p = tmp_path / f"{dtype}.json"
        p.write_text(json.dumps({"dtype": dtype, "losses": [4.0 - 0.1 * j - 0.01 * i
                                                           for j in range(5)],
                                 "final_loss": 3.6, "entropy_bound": 1.2,
                                 "config": {"d_model": 64, "n_experts": 4},
                                 "device": "cpu"}))
        runs.append(str(p))
    png = tmp_path / "loss.png"
    assert train_moe.main(["--steps", "0", "--plot", str(png), "--compare", *runs]) is None
    assert png.stat().st_size > 1000


def test_corpus_is_deterministic_and_structured():
    _load()
    import moe_lm

    c1 = moe_lm.SyntheticCorpus(64, 32, seed=3)
    c2 = moe_lm.SyntheticCorpus(64, 32, seed=3)
    b1, b2 = c1.batch(5, 4), c2.batch(5, 4)
    assert b1.shape == (4, 33) and b1.dtype.name == "int32"
    assert (b1 == b2).all() and not (b1 == c1.batch(6, 4)).all()
    assert 0 <= b1.min() and b1.max() < 64
    assert c1.entropy_bound(batch=4, steps=1) < 0.5 * math.log(64)  # learnable
