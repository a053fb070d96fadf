// m-grouped FP8 GEMM (MoE experts), contiguous or masked, group sizes on the device.
//
// contiguous (kMasked false): A [M, K] with rows grouped in order by
//   sizes [G] (no alignment asked), B [G, N, K], D [M, N]; D's rows of group
//   g are A_g @ B_g^T, rows past the last group are zero.
// masked (kMasked true): A [G * M_max, K], B [G, N, K], D [G * M_max, N];
//   rows of group g at or past sizes[g] (= masked_m) are zero.
// Scales as in fp8_gemm_nt.cuh: sa [rows, ceil(K/128)], sb [G, ceil(N/128),
// ceil(K/128)]; with kScaleMode 2 both have their K blocks padded to 4 and
// the TMA thread loads them with each stage as row boxes (gemm_common.cuh,
// TmaStageScales): 4 K blocks x BLOCK_M rows of sa from the tile's first
// row, whatever its alignment (rows past the tile's segment bring the next
// group's scales; those rows are never stored), and 4 K blocks x 2 of the
// group's B scale blocks (sb seen as [G * ceil(N/128), ...]).  kScaleMode 0:
// a cp.async warp copies them.
//
// Same pipeline as fp8_gemm_nt.cuh (TMA producer, scales as above,
// one or two math warpgroups with FP32 promotion every 128 of K, 2-CTA A
// multicast); the differences: the tile order comes from GroupedScheduler
// (segments from the device-side sizes, tiles starting at a group's first
// row whether aligned or not), B rows and scales are those of the tile's
// group, and the epilogue: a tile whose rows all lie in its segment goes
// out by TMA stores as in the dense kernel; a tile whose last rows belong to
// the next group (or lie past the segment) stores only its segment's rows,
// through shared memory and 16-byte predicated stores.  (Nsight Compute,
// H200, 2026-11-28: with the row-by-row store on every tile, the masked
// expected_m = 1024 rows ran 12-21% behind the dense kernel on the same rows
// and tiles, its extra samples almost all in that store's address math and
// STGs.)  Zero tiles skip the main loop; on 128-row
// tiles the second math warpgroup skips its wgmma when none of its 64 rows
// are in the segment (a Zipf-skewed MoE has mostly groups of a few dozen
// rows: half the tensor work was rows that are never stored).
#pragma once

#include "fp8_mainloop.cuh"
#include "gemm_common.cuh"
#include "grouped_scheduler.cuh"
#include "masked_store.cuh"
#include "wgmma.cuh"

