// m-grouped BF16 GEMM (MoE experts), contiguous or masked, group sizes on the device.
//
// The BF16 twin of m_grouped_fp8_gemm_nt.cuh (same layouts, same segment
// scheduler, same row-predicated epilogue, zero tiles for rows past the
// groups) with bf16_gemm_nt.cuh's main loop: no scales, the wgmma
// accumulators are the result, one stage of wgmma kept in flight.
#pragma once

#include "bf16_mainloop.cuh"
#include "gemm_common.cuh"
#include "grouped_scheduler.cuh"
#include "masked_store.cuh"
#include "wgmma.cuh"

namespace jaxgemm {

template <u32 SHAPE_N, u32 SHAPE_K, u32 BLOCK_M, u32 BLOCK_N, u32 kStages, bool kOutF32,
          bool kMasked, u32 kBandN, u32 kCluster>
__global__ void __launch_bounds__(jaxgemm_plan::gemm_threads(BLOCK_M), 1)
    m_grouped_bf16_gemm_nt_kernel(const __grid_constant__ TmaDesc tm_a,
                                  const __grid_constant__ TmaDesc tm_b,
                                  const int* __restrict__ sizes, unsigned char* __restrict__ d,
                                  u32 m, u32 groups) {
  constexpr u32 BLOCK_K = 64;
  constexpr u32 kNumKBlocks = (SHAPE_K + BLOCK_K - 1) / BLOCK_K;
  constexpr u32 kMathWG = jaxgemm_plan::math_warpgroups(BLOCK_M);
  constexpr u32 kWaves = jaxgemm_plan::m_waves(BLOCK_M);
  constexpr u32 kMathThreads = kMathWG * 128;
  constexpr auto kPlan =
      jaxgemm_plan::gemm_smem_plan(BLOCK_M, BLOCK_N, kStages, 2, kOutF32 ? 4 : 2, false);
  using Mma = WgmmaBf16<BLOCK_N>;
  using Store = MaskedTileStore<BLOCK_N, kOutF32, kPlan.slab_cols>;
  using Sched = GroupedScheduler<kMasked, BLOCK_M, kBandN, kCluster>;
  static_assert(BLOCK_M == 64 || BLOCK_M == 128 || BLOCK_M == 256, "block M is 64, 128 or 256");
  static_assert(BLOCK_N % 8 == 0 && BLOCK_N <= 256, "wgmma N is a multiple of 8 up to 256");
  static_assert(Store::kBytes * kMathWG <= kPlan.d_tile, "output staging does not fit");
  static_assert(kPlan.total <= jaxgemm_plan::kMaxDynamicSmem, "shared memory plan too large");
  static_assert(kCluster == 1 || kCluster == 2, "cluster of 1 or 2 CTAs");
  constexpr u32 kLdBytes = SHAPE_N * (kOutF32 ? 4 : 2);
  // The producer keeps the group cursor: at 40 registers it spilled with
  // 4 stages (every benchmarked 256x128 and 128x256 config); the BF16 math
  // warpgroups (accumulators only, 128 at most) give up 8 of their 232.
  constexpr u32 kProducerRegs = 56;
  constexpr u32 kMathRegs = kMathWG == 1 ? jaxgemm_plan::math_regs(BLOCK_M) : 224;
  static_assert(jaxgemm_plan::reg_split_fits(BLOCK_M, kProducerRegs, kMathRegs),
                "setmaxnreg split exceeds the launch register pool (the alloc would hang)");

  extern __shared__ __align__(1024) unsigned char smem_raw[];
  const GemmSmem sm = carve_gemm_smem<kStages>(smem_raw, kPlan);
  const Ring<kStages, kCluster> ring{sm.bars, sm.bars + kStages};

  const u32 tid = threadIdx.x;
  const u32 wg = tid / 128;
  const u32 rank = kCluster == 1 ? 0 : cluster_ctarank();
  gemm_prologue(ring, tid == kMathThreads, kMathWG * 4, 1, &tm_a, &tm_b);

  Sched sched(sizes, groups, m, SHAPE_N, BLOCK_N);

  if (wg == kMathWG) {
    warpgroup_reg_dealloc<kProducerRegs>();
    if (tid == kMathThreads) {
      constexpr u32 kStageBytes = kPlan.a_stage + kPlan.b_stage;
      u32 stage = 0, phase = 0;
      for (u32 t = sched.first_unit(); sched.find(t); t += sched.unit_stride()) {
        u32 row0, row_end, nb;
        int g;
        sched.tile(t, rank, row0, row_end, nb, g);
        if (g < 0) continue;  // zero tile: nothing to load
        for (u32 kb = 0; kb < kNumKBlocks; ++kb) {
          mbar_wait(&ring.empty[stage], phase ^ 1);
          u64* bar = &ring.full[stage];
          load_a_stage<BLOCK_M, kCluster>(sm.a + stage * kPlan.a_stage, &tm_a, bar, kb * BLOCK_K,
                                          row0, rank);
          tma_load_2d(sm.b + stage * kPlan.b_stage, &tm_b, bar, kb * BLOCK_K,
                      static_cast<u32>(g) * SHAPE_N + nb * BLOCK_N);
          mbar_arrive_expect_tx(bar, kStageBytes);
          if (++stage == kStages) stage = 0, phase ^= 1;
        }
      }
    }
  } else {
    warpgroup_reg_alloc<kMathRegs>();
    const u32 wg_thread = tid % 128, lane = tid % 32;
    u32 stage = 0, phase = 0;
    for (u32 t = sched.first_unit(); sched.find(t); t += sched.unit_stride()) {
      u32 row0, row_end, nb;
      int g;
      sched.tile(t, rank, row0, row_end, nb, g);
      float acc[kWaves][Mma::kNumAccum];
#pragma unroll
      for (u32 w = 0; w < kWaves; ++w)
#pragma unroll
        for (u32 i = 0; i < Mma::kNumAccum; ++i) acc[w][i] = 0.f;
      if (g >= 0) {
        bf16_accumulate_stages<Mma, kWaves, BLOCK_K / 16>(ring, sm, kPlan.a_stage, kPlan.b_stage,
                                                          wg, lane, kNumKBlocks, stage, phase, acc);
      }
#pragma unroll
      for (u32 w = 0; w < kWaves; ++w)
        Store::run(acc[w], sm.d + wg * Store::kBytes, d, kLdBytes,
                   row0 + (wg * kWaves + w) * 64, row_end, nb * BLOCK_N, SHAPE_N, wg_thread,
                   1 + wg);
    }
  }
  if constexpr (kCluster > 1) cluster_sync();
}

}  // namespace jaxgemm
