// k-grouped BF16 GEMM (MoE weight gradient), group sizes on the device.
//
// The BF16 twin of k_grouped_fp8_gemm.cuh: the same group-padded K-major
// operands (A [M, R*128], B [N, R*128], group g in the 128-token blocks
// [blk_off_g, blk_off_g + ceil(k_g/128)), zero past its last token), the
// same (group, M tile, N tile) units and 3-D FP32 epilogue into D [G, M, N]
// (C read by the kernel when accumulating), with bf16_gemm_nt.cuh's main loop:
// two 64-deep stages per 128-token block, no scales, one stage in flight.
#pragma once

#include "add_c_store.cuh"
#include "bf16_mainloop.cuh"
#include "gemm_common.cuh"
#include "k_grouped_scheduler.cuh"
#include "wgmma.cuh"

namespace jaxgemm {

template <u32 SHAPE_M, u32 SHAPE_N, u32 BLOCK_M, u32 BLOCK_N, u32 kStages, bool kAccumulate,
          u32 kBandN, u32 kCluster>
__global__ void __launch_bounds__(jaxgemm_plan::gemm_threads(BLOCK_M), 1)
    k_grouped_bf16_gemm_kernel(const __grid_constant__ TmaDesc tm_a,
                               const __grid_constant__ TmaDesc tm_b,
                               const __grid_constant__ TmaDesc tm_d,
                               const __grid_constant__ TmaDesc tm_c,
                               const int* __restrict__ sizes, u32 groups) {
  constexpr u32 BLOCK_K = 64;
  constexpr u32 kStagesPerBlock = 128 / BLOCK_K;
  constexpr u32 kMathWG = jaxgemm_plan::math_warpgroups(BLOCK_M);
  constexpr u32 kWaves = jaxgemm_plan::m_waves(BLOCK_M);
  constexpr u32 kMathThreads = kMathWG * 128;
  constexpr auto kPlan =
      jaxgemm_plan::gemm_smem_plan(BLOCK_M, BLOCK_N, kStages, 2, 4, false, kAccumulate);
  using Mma = WgmmaBf16<BLOCK_N>;
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
    gemm_prologue(ring, tid == kMathThreads, kMathWG * 4, 1, &tm_a, &tm_b, &tm_d, &tm_c);
  } else {
    gemm_prologue(ring, tid == kMathThreads, kMathWG * 4, 1, &tm_a, &tm_b, &tm_d);
  }

  Sched sched(sizes, groups, SHAPE_M, SHAPE_N, BLOCK_N);

  if (wg == kMathWG) {
    warpgroup_reg_dealloc<kProducerRegs>();
    if (tid == kMathThreads) {
      constexpr u32 kStageBytes = kPlan.a_stage + kPlan.b_stage;
      u32 stage = 0, phase = 0;
      for (u32 t = sched.first_unit(); t < sched.num_units; t += sched.unit_stride()) {
        u32 g, mb, nb, blk0, nblk;
        sched.tile(t, rank, g, mb, nb, blk0, nblk);
        for (u32 i = 0; i < nblk * kStagesPerBlock; ++i) {
          const u32 kcoord = blk0 * 128 + i * BLOCK_K;
          mbar_wait(&ring.empty[stage], phase ^ 1);
          u64* bar = &ring.full[stage];
          load_a_stage<BLOCK_M, kCluster>(sm.a + stage * kPlan.a_stage, &tm_a, bar, kcoord,
                                          mb * BLOCK_M, rank);
          tma_load_2d(sm.b + stage * kPlan.b_stage, &tm_b, bar, kcoord, nb * BLOCK_N);
          mbar_arrive_expect_tx(bar, kStageBytes);
          if (++stage == kStages) stage = 0, phase ^= 1;
        }
      }
    }
  } else {
    warpgroup_reg_alloc<jaxgemm_plan::math_regs(BLOCK_M)>();
    const u32 wg_thread = tid % 128, lane = tid % 32;
    u32 stage = 0, phase = 0, store_seq = 0, c_phase = 0;
    for (u32 t = sched.first_unit(); t < sched.num_units; t += sched.unit_stride()) {
      u32 g, mb, nb, blk0, nblk;
      sched.tile(t, rank, g, mb, nb, blk0, nblk);
      if constexpr (kAccumulate) {
        if (wg_thread == 0)
          AddC::prefetch(sm.d + wg * AddC::kBytes, &tm_c, &c_full[wg], mb * BLOCK_M + wg * 64,
                         nb * BLOCK_N, SHAPE_M, SHAPE_N, static_cast<int>(g));
      }
      float acc[kWaves][Mma::kNumAccum];
#pragma unroll
      for (u32 w = 0; w < kWaves; ++w)
#pragma unroll
        for (u32 i = 0; i < Mma::kNumAccum; ++i) acc[w][i] = 0.f;
      const u32 num_stages = nblk * kStagesPerBlock;
      if (num_stages > 0) {
        bf16_accumulate_stages<Mma, kWaves, BLOCK_K / 16>(ring, sm, kPlan.a_stage, kPlan.b_stage,
                                                          wg, lane, num_stages, stage, phase, acc);
      }
      if constexpr (kAccumulate) {  // an empty group stores C
        AddC::run(acc[0], sm.d + wg * AddC::kBytes, &tm_d, &c_full[wg], c_phase,
                  mb * BLOCK_M + wg * 64, nb * BLOCK_N, SHAPE_M, SHAPE_N, wg_thread, 1 + wg,
                  static_cast<int>(g));
        c_phase ^= 1;
      } else {
#pragma unroll
        for (u32 w = 0; w < kWaves; ++w)
          Store::run(acc[w], sm.d + wg * Store::kBytes, &tm_d,
                     mb * BLOCK_M + (wg * kWaves + w) * 64, nb * BLOCK_N, SHAPE_M, SHAPE_N,
                     wg_thread, 1 + wg, store_seq, static_cast<int>(g));
      }
    }
    Store::drain(wg_thread);
  }
  if constexpr (kCluster > 1) cluster_sync();
}

}  // namespace jaxgemm
