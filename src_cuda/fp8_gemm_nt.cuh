// FP8 GEMM, D = A @ B^T (+ C), with DeepSeek-style fine-grained scales.
//
// A [M, K] e4m3 with per-token scales sa [M, ceil(K/128)] (1x128 blocks);
// B [N, K] e4m3 with per-block scales sb [ceil(N/128), ceil(K/128)] (128x128)
// or, with kSbPerRow, per-row scales given transposed as [ceil(K/128), N].
// With kScaleMode 1 the A scales come transposed, [ceil(K/128), M padded to
// 4] (tm_sa), with kScaleMode 2 as [M, ceil(K/128) padded to 4] in boxes of
// 4 K blocks x BLOCK_M rows; per-block B scales padded along K to 4
// (tm_sbb): the TMA thread loads them with each stage (gemm_common.cuh,
// TmaStageScales).  kScaleMode 0: a cp.async warp copies them.
//
// Structure: a persistent grid (of clusters of kCluster CTAs) walks output
// tiles.  The last warpgroup is the producer: one thread streams A and B
// tiles (and per-row B scales) into a kStages-deep shared-memory ring with
// TMA; in a cluster each CTA loads a slice of the shared A tile and
// multicasts it to its peers, which take neighbouring N blocks.  Each stage
// also carries its scales (the tile rows' A scales and the tile's B block
// scales), loaded by TMA with the tiles (kTmaScales) or else copied by a
// second producer warp, so the math warpgroups never wait on global memory.
// One or two math warpgroups each own block_m / (64 * #warpgroups) 64-row waves of the
// tile.  Per stage (128 of K) a wave runs FP8 wgmma into a fresh
// accumulator and then promotes it into FP32 registers on the CUDA cores,
// multiplied by sa[row] * sb: the tensor cores' FP8 accumulator keeps only
// ~14 mantissa bits, so promoting every 128 of K keeps the error flat in K.
// One warpgroup's promotion overlaps the other's wgmma.
// Epilogue: BF16 (or FP32) through shared memory and TMA stores; with C,
// C is TMA-loaded during the tile's main loop (a second wave's into L2) and
// D = C + acc stored (add_c_store.cuh).
#pragma once

#include "add_c_store.cuh"
#include "fp8_mainloop.cuh"
#include "gemm_common.cuh"
#include "wgmma.cuh"

