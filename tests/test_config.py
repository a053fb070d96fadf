"""The tile heuristics (CPU): the choices the H100 measurements stand on."""
import ml_dtypes
import numpy as np
import pytest

from jaxgemm import _config, _kernels, layout

BF16 = np.dtype(ml_dtypes.bfloat16)


@pytest.mark.parametrize("m,n,k", [(64, 2112, 7168), (4096, 7168, 2048), (7168, 4096, 16384)])
@pytest.mark.parametrize("max_bm", [64, 128, 256])
def test_dense_config_fits_and_respects_the_cap(m, n, k, max_bm):
    cfg, t = _config.dense_config_and_time(m, n, k, fp8=True, out_bytes=2, max_block_m=max_bm)
    assert cfg.block_m <= max_bm and t > 0
    assert cfg.stages >= 3
    assert layout.gemm_smem_bytes(cfg.block_m, cfg.block_n, cfg.stages, 1, 2, False) > 0
    assert _config.dense_config(m, n, k, fp8=True, out_bytes=2, max_block_m=max_bm) == cfg


def _grouped(g, rows, n, k):
    return _kernels._grouped_config(rows, n, k, BF16, g, None, contiguous=True)


@pytest.mark.parametrize("g,rows,n,k", [(4, 8192, 6144, 7168), (8, 4096, 4096, 2048),
                                        (32, 1024, 4096, 7168)])
def test_contiguous_with_large_groups_keeps_the_dense_choice(g, rows, n, k):
    dense = _kernels._grouped_config(rows, n, k, BF16, g, None)
    assert _grouped(g, rows, n, k) == dense


def test_contiguous_with_many_small_groups_uses_shorter_tiles():
    # 256 groups of ~128 rows: 256-row tiles would be half padding or worse.
    assert _grouped(256, 128, 4096, 7168).block_m <= 128


@pytest.mark.parametrize("m,n", [(4096, 7168), (7168, 2048)])
def test_k_grouped_tiles(m, n):
    fp8 = _kernels._k_grouped_config(m, n, 4096, True, None)
    assert (fp8.block_m, fp8.block_n, fp8.cluster) == (128, 192, 1)  # measured best (ksweep)
    bf16 = _kernels._k_grouped_config(m, n, 4096, False, None)
    assert bf16.block_m <= 128 and bf16.cluster <= 2


@pytest.mark.parametrize("m,n,k,want", [
    (128, 7168, 16384, (128, 64)),  # measured 644-656 vs 586-594 for 64x112
    (128, 7168, 2048, (128, 64)),   # 423 vs 367
    (128, 4096, 7168, (64, 64)),    # 64-row tiles stay where they won (482 vs 380)
    (128, 2112, 7168, (64, 32)),    # 328 vs 205
    (128, 32768, 512, (128, 128)),  # 377 vs 308 for 128x192 (2026-11-28)
])
def test_fp8_tiles_at_m_128_follow_the_sweeps(m, n, k, want):
    cfg = _config.dense_config(m, n, k, fp8=True, out_bytes=2)
    assert (cfg.block_m, cfg.block_n) == want, cfg


@pytest.mark.parametrize("m,n,k,want", [
    (64, 7168, 2048, (64, 64)),     # 239 vs 210 for 64x80 (112 vs 90 CTAs)
    (64, 7168, 16384, (64, 64)),    # 336 vs 299 for 64x80
    (64, 32768, 512, (64, 128)),    # 223 vs 188 for 64x192 (171 tiles: 1.3 waves)
    (64, 4096, 7168, (64, 32)),     # 283, best of 6
    (64, 2112, 7168, (64, 16)),     # 189, best of 6
])
def test_fp8_memory_bound_tiles_fill_the_sms(m, n, k, want):
    # Memory-bound M = 64 shapes: among tiles the model times at the HBM
    # floor, the one whose grid keeps the most SMs streaming (H100 sweeps of
    # 2026-11-28, sweep_dense_small / sweep_dense_main).
    cfg = _config.dense_config(m, n, k, fp8=True, out_bytes=2)
    assert (cfg.block_m, cfg.block_n) == want, cfg


@pytest.mark.parametrize("m,n,k,want", [
    (4096, 2112, 7168, (128, 192, 1)),  # 1023 vs 887 (256x96 c2) and 973 (c2), same run
    (4096, 7168, 16384, (256, 128, 2)),  # 1216, the best of 10 tiles
    (8192, 8192, 8192, (256, 128, 2)),   # 1194
])
def test_fp8_tiles_at_large_m_follow_the_sweep(m, n, k, want):
    # H100 sweep of 2026-11-27 (sweep_dense_refit_20261127-2209.json): the
    # shared-memory ceiling and the wide-tile L2 figure rank these tiles.
    cfg = _config.dense_config(m, n, k, fp8=True, out_bytes=2)
    assert (cfg.block_m, cfg.block_n, cfg.cluster) == want, cfg


