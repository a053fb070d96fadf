"""jaxgemm ops under SPMD sharding, on 8 simulated CPU devices.

The device count of a process is fixed when jax starts, so the 8-device
checks run in subprocesses (``tests/sharding_cases.py``, run once for the
module, and ``examples/sharded_moe.py``); this process keeps its own devices.
"""
from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import jaxgemm as jg
from jaxgemm import _partition
from jaxgemm import sharding as jsh

ROOT = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("sharding_cases",
                                               ROOT / "tests" / "sharding_cases.py")
cases = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(cases)


def _env():
    env = dict(os.environ)
    env["JAX_PLATFORMS"] = "cpu"
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")])
    return env


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    out = tmp_path_factory.mktemp("sharding") / "results.json"
    proc = subprocess.run([sys.executable, str(ROOT / "tests" / "sharding_cases.py"), str(out)],
                          cwd=ROOT, env=_env(), capture_output=True, text=True, timeout=900)
    if not out.exists():
        pytest.fail(f"sharding_cases.py crashed (rc {proc.returncode}):\n{proc.stderr[-5000:]}")
    return json.loads(out.read_text())


@pytest.mark.parametrize("name", list(cases.CASES))
def test_sharded_case(results, name):
    r = results[name]
    assert r["ok"], r["msg"]
    if r["msg"].startswith("skip"):
        pytest.skip(r["msg"])