namespace jaxgemm {

template <u32 SHAPE_N, u32 SHAPE_K, u32 BLOCK_M, u32 BLOCK_N, u32 kStages, bool kOutF32,
          bool kAccumulate, bool kSbPerRow, u32 kScaleMode, u32 kBandN, u32 kCluster>
__global__ void __launch_bounds__(jaxgemm_plan::gemm_threads(BLOCK_M), 1)
    fp8_gemm_nt_kernel(const __grid_constant__ TmaDesc tm_a, const __grid_constant__ TmaDesc tm_b,
                       const __grid_constant__ TmaDesc tm_d, const __grid_constant__ TmaDesc tm_c,
                       const __grid_constant__ TmaDesc tm_sb,
                       const __grid_constant__ TmaDesc tm_sa,
                       const __grid_constant__ TmaDesc tm_sbb,
                       const float* __restrict__ sa, const float* __restrict__ sb, u32 m) {
  constexpr u32 BLOCK_K = 128;
  constexpr u32 kNumKBlocks = (SHAPE_K + BLOCK_K - 1) / BLOCK_K;
  constexpr u32 kNumNScaleBlocks = (SHAPE_N + 127) / 128;
  constexpr u32 kMathWG = jaxgemm_plan::math_warpgroups(BLOCK_M);
  // Three math warpgroups (block_m 192): 32 + 3 x 160 fills the 512-thread pool.
  constexpr u32 kProducerRegs = kMathWG == 3 ? 32 : 40;
  static_assert(jaxgemm_plan::reg_split_fits(BLOCK_M, kProducerRegs),
                "setmaxnreg split exceeds the launch register pool (the alloc would hang)");
  constexpr u32 kWaves = jaxgemm_plan::m_waves(BLOCK_M);
  constexpr u32 kMathThreads = kMathWG * 128;
  constexpr bool kTmaScales = kScaleMode != 0;
  constexpr bool kRowBoxes = kScaleMode == 2;
  constexpr auto kPlan = jaxgemm_plan::gemm_smem_plan(
      BLOCK_M, BLOCK_N, kStages, 1, kOutF32 ? 4 : 2, kSbPerRow, kAccumulate, kRowBoxes);
  using Mma = WgmmaFp8<BLOCK_N>;
  // Row-first promotion below 192 columns only: on the 128x192 tile with C
  // (the FP32-accumulate pick at 2112x4096x7168) it cost 2-3%.
  using Math = Fp8TileMath<Mma, BLOCK_M, BLOCK_N, kWaves, kSbPerRow, kRowBoxes ? 4 : 1,
                           (BLOCK_N < 192)>;
  using Store = TileStore<BLOCK_N, kOutF32, kPlan.slab_cols>;
  using AddC = TileAddCStore<BLOCK_N>;
  using Scales = TmaStageScales<BLOCK_M, !kSbPerRow, kRowBoxes>;
  static_assert(BLOCK_M == 64 || BLOCK_M == 128 || BLOCK_M == 192 || BLOCK_M == 256,
                "block M is 64, 128, 192 or 256");
  static_assert(BLOCK_N % 8 == 0 && BLOCK_N <= 256, "wgmma N is a multiple of 8 up to 256");
  static_assert(kSbPerRow || jaxgemm_plan::fits_two_scale_blocks(BLOCK_N),
                "block N would straddle three B scale blocks");
  static_assert(Store::kBytes * kMathWG <= kPlan.d_tile, "output staging does not fit");
  static_assert(kPlan.total <= jaxgemm_plan::kMaxDynamicSmem, "shared memory plan too large");
  static_assert(!kAccumulate || kOutF32, "accumulation into C is FP32");
  static_assert(!kAccumulate || AddC::kBytes * kMathWG <= kPlan.d_tile,
                "with C, each math warpgroup stages one whole 64-row block");
  static_assert(kCluster == 1 || kCluster == 2 || kCluster == 4, "cluster of 1, 2 or 4 CTAs");

  extern __shared__ __align__(1024) unsigned char smem_raw[];
  const GemmSmem sm = carve_gemm_smem<kStages>(smem_raw, kPlan);
  const Ring<kStages, kCluster> ring{sm.bars, sm.bars + kStages};
  u64* const c_full = sm.bars + 2 * kStages;  // with C: one barrier per math warpgroup

  const u32 tid = threadIdx.x;
  const u32 wg = tid / 128;
  const u32 rank = kCluster == 1 ? 0 : cluster_ctarank();
  if constexpr (kAccumulate) AddC::init_barriers(c_full, kMathWG, tid == kMathThreads);
  // Full: the TMA thread's expect-tx arrival, plus one cp.async arrival per
  // scale-loader lane unless the scales come by TMA.
  constexpr u32 kFullArrivals = kTmaScales ? 1 : 1 + 32;
  const bool init = tid == kMathThreads;
  // The descriptors this instantiation reads besides A, B and D: prefetched
  // by the thread that initialises the barriers, before the prologue's sync.
  if (init) {
    if constexpr (kAccumulate) tma_prefetch_desc(&tm_c);
    if constexpr (kSbPerRow) tma_prefetch_desc(&tm_sb);
    if constexpr (kTmaScales) tma_prefetch_desc(&tm_sa);
    if constexpr (kTmaScales && !kSbPerRow) tma_prefetch_desc(&tm_sbb);
  }
  gemm_prologue(ring, init, kMathWG * 4, kFullArrivals, &tm_a, &tm_b, &tm_d);

  const DenseScheduler<kBandN, kCluster> sched(m, BLOCK_M, SHAPE_N, BLOCK_N);

  if (wg == kMathWG) {
    // ---------------- producer warpgroup ----------------
    warpgroup_reg_dealloc<kProducerRegs>();
    const u32 ptid = tid - kMathThreads;
    if (ptid == 0) {
      // TMA: A (a multicast slice in a cluster), B, per-row B scales, and
      // with kTmaScales the stage's A and B block scales.
      constexpr u32 kStageBytes = kPlan.a_stage + kPlan.b_stage + (kSbPerRow ? BLOCK_N * 4 : 0) +
                                  (kTmaScales ? Scales::kBytes : 0);
      u32 stage = 0, phase = 0;
      for (u32 t = sched.first_unit(); t < sched.num_units; t += sched.unit_stride()) {
        u32 mb, nb;
        sched.tile(t, rank, mb, nb);
        for (u32 kb = 0, kb_end = k_loop_count<kNumKBlocks>(); kb < kb_end; ++kb) {
          mbar_wait(&ring.empty[stage], phase ^ 1);
          u64* bar = &ring.full[stage];
          load_a_stage<BLOCK_M, kCluster>(sm.a + stage * kPlan.a_stage, &tm_a, bar,
                                          kb * BLOCK_K, mb * BLOCK_M, rank);
          tma_load_2d(sm.b + stage * kPlan.b_stage, &tm_b, bar, kb * BLOCK_K, nb * BLOCK_N);
          if constexpr (kSbPerRow)
            tma_load_2d(sm.sb + stage * kPlan.sb_stage, &tm_sb, bar, nb * BLOCK_N, kb);
          if constexpr (kTmaScales)
            Scales::load(sm.sf + stage * kPlan.sf_stage, &tm_sa, &tm_sbb, bar, mb * BLOCK_M, kb,
                         nb * BLOCK_N / 128);
          mbar_arrive_expect_tx(bar, kStageBytes);
          if (++stage == kStages) stage = 0, phase ^= 1;
        }
      }
    } else if (!kTmaScales && ptid >= 32 && ptid < 64) {
      // Scale loader: sf[r] = sa[m0 + r, kb] for the tile's rows (0 past M),
      // then the tile's two B block scales (per-block B scales only), copied
      // with cp.async so that up to kStages stages of scales are in flight.
      const u32 lane = ptid - 32;
      u32 stage = 0, phase = 0;
      for (u32 t = sched.first_unit(); t < sched.num_units; t += sched.unit_stride()) {
        u32 mb, nb;
        sched.tile(t, rank, mb, nb);
        const TileBScales bs =
            tile_b_scales<BLOCK_N>(nb * BLOCK_N, SHAPE_N, kNumNScaleBlocks, !kSbPerRow);
        for (u32 kb = 0, kb_end = k_loop_count<kNumKBlocks>(); kb < kb_end; ++kb) {
          mbar_wait(&ring.empty[stage], phase ^ 1);
          load_stage_scales<BLOCK_M, kNumKBlocks>(
              reinterpret_cast<float*>(sm.sf + stage * kPlan.sf_stage), &ring.full[stage], sa,
              mb * BLOCK_M, m, sb, bs, kb, lane);
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
    u32 stage = 0, phase = 0, store_seq = 0, c_phase = 0;
    for (u32 t = sched.first_unit(); t < sched.num_units; t += sched.unit_stride()) {
      u32 mb, nb;
      sched.tile(t, rank, mb, nb);
      const u32 n0 = nb * BLOCK_N;
      const u32 wg_row0 = mb * BLOCK_M + wg * kWaves * 64;
      if constexpr (kAccumulate) {
        if (wg_thread == 0)
          AddC::template begin_tile<kWaves>(sm.d + wg * AddC::kBytes, &tm_c, &c_full[wg], wg_row0,
                                            n0, m, SHAPE_N);
      }
      // Per-block B scales: columns before `boundary` use the stage's first
      // B scale, the rest (if any) its second.
      const u32 boundary = (n0 / 128 + 1) * 128 - n0;
      float fin[kWaves][Mma::kNumAccum];
      math.run(fin, kNumKBlocks, ring, view, stage, phase, lane, boundary);
      const u32 st_thread = opaque(wg_thread);  // epilogue addressing after the K loop
      if constexpr (kAccumulate) {
        AddC::finish_tile(fin, sm.d + wg * AddC::kBytes, &tm_c, &tm_d, &c_full[wg], c_phase,
                          wg_row0, n0, m, SHAPE_N, st_thread, 1 + wg);
      } else {
#pragma unroll
        for (u32 w = 0; w < kWaves; ++w)
          Store::run(fin[w], sm.d + wg * Store::kBytes, &tm_d, wg_row0 + w * 64, n0, m, SHAPE_N,
                     st_thread, 1 + wg, store_seq);
      }
    }
    Store::drain(wg_thread);
  }
  // No CTA may leave while a peer can still multicast into it or arrive on
  // its barriers.
  if constexpr (kCluster > 1) cluster_sync();
}

}  // namespace jaxgemm
