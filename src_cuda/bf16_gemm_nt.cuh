// BF16 GEMM, D = A @ B^T (+ C): A [M, K], B [N, K] bfloat16, FP32 accumulation.
//
// Same skeleton as fp8_gemm_nt.cuh (persistent grid of clusters, TMA
// producer warpgroup with A multicast, 64-row waves on one or two math
// warpgroups, TMA-store epilogue) without scales: the wgmma accumulators are
// the result, so each math warpgroup keeps one stage of wgmma in flight and
// releases a stage as soon as the one after it is issued.  A stage holds 64
// of K (128 bytes per row, the 128-byte swizzle atom).
#pragma once

#include "add_c_store.cuh"
#include "bf16_mainloop.cuh"
#include "gemm_common.cuh"
#include "wgmma.cuh"

namespace jaxgemm {

template <u32 SHAPE_N, u32 SHAPE_K, u32 BLOCK_M, u32 BLOCK_N, u32 kStages, bool kOutF32,
          bool kAccumulate, u32 kBandN, u32 kCluster>
__global__ void __launch_bounds__(jaxgemm_plan::gemm_threads(BLOCK_M), 1)
    bf16_gemm_nt_kernel(const __grid_constant__ TmaDesc tm_a, const __grid_constant__ TmaDesc tm_b,
                        const __grid_constant__ TmaDesc tm_d, const __grid_constant__ TmaDesc tm_c,
                        u32 m) {
  constexpr u32 BLOCK_K = 64;
  constexpr u32 kNumKBlocks = (SHAPE_K + BLOCK_K - 1) / BLOCK_K;
  constexpr u32 kMathWG = jaxgemm_plan::math_warpgroups(BLOCK_M);
  constexpr u32 kProducerRegs = 40;
  static_assert(jaxgemm_plan::reg_split_fits(BLOCK_M, kProducerRegs),
                "setmaxnreg split exceeds the launch register pool (the alloc would hang)");
  constexpr u32 kWaves = jaxgemm_plan::m_waves(BLOCK_M);
  constexpr u32 kMathThreads = kMathWG * 128;
  constexpr auto kPlan = jaxgemm_plan::gemm_smem_plan(BLOCK_M, BLOCK_N, kStages, 2,
                                                      kOutF32 ? 4 : 2, false, kAccumulate);
  using Mma = WgmmaBf16<BLOCK_N>;
  using Store = TileStore<BLOCK_N, kOutF32, kPlan.slab_cols>;
  using AddC = TileAddCStore<BLOCK_N>;
  static_assert(BLOCK_M == 64 || BLOCK_M == 128 || BLOCK_M == 256, "block M is 64, 128 or 256");
  static_assert(BLOCK_N % 8 == 0 && BLOCK_N <= 256, "wgmma N is a multiple of 8 up to 256");
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
  if constexpr (kAccumulate) {
    AddC::init_barriers(c_full, kMathWG, tid == kMathThreads);
    gemm_prologue(ring, tid == kMathThreads, kMathWG * 4, 1, &tm_a, &tm_b, &tm_d, &tm_c);
  } else {
    gemm_prologue(ring, tid == kMathThreads, kMathWG * 4, 1, &tm_a, &tm_b, &tm_d);
  }

  const DenseScheduler<kBandN, kCluster> sched(m, BLOCK_M, SHAPE_N, BLOCK_N);

  if (wg == kMathWG) {
    warpgroup_reg_dealloc<kProducerRegs>();
    if (tid == kMathThreads) {
      bf16_dense_produce<BLOCK_M, BLOCK_N, BLOCK_K, kNumKBlocks>(
          sched, ring, sm, kPlan.a_stage, kPlan.b_stage, &tm_a, &tm_b, rank);
    }
  } else {
    warpgroup_reg_alloc<jaxgemm_plan::math_regs(BLOCK_M)>();
    const u32 wg_thread = tid % 128, lane = tid % 32;
    u32 stage = 0, phase = 0, store_seq = 0, c_phase = 0;
    for (u32 t = sched.first_unit(); t < sched.num_units; t += sched.unit_stride()) {
      u32 mb, nb;
      sched.tile(t, rank, mb, nb);
      const u32 wg_row0 = mb * BLOCK_M + wg * kWaves * 64;
      if constexpr (kAccumulate) {
        if (wg_thread == 0)
          AddC::template begin_tile<kWaves>(sm.d + wg * AddC::kBytes, &tm_c, &c_full[wg], wg_row0,
                                            nb * BLOCK_N, m, SHAPE_N);
      }
      float acc[kWaves][Mma::kNumAccum];
      bf16_accumulate_stages<Mma, kWaves, BLOCK_K / 16>(ring, sm, kPlan.a_stage, kPlan.b_stage, wg,
                                                        lane, kNumKBlocks, stage, phase, acc);
      if constexpr (kAccumulate) {
        AddC::finish_tile(acc, sm.d + wg * AddC::kBytes, &tm_c, &tm_d, &c_full[wg], c_phase,
                          wg_row0, nb * BLOCK_N, m, SHAPE_N, wg_thread, 1 + wg);
      } else {
#pragma unroll
        for (u32 w = 0; w < kWaves; ++w)
          Store::run(acc[w], sm.d + wg * Store::kBytes, &tm_d, wg_row0 + w * 64, nb * BLOCK_N, m,
                     SHAPE_N, wg_thread, 1 + wg, store_seq);
      }
    }
    Store::drain(wg_thread);
  }
  if constexpr (kCluster > 1) cluster_sync();
}

}  // namespace jaxgemm
