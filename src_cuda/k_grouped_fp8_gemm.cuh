// k-grouped FP8 GEMM (MoE weight gradient), group sizes on the device.
//
// D[g] (+)= A_g^T B_g for g < G, where group g owns a ragged run of tokens.
// The operands arrive K-major and GROUP-PADDED (jaxgemm/_kernels.py builds
// this layout, fused with the transpose the FP8 wgmma needs anyway): A
// [M, R*128] and B [N, R*128] hold group g's tokens in the 128-token blocks
// [blk_off_g, blk_off_g + ceil(k_g/128)), blk_off_g = sum_{h<g} ceil(k_h/128),
// zero past each group's last token.  Scales are the 1x128 group-aligned
// token-axis scales of per_token_cast_to_fp8_grouped: sa [R, M (padded to
// 4)], sb [R, N] (one row per block), so every block of a unit has one scale
// per output row and one per output column.  `sizes` are the clamped group
// sizes.
//
// Pipeline as in fp8_gemm_nt.cuh with per-row B scales and per-row A scales,
// both TMA'd with each stage (one box of the tile's BLOCK_N / BLOCK_M
// entries of the block's scale row; the dense kernel measured +7-10% for TMA
// scales over a cp.async loader warp).  A unit is (group, M tile, N tile); its K loop runs over the group's
// blocks; an empty group stores zeros (or C when accumulating).  D (and C)
// are [G, M, N] FP32, written (read) with 3-D TMA boxes so a tile never
// spills into the next group's rows; C is read by the kernel
// (add_c_store.cuh), so tiles of at most 128 rows then.
#pragma once

#include "add_c_store.cuh"
#include "fp8_mainloop.cuh"
#include "gemm_common.cuh"
#include "k_grouped_scheduler.cuh"
#include "wgmma.cuh"