@pytest.mark.parametrize("m,n,k,want", [
    (4096, 2112, 7168, (192, 128, 1)),   # 1132 vs 1078 (128x192 c1), 891 (256x128 c2)
    (4096, 7168, 16384, (256, 128, 2)),  # 1302 vs 1160 (192x128 c1)
    (4096, 4096, 7168, (256, 128, 2)),   # 1270 vs 1112
    (4096, 7168, 2048, (256, 128, 2)),   # 1171 vs 1075
])
def test_fp8_three_warpgroup_tiles_follow_the_sweep(m, n, k, want):
    # H200 sweep of 2026-11-28 (results/ab/three_wg_20261128): the 192-row
    # tile (three math warpgroups) wins where it fills the last wave better.
    cfg = _config.dense_config(m, n, k, fp8=True, out_bytes=2, three_warpgroups=True)
    assert (cfg.block_m, cfg.block_n, cfg.cluster) == want, cfg
    assert _kernels._fp8_dense_config(m, n, k, 2) == cfg  # what fp8_gemm_nt runs


@pytest.mark.parametrize("kw", [dict(out_bytes=4, sb_per_row=True, add_c=True),
                                dict(out_bytes=4), dict(out_bytes=2, max_block_m=128)])
def test_three_warpgroup_tiles_only_where_measured(kw):
    # FP32 out, C, per-row B scales: not measured with 192-row tiles.
    for m, n, k in [(4096, 2112, 7168), (3072, 7168, 7168), (2048, 7168, 2048)]:
        cfg = _config.dense_config(m, n, k, fp8=True, three_warpgroups=True, **kw)
        assert cfg.block_m != 192, (m, n, k, kw, cfg)
    # Below the TMA-scale row count the caller does not ask for them.
    assert not _config.three_warpgroups_allowed(512)
    # The m-grouped kernels run no 192-row tiles.
    for g, rows in [(4, 1024), (6, 680), (8, 512)]:
        assert _kernels._grouped_config(rows, 2112, 7168, BF16, g, None).block_m != 192


@pytest.mark.parametrize("m,n,k,want", [(2112, 4096, 7168, (128, 192, 1)),
                                         (7168, 4096, 2048, (128, 128, 1)),
                                         (4096, 4096, 7168, (128, 128, 1)),
                                         (7168, 4096, 16384, (256, 128, 2))])
def test_add_c_tiles(m, n, k, want):
    # Per-row B scales with C: the best tile of the H100 sweep of 2026-11-28
    # at 95a17a3 (results/ab/perrow_onewave_20261128/sweep_dense_onewave_*,
    # 7 tiles a shape): 128x192 c1 779 (M = 2112: a 256-row grid wastes a
    # third of its last wave), 128x128 c1 676 and 899 (256x128 c2: 635, 876;
    # its C staging costs more at short K), 256x128 c2 980 at K = 16384
    # (128x128 c1: 964).
    cfg = _config.dense_config(m, n, k, fp8=True, out_bytes=4, sb_per_row=True, add_c=True)
    assert (cfg.block_m, cfg.block_n, cfg.cluster) == want, cfg


def test_per_row_model_matches_the_sweep():
    # The per-row tile model against every tile of that sweep (4 shapes x 7
    # tiles): within 10% of the measured time, and it ranks the best tile
    # of each shape first among the measured ones.
    import json
    from pathlib import Path
    path = next((Path(__file__).parent.parent / "benchmarks/results/ab/perrow_onewave_20261128")
                .glob("sweep_dense_onewave_*.json"))
    by_shape = {}
    for r in json.loads(path.read_text())["records"]:
        by_shape.setdefault((r["m"], r["n"], r["k"]), []).append(r)
    for (m, n, k), recs in by_shape.items():
        predicted = {}
        for r in recs:
            t = _config.config_time(m, n, k, _config.GemmConfig(r["block_m"], r["block_n"],
                                                                r["stages"], r["cluster"]),
                                    fp8=True, out_bytes=4, sb_per_row=True, add_c=True)
            ratio = (2 * m * n * k / t / 1e12) / r["tflops"]
            assert 0.9 < ratio < 1.1, (m, n, k, r["config"], ratio)
            predicted[r["config"]] = t
        best = max(recs, key=lambda r: r["tflops"])["config"]
        assert min(predicted, key=predicted.get) == best or \
            predicted[best] <= 1.01 * min(predicted.values()), (m, n, k, best, predicted)


def test_scales_by_tma_threshold_and_override(monkeypatch):
    # Large-M FP8 GEMMs load their scales by TMA (measured +7-10% at M = 4096);
    # small ones keep the cp.async loader (no transpose op in front).
    monkeypatch.delenv("JAXGEMM_TMA_SCALES", raising=False)
    assert not _config.scales_by_tma(_config.TMA_SCALES_MIN_ROWS - 1)
    assert _config.scales_by_tma(_config.TMA_SCALES_MIN_ROWS)
    monkeypatch.setenv("JAXGEMM_TMA_SCALES", "1")
    assert _config.scales_by_tma(1)
    monkeypatch.setenv("JAXGEMM_TMA_SCALES", "0")
    assert not _config.scales_by_tma(1 << 20)
    monkeypatch.setenv("JAXGEMM_TMA_SCALES", "2")
    assert _config.scales_by_tma(1) == 2