def _run_example(tmp_path, *args):
    out, hlo = tmp_path / "run.json", tmp_path / "step.hlo"
    cmd = [sys.executable, str(ROOT / "examples" / "sharded_moe.py"), "--cpu-devices", "8",
           "--quiet", "--json", str(out), "--dump-hlo", str(hlo), *args]
    proc = subprocess.run(cmd, cwd=ROOT, env=_env(), capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stderr[-5000:]
    return json.loads(out.read_text()), hlo.read_text()


def test_sharded_moe_example_experts_over_8_devices(tmp_path):
    run, hlo = _run_example(tmp_path, "--mesh", "1x8", "--d-ff", "1024", "--steps", "6")
    losses = run["losses"]
    assert run["devices"] == 8 and run["mesh"] == {"data": 1, "model": 8}
    assert len(losses) == 6 and all(np.isfinite(losses)), losses
    assert np.mean(losses[-2:]) < losses[0] - 0.3, losses
    assert "'model'" in run["param_shardings"]["e_gate"], run
    kinds = {k for k, _ in cases.collectives(hlo)}
    assert "all-to-all" in kinds, kinds  # token dispatch / return
    # No weight (dense or expert, or its optimizer moments) is ever gathered.
    bad = set()
    for shape, local in [((8, 128, 128), (1, 128, 128)), ((128, 1024), (128, 128)),
                         ((1024, 128), (128, 128))]:
        bad |= cases.gathered_versions(shape, local)
    gathers = [d for k, dims in cases.collectives(hlo) if k == "all-gather" for d in dims]
    assert not [d for d in gathers if d in bad], gathers


def test_sharded_moe_example_dense_data_parallel(tmp_path):
    """Dense layers data parallel, experts split: tokens over every device, the
    dense weights replicated (their gradients all-reduced), never gathered."""
    run, hlo = _run_example(tmp_path, "--mesh", "1x8", "--dense-parallel", "data",
                            "--batch", "32", "--steps", "4")
    assert run["mesh"] == {"data": 1, "model": 8}
    assert all(np.isfinite(run["losses"])) and run["losses"][-1] < run["losses"][0]
    assert "model" not in run["param_shardings"]["w_gate"], run["param_shardings"]
    kinds = {k for k, _ in cases.collectives(hlo)}
    assert "all-to-all" in kinds and "all-reduce" in kinds, kinds
    assert "all-gather" not in kinds, cases.collectives(hlo)  # 128 tokens per device


def test_sharded_moe_example_data_and_model_axes(tmp_path):
    run, _ = _run_example(tmp_path, "--mesh", "2x4", "--steps", "4")
    assert run["mesh"] == {"data": 2, "model": 4}
    assert all(np.isfinite(run["losses"])) and run["losses"][-1] < run["losses"][0]


def test_sharded_moe_example_dense_weights_64_columns_per_device(tmp_path):
    """Dense weights [128, 512] column parallel over 8 devices: 64 columns per
    device, inside a 128-block.  Shardy puts a sub-axis sharding on the FP8
    scales; this used to fail to compile (IndivisibleError in jax's decoding).
    Now the op replicates N (with a warning) and matches one device exactly."""
    run, _ = _run_example(tmp_path, "--mesh", "1x8", "--batch", "32", "--steps", "2")
    ref, _ = _run_example(tmp_path, "--cpu-devices", "1", "--mesh", "1x1", "--batch", "32",
                          "--steps", "2")
    assert run["mesh"] == {"data": 1, "model": 8}
    assert "'model'" in run["param_shardings"]["w_gate"], run["param_shardings"]
    np.testing.assert_allclose(run["losses"], ref["losses"], rtol=1e-4)


# ------------------------------------------------------------------ in-process


_SHAPES = {
    "fp8_gemm_nt": [(64, 1024), (64, 8), (512, 1024), (4, 8)],
    "bf16_gemm_nt": [(64, 1024), (512, 1024), (64, 512)],
    "m_grouped_fp8_gemm_nt_contiguous": [(96, 512), (96, 4), (8, 256, 512), (8, 2, 4), (8,)],
    "m_grouped_bf16_gemm_nt_contiguous": [(96, 512), (8, 256, 512), (8,)],
    "m_grouped_fp8_gemm_nt_masked": [(8, 64, 512), (8, 64, 4), (8, 256, 512), (8, 2, 4), (8,)],
    "m_grouped_bf16_gemm_nt_masked": [(8, 64, 512), (8, 256, 512), (8,)],
    "k_grouped_fp8_gemm_tn_contiguous": [(512, 256), (11, 256), (512, 128), (11, 128), (8,)],
    "k_grouped_bf16_gemm_tn_contiguous": [(512, 256), (512, 128), (8,), (8, 256, 128)],
}


@pytest.mark.parametrize("name", sorted(_SHAPES))
def test_sharding_rule_of_every_primitive(name):
    lay = _partition.layout_of(name, _SHAPES[name], {})
    rule = _partition.sharding_rule(lay)
    text = str(rule)
    assert len(rule.operand_mappings) == len(_SHAPES[name])
    if name.startswith("k_grouped_fp8"):
        assert "need_replication_factors=('t', 'r')" in text  # token axis never split
    else:
        assert "'k'" in str(rule.reduction_factors) or "'t'" in str(rule.reduction_factors)
    if "fp8" in name and not name.startswith("k_grouped"):
        # the K axis of the data is (k, k_in): sharding k splits data and scales alike
        assert "('k', 'k_in')" in text and "'k_in': 128" in text, text
    assert name in jsh.SUPPORTED


def test_rule_of_unaligned_and_single_block_axes():
    # K = 200: not a multiple of 128 -> never split; N = 128: one block -> never split
    lay = _partition.layout_of("fp8_gemm_nt", [(64, 200), (64, 2), (128, 200), (1, 2)], {})
    rule = _partition.sharding_rule(lay)
    assert set(rule.need_replication_factors) >= {"k_d", "k", "n_d", "n"}, rule
    # per-row B scales [N, ceil(K/128)]: N is a plain axis (any split)
    lay = _partition.layout_of("fp8_gemm_nt", [(64, 256), (64, 2), (200, 256), (200, 2)], {})
    assert "n" not in lay.blocked


def test_partitioning_switch():
    assert jsh.get_partitioning() is True
    with jsh.partitioning(False):
        assert jsh.get_partitioning() is False
        a = jg.per_token_cast_to_fp8(np.ones((8, 256), np.float32))
        b = jg.per_block_cast_to_fp8(np.ones((16, 256), np.float32))
        assert float(jg.fp8_gemm_nt(a, b, out_dtype=np.float32)[0, 0]) == 256.0
    assert jsh.get_partitioning() is True
    assert issubclass(jsh.ShardingFallbackWarning, UserWarning)
