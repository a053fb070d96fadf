// BF16 GEMM, D = A @ B^T (+ C), ping-pong schedule: the two math warpgroups
// take alternate tiles of this CTA's sequence, each a whole BLOCK_M x BLOCK_N
// tile (BLOCK_M = 128: two 64-row waves per warpgroup).
//
// Why: in bf16_gemm_nt.cuh both warpgroups share each tile, so both run
// their epilogue at once and the tensor cores idle through it; at short K
// (4096 x 32768 x 512: 8 stages a tile) that idle time is 10-20% of the
// tile.  Here the producer fills the ring with tile 0's stages, then tile
// 1's, ...; a warpgroup consumes only its own tiles' stages, so while one
// stores its tile the other's main loop runs on the next tile's stages.
//
// Same producer (bf16_dense_produce), ring, tile order, stores and C path
// as bf16_gemm_nt.cuh; what differs: a stage's "empty" barrier expects one
// warpgroup's warps, and each warpgroup steps its ring cursor over the
// other's tiles (every tile has the same number of K blocks).
//
// The main loops strictly alternate (named barriers 5 and 6: the owner of
// tile j signals when its main loop is done, the owner of tile j + 1 waits
// for that before its own).  Besides ordering the tensor-core work, this
// keeps the ring's parity waits exact: a warpgroup that raced ahead to tile
// j + 2 while tile j + 1's loads were still arriving would wait on a "full"
// barrier two phases early, and a parity wait cannot tell that phase from
// the one it wants.
#pragma once

#include "add_c_store.cuh"
#include "bf16_mainloop.cuh"
#include "gemm_common.cuh"
#include "wgmma.cuh"