@pytest.mark.parametrize("rows,kb", [(1, 1), (3, 5), (1025, 17), (4096, 56)])
def test_tma_scale_layout(rows, kb):
    # The layout the TMA scale path hands the kernel (ffi/layout.h): A scales
    # transposed with rows padded to 4, per-block B scales with K blocks
    # padded to 4, zeros in the padding, values unchanged.
    rng = np.random.default_rng(rows)
    sa = rng.uniform(0.1, 2, (rows, kb)).astype(np.float32)
    sb = rng.uniform(0.1, 2, (3, kb)).astype(np.float32)
    sa_t, sb_p = _kernels._tma_scales(sa, sb)
    assert layout.TMA_SCALE_ALIGN == 4
    assert sa_t.shape == (kb, -(-rows // 4) * 4)
    assert sb_p.shape == (3, layout.num_scale_blocks(kb * 128) + (-kb) % 4)
    np.testing.assert_array_equal(np.asarray(sa_t)[:, :rows], sa.T)
    assert not np.asarray(sa_t)[:, rows:].any()
    np.testing.assert_array_equal(np.asarray(sb_p)[:, :kb], sb)
    assert not np.asarray(sb_p)[:, kb:].any()
    assert _kernels._tma_scales(sa, None)[1] is None


def test_tma_row_box_scale_layout():
    # scales_tma 2 keeps the A scales row-major, K blocks padded to 4.
    sa = np.arange(15, dtype=np.float32).reshape(3, 5) + 1
    sa_k, sb_k = _kernels._tma_scales(sa, None, 2)
    assert sa_k.shape == (3, 8) and sb_k is None
    np.testing.assert_array_equal(np.asarray(sa_k)[:, :5], sa)
    assert not np.asarray(sa_k)[:, 5:].any()
    # Stages shrink where the 4x larger scale slots would not fit.
    for bm, bn in [(256, 128), (128, 192), (64, 128)]:
        st = _config._max_stages(bm, bn, 1, 2, False, False, True)
        assert 3 <= st <= _config._max_stages(bm, bn, 1, 2, False)


# The H200 BF16 sweep of 2026-11-28 at M <= 128 (results/h200/sweep_dense_m{64,128}_*):
# each shape's fastest tile, which the model now picks (the old picks ran 4-40% slower).
@pytest.mark.parametrize("m,n,k,tile", [
    (128, 7168, 16384, (128, 64, 1)), (128, 7168, 2048, (128, 64, 1)),
    (128, 4096, 7168, (128, 32, 1)), (128, 2112, 7168, (64, 32, 1)),
    (128, 24576, 1536, (128, 192, 1)), (64, 7168, 16384, (64, 64, 1)),
    (64, 7168, 2048, (64, 64, 1)), (64, 24576, 1536, (64, 192, 1)), (64, 4096, 7168, (64, 32, 1)),
])
def test_bf16_small_m_picks_the_swept_best(m, n, k, tile):
    cfg = _config.dense_config(m, n, k, fp8=False, out_bytes=2, one_problem=True)
    assert (cfg.block_m, cfg.block_n, cfg.cluster) == tile
    assert _config.bf16_dense_config(m, n, k, out_bytes=2).block_n == tile[1]


def test_bf16_small_m_rules_leave_grouped_rows_alone():
    # Masked expected_m = 20 over 6 groups is 120 rows of six problems: the
    # one-problem rules (a 128-row block shared by every CTA) do not apply.
    for n, k in ((6144, 7168), (7168, 3072), (4096, 4096)):
        grouped = _config.dense_config(120, n, k, fp8=False, out_bytes=2)
        one = _config.dense_config(120, n, k, fp8=False, out_bytes=2, one_problem=True)
        assert grouped.block_m == 64 and one.block_m == 128


@pytest.mark.parametrize("expected,g,n,k,block_m", [
    (1024, 6, 4096, 2048, 128), (192, 32, 4096, 2048, 128),   # the H200 masked sweep's winners
    (1024, 6, 7168, 3072, 256), (1024, 6, 4096, 4096, 256), (192, 32, 6144, 7168, 256),
])
def test_masked_fp8_short_k_takes_128_row_tiles(expected, g, n, k, block_m):
    cfg = _kernels._grouped_config(expected, n, k, BF16, g, None, masked=True)
    assert cfg.block_m == block_m
    # Without masked=True (the contiguous kernels' path) and for BF16 the dense
    # choice stands (not measured).
    assert _kernels._grouped_config(expected, n, k, BF16, g, None).block_m == 256
    assert _kernels._grouped_config(expected, n, k, BF16, g, None, fp8=False, masked=True).block_m \
        == 256


@pytest.mark.parametrize("m,n,k,pingpong", [
    (4096, 32768, 512, True), (128, 32768, 1024, True),   # measured ping-pong wins
    (100, 4000, 1000, False), (128, 7168, 1024, False),   # <= 132 tiles: one per CTA
    (4096, 7168, 2048, False),                            # K > 1024
])
def test_bf16_pingpong_needs_two_tiles_per_cta(m, n, k, pingpong):
    assert _config.bf16_dense_config(m, n, k, out_bytes=2).pingpong == pingpong