namespace jaxgemm {

template <u32 SHAPE_N, u32 SHAPE_K, u32 BLOCK_M, u32 BLOCK_N, u32 kStages, bool kOutF32,
          bool kMasked, u32 kScaleMode, u32 kBandN, u32 kCluster>
__global__ void __launch_bounds__(jaxgemm_plan::gemm_threads(BLOCK_M), 1)
    m_grouped_fp8_gemm_nt_kernel(const __grid_constant__ TmaDesc tm_a,
                                 const __grid_constant__ TmaDesc tm_b,
                                 const __grid_constant__ TmaDesc tm_sa,
                                 const __grid_constant__ TmaDesc tm_sbb,
                                 const __grid_constant__ TmaDesc tm_d,
                                 const float* __restrict__ sa, const float* __restrict__ sb,
                                 const int* __restrict__ sizes, unsigned char* __restrict__ d,
                                 u32 m, u32 groups) {
  constexpr u32 BLOCK_K = 128;
  constexpr u32 kNumKBlocks = (SHAPE_K + BLOCK_K - 1) / BLOCK_K;
  constexpr u32 kNumNScaleBlocks = (SHAPE_N + 127) / 128;
  constexpr u32 kMathWG = jaxgemm_plan::math_warpgroups(BLOCK_M);
  constexpr u32 kWaves = jaxgemm_plan::m_waves(BLOCK_M);
  constexpr u32 kMathThreads = kMathWG * 128;
  constexpr bool kTmaScales = kScaleMode != 0;
  static_assert(kScaleMode == 0 || kScaleMode == 2, "m-grouped scales: cp.async or row boxes");
  constexpr auto kPlan = jaxgemm_plan::gemm_smem_plan(BLOCK_M, BLOCK_N, kStages, 1,
                                                      kOutF32 ? 4 : 2, false, false, kTmaScales);
  using Mma = WgmmaFp8<BLOCK_N>;
  using Math = Fp8TileMath<Mma, BLOCK_M, BLOCK_N, kWaves, false, kTmaScales ? 4 : 1>;
  using Scales = TmaStageScales<BLOCK_M, true, true>;
  using Store = MaskedTileStore<BLOCK_N, kOutF32, kPlan.slab_cols>;
  using FullStore = TileStore<BLOCK_N, kOutF32, kPlan.slab_cols>;
  using Sched = GroupedScheduler<kMasked, BLOCK_M, kBandN, kCluster>;
  static_assert(BLOCK_M == 64 || BLOCK_M == 128 || BLOCK_M == 256, "block M is 64, 128 or 256");
  static_assert(BLOCK_N % 8 == 0 && BLOCK_N <= 256, "wgmma N is a multiple of 8 up to 256");
  static_assert(jaxgemm_plan::fits_two_scale_blocks(BLOCK_N),
                "block N would straddle three B scale blocks");
  static_assert(FullStore::kBytes * kMathWG <= kPlan.d_tile, "output staging ring does not fit");
  static_assert(Store::kBytes <= FullStore::kBytes, "the row store's slab lies in the ring");
  static_assert(kPlan.total <= jaxgemm_plan::kMaxDynamicSmem, "shared memory plan too large");
  static_assert(kCluster == 1 || kCluster == 2, "cluster of 1 or 2 CTAs");
  constexpr u32 kLdBytes = SHAPE_N * (kOutF32 ? 4 : 2);
  // The group cursor needs more than 40 registers in the producer; with one
  // math warpgroup there are registers to spare.  With two, 40 + 2 x 232 is
  // the whole launch pool (384 x 168): 48 hung the math warpgroups' setmaxnreg
  // (H100, 2026-11-28); the scheduler re-reads the grid size so that the TMA
  // scale coordinates fit in 40 without spilling.
  constexpr u32 kProducerRegs = kMathWG == 1 ? 56 : 40;
  static_assert(jaxgemm_plan::reg_split_fits(BLOCK_M, kProducerRegs),
                "setmaxnreg split exceeds the launch register pool (the alloc would hang)");

  extern __shared__ __align__(1024) unsigned char smem_raw[];
  const GemmSmem sm = carve_gemm_smem<kStages>(smem_raw, kPlan);
  const Ring<kStages, kCluster> ring{sm.bars, sm.bars + kStages};

  const u32 tid = threadIdx.x;
  const u32 wg = tid / 128;
  const u32 rank = kCluster == 1 ? 0 : cluster_ctarank();
  // Full: the TMA thread's expect-tx arrival, plus one cp.async arrival per
  // scale-loader lane unless the scales come by TMA.
  const bool init = tid == kMathThreads;
  if (init && kTmaScales) {
    tma_prefetch_desc(&tm_sa);
    tma_prefetch_desc(&tm_sbb);
  }
  gemm_prologue(ring, init, kMathWG * 4, kTmaScales ? 1 : 1 + 32, &tm_a, &tm_b, &tm_d);

  Sched sched(sizes, groups, m, SHAPE_N, BLOCK_N);

  if (wg == kMathWG) {
    // ---------------- producer warpgroup ----------------
    warpgroup_reg_dealloc<kProducerRegs>();
    const u32 ptid = tid - kMathThreads;
    if (ptid == 0) {
      constexpr u32 kStageBytes =
          kPlan.a_stage + kPlan.b_stage + (kTmaScales ? Scales::kBytes : 0);
      u32 stage = 0, phase = 0;
      for (u32 t = sched.first_unit(); sched.find(t); t += sched.unit_stride()) {
        u32 row0, row_end, nb;
        int g;
        sched.tile(t, rank, row0, row_end, nb, g);
        if (g < 0) continue;  // zero tile: nothing to load
        for (u32 kb = 0; kb < kNumKBlocks; ++kb) {
          mbar_wait(&ring.empty[stage], phase ^ 1);
          u64* bar = &ring.full[stage];
          load_a_stage<BLOCK_M, kCluster>(sm.a + stage * kPlan.a_stage, &tm_a, bar,
                                          kb * BLOCK_K, row0, rank);
          // B columns past N read the next group's rows: their results are
          // never stored.
          tma_load_2d(sm.b + stage * kPlan.b_stage, &tm_b, bar, kb * BLOCK_K,
                      static_cast<u32>(g) * SHAPE_N + nb * BLOCK_N);
          if constexpr (kTmaScales)
            Scales::load(sm.sf + stage * kPlan.sf_stage, &tm_sa, &tm_sbb, bar, row0, kb,
                         static_cast<u32>(g) * kNumNScaleBlocks + nb * BLOCK_N / 128);
          mbar_arrive_expect_tx(bar, kStageBytes);
          if (++stage == kStages) stage = 0, phase ^= 1;
        }
      }
    } else if (!kTmaScales && ptid >= 32 && ptid < 64) {
      // Scale loader (see fp8_gemm_nt.cuh); rows past the segment get 0.
      const u32 lane = ptid - 32;
      u32 stage = 0, phase = 0;
      for (u32 t = sched.first_unit(); sched.find(t); t += sched.unit_stride()) {
        u32 row0, row_end, nb;
        int g;
        sched.tile(t, rank, row0, row_end, nb, g);
        if (g < 0) continue;
        const TileBScales bs = tile_b_scales<BLOCK_N>(nb * BLOCK_N, SHAPE_N, kNumNScaleBlocks, true);
        const float* sbg = sb + static_cast<u64>(g) * kNumNScaleBlocks * kNumKBlocks;
        for (u32 kb = 0; kb < kNumKBlocks; ++kb) {
          mbar_wait(&ring.empty[stage], phase ^ 1);
          load_stage_scales<BLOCK_M, kNumKBlocks>(
              reinterpret_cast<float*>(sm.sf + stage * kPlan.sf_stage), &ring.full[stage], sa,
              row0, row_end, sbg, bs, kb, lane);
          if (++stage == kStages) stage = 0, phase ^= 1;
        }
      }
    }
  } else {
    // ---------------- math warpgroups ----------------
    warpgroup_reg_alloc<jaxgemm_plan::math_regs(BLOCK_M)>();
    const u32 wg_thread = tid % 128, warp = wg_thread / 32, lane = tid % 32;
    const Math math(wg, warp, lane);
    const StageView view = stage_view(sm, kPlan);
    u32 stage = 0, phase = 0, store_seq = 0;
    for (u32 t = sched.first_unit(); sched.find(t); t += sched.unit_stride()) {
      u32 row0, row_end, nb;
      int g;
      sched.tile(t, rank, row0, row_end, nb, g);
      const u32 n0 = nb * BLOCK_N;
      const u32 boundary = (n0 / 128 + 1) * 128 - n0;
      // A zero tile (g < 0) runs no K loop: its result is zero.  On 128-row
      // tiles, warpgroup 1 skips a tile whose segment ends within the first
      // 64 rows.  (Tried on 256-row FP8 and on the BF16 kernel too: a
      // per-wave break inside the K loop cost the FP8 256x128 c2 tile 5%
      // and made ptxas serialize the BF16 256-row wgmmas (C7520), and the
      // BF16 128x256 c2 tile lost 8% on Zipf-256 with the whole-warpgroup
      // skip alone, for reasons not found: H200 A/B, 2026-11-28.)
      constexpr bool kSkipIdle = BLOCK_M == 128;
      const u32 live = kSkipIdle ? live_waves<kWaves>(row0 + wg * kWaves * 64, row_end) : kWaves;
      float fin[kWaves][Mma::kNumAccum];
      math.run(fin, g >= 0 ? kNumKBlocks : 0, ring, view, stage, phase, lane, boundary, live);
      const u32 st_thread = opaque(wg_thread);  // epilogue addressing after the K loop
      if (row0 + BLOCK_M <= row_end) {
        // Every row is the segment's: TMA stores through the staging ring
        // (D seen as [rows, N]; masked: the groups' M_max rows flattened).
#pragma unroll
        for (u32 w = 0; w < kWaves; ++w)
          FullStore::run(fin[w], sm.d + wg * FullStore::kBytes, &tm_d,
                         row0 + (wg * kWaves + w) * 64, n0, kMasked ? groups * m : m, SHAPE_N,
                         st_thread, 1 + wg, store_seq);
      } else {
        // The row store's slab is the ring's first buffer: the TMA stores
        // still reading the ring finish first (the row store's first barrier
        // publishes that), and its last reads finish before the ring is
        // written again.  An idle warpgroup's store writes no row (all are
        // past row_end); not skipping it keeps `live` out of the registers
        // held across the K loop (held, it spilled 4 bytes at 128x192 under
        // NVRTC 13.5).
        if (st_thread == 0) tma_store_wait_read<0>();
#pragma unroll
        for (u32 w = 0; w < kWaves; ++w)
          Store::run(fin[w], sm.d + wg * FullStore::kBytes, d, kLdBytes,
                     row0 + (wg * kWaves + w) * 64, row_end, n0, SHAPE_N, st_thread, 1 + wg);
        named_barrier_sync(1 + wg, 128);
      }
    }
    FullStore::drain(wg_thread);
  }
  if constexpr (kCluster > 1) cluster_sync();
}

}  // namespace jaxgemm