namespace jaxgemm {

template <u32 SHAPE_N, u32 SHAPE_K, u32 BLOCK_M, u32 BLOCK_N, u32 kStages, bool kOutF32,
          bool kAccumulate, u32 kBandN, u32 kCluster>
__global__ void __launch_bounds__(jaxgemm_plan::gemm_threads(BLOCK_M), 1)
    bf16_gemm_nt_pingpong_kernel(const __grid_constant__ TmaDesc tm_a,
                                 const __grid_constant__ TmaDesc tm_b,
                                 const __grid_constant__ TmaDesc tm_d,
                                 const __grid_constant__ TmaDesc tm_c, u32 m) {
  constexpr u32 BLOCK_K = 64;
  constexpr u32 kNumKBlocks = (SHAPE_K + BLOCK_K - 1) / BLOCK_K;
  constexpr u32 kMathWG = 2;
  constexpr u32 kProducerRegs = 40;
  static_assert(BLOCK_M == 128, "ping-pong: 128-row tiles, two 64-row waves per warpgroup");
  static_assert(jaxgemm_plan::math_warpgroups(BLOCK_M) == kMathWG,
                "the launch (threads, staging) is planned for two math warpgroups");
  static_assert(jaxgemm_plan::reg_split_fits(BLOCK_M, kProducerRegs),
                "setmaxnreg split exceeds the launch register pool (the alloc would hang)");
  constexpr u32 kWaves = BLOCK_M / 64;
  constexpr u32 kMathThreads = kMathWG * 128;
  constexpr auto kPlan = jaxgemm_plan::gemm_smem_plan(BLOCK_M, BLOCK_N, kStages, 2,
                                                      kOutF32 ? 4 : 2, false, kAccumulate);
  using Mma = WgmmaBf16<BLOCK_N>;
  using Store = TileStore<BLOCK_N, kOutF32, kPlan.slab_cols>;
  using AddC = TileAddCStore<BLOCK_N>;
  static_assert(kWaves * Mma::kNumAccum <= 128, "accumulators: two waves of at most 128 columns");
  static_assert(BLOCK_N % 8 == 0, "wgmma N is a multiple of 8");
  static_assert(Store::kBytes * kMathWG <= kPlan.d_tile, "output staging does not fit");
  static_assert(kPlan.total <= jaxgemm_plan::kMaxDynamicSmem, "shared memory plan too large");
  static_assert(!kAccumulate || kOutF32, "accumulation into C is FP32");
  static_assert(!kAccumulate || AddC::kBytes * kMathWG <= kPlan.d_tile,
                "with C, each math warpgroup stages one whole 64-row block");
  static_assert(kCluster == 1 || kCluster == 2, "cluster of 1 or 2 CTAs");

  extern __shared__ __align__(1024) unsigned char smem_raw[];
  const GemmSmem sm = carve_gemm_smem<kStages>(smem_raw, kPlan);
  const Ring<kStages, kCluster> ring{sm.bars, sm.bars + kStages};
  u64* const c_full = sm.bars + 2 * kStages;  // with C: one barrier per math warpgroup

  const u32 tid = threadIdx.x;
  const u32 wg = tid / 128;
  const u32 rank = kCluster == 1 ? 0 : cluster_ctarank();
  // A stage is released by the 4 warps of the one warpgroup that owns it.
  if constexpr (kAccumulate) {
    AddC::init_barriers(c_full, kMathWG, tid == kMathThreads);
    gemm_prologue(ring, tid == kMathThreads, 4, 1, &tm_a, &tm_b, &tm_d, &tm_c);
  } else {
    gemm_prologue(ring, tid == kMathThreads, 4, 1, &tm_a, &tm_b, &tm_d);
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
    // The ring cursor after a tile of the other warpgroup: kNumKBlocks stages on.
    constexpr u32 kSkipStages = kNumKBlocks % kStages;
    constexpr u32 kSkipPhase = (kNumKBlocks / kStages) & 1;
    u32 stage = 0, phase = 0, store_seq = 0, c_phase = 0;
    if (wg == 1) {  // warpgroup 1 starts at the CTA's second tile
      stage = kSkipStages;
      phase = kSkipPhase;
    }
    // Named barrier 5 + w: warpgroup w's main loop is done (the 128 threads
    // of w arrive, the 128 of the other warpgroup sync).
    constexpr u32 kOrderBarrier = 5;  // ids 1-2: the epilogue's
    u32 t = sched.first_unit() + wg * sched.unit_stride();
    for (; t < sched.num_units; t += 2 * sched.unit_stride()) {
      // Every tile but the CTA's first waits for its predecessor's main loop.
      if (t != sched.first_unit()) named_barrier_sync(kOrderBarrier + (wg ^ 1), 256);
      u32 mb, nb;
      sched.tile(t, rank, mb, nb);
      const u32 row0 = mb * BLOCK_M;
      if constexpr (kAccumulate) {
        if (wg_thread == 0)
          AddC::template begin_tile<kWaves>(sm.d + wg * AddC::kBytes, &tm_c, &c_full[wg], row0,
                                            nb * BLOCK_N, m, SHAPE_N);
      }
      float acc[kWaves][Mma::kNumAccum];
      // The whole tile's A rows: waves 0 and 1 of this warpgroup are rows
      // 0-63 and 64-127 of the stage (warpgroup index 0 in the mainloop's
      // addressing).
      bf16_accumulate_stages<Mma, kWaves, BLOCK_K / 16>(ring, sm, kPlan.a_stage, kPlan.b_stage, 0,
                                                        lane, kNumKBlocks, stage, phase, acc);
      // The next tile of this CTA (the other warpgroup's) may start its main
      // loop; it exists exactly when the other warpgroup will sync on this.
      if (t + sched.unit_stride() < sched.num_units) named_barrier_arrive(kOrderBarrier + wg, 256);
      // Step over the other warpgroup's next tile (if this CTA has one, its
      // stages follow this tile's in the ring).
      stage += kSkipStages;
      if (stage >= kStages) stage -= kStages, phase ^= 1;
      phase ^= kSkipPhase;
      if constexpr (kAccumulate) {
        AddC::finish_tile(acc, sm.d + wg * AddC::kBytes, &tm_c, &tm_d, &c_full[wg], c_phase,
                          row0, nb * BLOCK_N, m, SHAPE_N, wg_thread, 1 + wg);
      } else {
#pragma unroll
        for (u32 w = 0; w < kWaves; ++w)
          Store::run(acc[w], sm.d + wg * Store::kBytes, &tm_d, row0 + w * 64, nb * BLOCK_N, m,
                     SHAPE_N, wg_thread, 1 + wg, store_seq);
      }
    }
    Store::drain(wg_thread);
  }
  if constexpr (kCluster > 1) cluster_sync();
}

}  // namespace jaxgemm