namespace jaxgemm {

template <u32 SHAPE_M, u32 SHAPE_N, u32 BLOCK_M, u32 BLOCK_N, u32 kStages, bool kAccumulate,
          u32 kBandN, u32 kCluster>
__global__ void __launch_bounds__(jaxgemm_plan::gemm_threads(BLOCK_M), 1)
    k_grouped_fp8_gemm_kernel(const __grid_constant__ TmaDesc tm_a,
                              const __grid_constant__ TmaDesc tm_b,
                              const __grid_constant__ TmaDesc tm_d,
                              const __grid_constant__ TmaDesc tm_c,
                              const __grid_constant__ TmaDesc tm_sb,
                              const __grid_constant__ TmaDesc tm_sa, const int* __restrict__ sizes,
                              u32 groups) {
  constexpr u32 BLOCK_K = 128;
  constexpr u32 kMathWG = jaxgemm_plan::math_warpgroups(BLOCK_M);
  constexpr u32 kWaves = jaxgemm_plan::m_waves(BLOCK_M);
  constexpr u32 kMathThreads = kMathWG * 128;
  constexpr auto kPlan =
      jaxgemm_plan::gemm_smem_plan(BLOCK_M, BLOCK_N, kStages, 1, 4, true, kAccumulate);
  using Mma = WgmmaFp8<BLOCK_N>;
  using Math = Fp8TileMath<Mma, BLOCK_M, BLOCK_N, kWaves, true>;
  using Store = TileStore<BLOCK_N, true, kPlan.slab_cols>;
  using AddC = TileAddCStore<BLOCK_N>;
  using Sched = KGroupedScheduler<BLOCK_M, kBandN, kCluster>;
  static_assert(BLOCK_M == 64 || BLOCK_M == 128 || BLOCK_M == 256, "block M is 64, 128 or 256");
  static_assert(BLOCK_N % 8 == 0 && BLOCK_N <= 256, "wgmma N is a multiple of 8 up to 256");
  static_assert(Store::kBytes * kMathWG <= kPlan.d_tile, "output staging does not fit");
  static_assert(kPlan.total <= jaxgemm_plan::kMaxDynamicSmem, "shared memory plan too large");
  static_assert(kCluster == 1 || kCluster == 2, "cluster of 1 or 2 CTAs");
  static_assert(BLOCK_M <= jaxgemm_plan::kKGroupedMaxBlockM, "one 64-row wave per warpgroup");
  static_assert(!kAccumulate || AddC::kBytes * kMathWG <= kPlan.d_tile,
                "with C, each math warpgroup stages one whole 64-row block");
  constexpr u32 kProducerRegs = kMathWG == 1 ? 56 : 40;
  static_assert(jaxgemm_plan::reg_split_fits(BLOCK_M, kProducerRegs),
                "setmaxnreg split exceeds the launch register pool (the alloc would hang)");

  extern __shared__ __align__(1024) unsigned char smem_raw[];
  const GemmSmem sm = carve_gemm_smem<kStages>(smem_raw, kPlan);
  const Ring<kStages, kCluster> ring{sm.bars, sm.bars + kStages};
  u64* const c_full = sm.bars + 2 * kStages;  // with C: one barrier per math warpgroup

  const u32 tid = threadIdx.x;
  const u32 wg = tid / 128;
  const u32 rank = kCluster == 1 ? 0 : cluster_ctarank();
  if constexpr (kAccumulate) {
    AddC::init_barriers(c_full, kMathWG, tid == kMathThreads);
    gemm_prologue(ring, tid == kMathThreads, kMathWG * 4, 1, &tm_a, &tm_b, &tm_d, &tm_c, &tm_sb,
                  &tm_sa);
  } else {
    gemm_prologue(ring, tid == kMathThreads, kMathWG * 4, 1, &tm_a, &tm_b, &tm_d, &tm_sb, &tm_sa);
  }

  Sched sched(sizes, groups, SHAPE_M, SHAPE_N, BLOCK_N);

  if (wg == kMathWG) {
    // ---------------- producer warpgroup ----------------
    warpgroup_reg_dealloc<kProducerRegs>();
    const u32 ptid = tid - kMathThreads;
    if (ptid == 0) {
      constexpr u32 kStageBytes = kPlan.a_stage + kPlan.b_stage + BLOCK_N * 4 + BLOCK_M * 4;
      u32 stage = 0, phase = 0;
      for (u32 t = sched.first_unit(); t < sched.num_units; t += sched.unit_stride()) {
        u32 g, mb, nb, blk0, nblk;
        sched.tile(t, rank, g, mb, nb, blk0, nblk);
        for (u32 i = 0; i < nblk; ++i) {
          const u32 kb = blk0 + i;
          mbar_wait(&ring.empty[stage], phase ^ 1);
          u64* bar = &ring.full[stage];
          load_a_stage<BLOCK_M, kCluster>(sm.a + stage * kPlan.a_stage, &tm_a, bar,
                                          kb * BLOCK_K, mb * BLOCK_M, rank);
          tma_load_2d(sm.b + stage * kPlan.b_stage, &tm_b, bar, kb * BLOCK_K, nb * BLOCK_N);
          tma_load_2d(sm.sb + stage * kPlan.sb_stage, &tm_sb, bar, nb * BLOCK_N, kb);
          // mb * BLOCK_M: a 16-byte aligned box start, as TMA requires.
          tma_load_2d(sm.sf + stage * kPlan.sf_stage, &tm_sa, bar, mb * BLOCK_M, kb);
          mbar_arrive_expect_tx(bar, kStageBytes);
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
      u32 g, mb, nb, blk0, nblk;
      sched.tile(t, rank, g, mb, nb, blk0, nblk);
      if constexpr (kAccumulate) {
        if (wg_thread == 0)
          AddC::prefetch(sm.d + wg * AddC::kBytes, &tm_c, &c_full[wg], mb * BLOCK_M + wg * 64,
                         nb * BLOCK_N, SHAPE_M, SHAPE_N, static_cast<int>(g));
      }
      float fin[kWaves][Mma::kNumAccum];
      math.run(fin, nblk, ring, view, stage, phase, lane, 0);  // zeros for an empty group
      const u32 st_thread = opaque(wg_thread);  // epilogue addressing after the K loop
      if constexpr (kAccumulate) {
        AddC::run(fin[0], sm.d + wg * AddC::kBytes, &tm_d, &c_full[wg], c_phase,
                  mb * BLOCK_M + wg * 64, nb * BLOCK_N, SHAPE_M, SHAPE_N, st_thread, 1 + wg,
                  static_cast<int>(g));
        c_phase ^= 1;
      } else {
#pragma unroll
        for (u32 w = 0; w < kWaves; ++w)
          Store::run(fin[w], sm.d + wg * Store::kBytes, &tm_d,
                     mb * BLOCK_M + (wg * kWaves + w) * 64, nb * BLOCK_N, SHAPE_M, SHAPE_N,
                     st_thread, 1 + wg, store_seq, static_cast<int>(g));
      }
    }
    Store::drain(wg_thread);
  }
  if constexpr (kCluster > 1) cluster_sync();
}

}  // namespace jaxgemm
