// The main loop of the BF16 kernels (dense, m-grouped, k-grouped): the
// accumulators are the result, so each math warpgroup keeps one stage of
// wgmma in flight and frees a stage as soon as the next one is issued.
#pragma once

#include "gemm_common.cuh"

namespace jaxgemm {

// The dense BF16 kernels' producer (one thread): for each of the CTA's
// tiles in scheduler order, its kNumKBlocks stages of A (multicast over the
// cluster) and B into the ring.  Shared by bf16_gemm_nt.cuh and the
// ping-pong kernel, which differ only in who consumes the stages.
template <u32 BLOCK_M, u32 BLOCK_N, u32 BLOCK_K, u32 kNumKBlocks, u32 kStages, u32 kCluster,
          typename Sched>
__device__ __forceinline__ void bf16_dense_produce(const Sched& sched,
                                                   const Ring<kStages, kCluster>& ring,
                                                   const GemmSmem& sm, u32 a_stage_bytes,
                                                   u32 b_stage_bytes, const TmaDesc* tm_a,
                                                   const TmaDesc* tm_b, u32 rank) {
  u32 stage = 0, phase = 0;
  for (u32 t = sched.first_unit(); t < sched.num_units; t += sched.unit_stride()) {
    u32 mb, nb;
    sched.tile(t, rank, mb, nb);
    for (u32 kb = 0; kb < kNumKBlocks; ++kb) {
      mbar_wait(&ring.empty[stage], phase ^ 1);
      u64* bar = &ring.full[stage];
      load_a_stage<BLOCK_M, kCluster>(sm.a + stage * a_stage_bytes, tm_a, bar, kb * BLOCK_K,
                                      mb * BLOCK_M, rank);
      tma_load_2d(sm.b + stage * b_stage_bytes, tm_b, bar, kb * BLOCK_K, nb * BLOCK_N);
      mbar_arrive_expect_tx(bar, a_stage_bytes + b_stage_bytes);
      if (++stage == kStages) stage = 0, phase ^= 1;
    }
  }
}

// acc[w] = sum over `num_stages` (>= 1) ring stages of A_wave_w @ B^T, for
// this warpgroup's kWaves 64-row waves; `stage`/`phase` advance with the ring.
template <typename Mma, u32 kWaves, u32 kKSteps, u32 kStages, u32 kCluster>
__device__ __forceinline__ void bf16_accumulate_stages(const Ring<kStages, kCluster>& ring,
                                                       const GemmSmem& sm, u32 a_stage_bytes,
                                                       u32 b_stage_bytes, u32 wg, u32 lane,
                                                       u32 num_stages, u32& stage, u32& phase,
                                                       float (&acc)[kWaves][Mma::kNumAccum]) {
  u32 prev_stage = 0;
  // The warpgroup's first wave, broadcast so that the compiler knows it is
  // warp-uniform and builds the A descriptors in uniform registers (see
  // Fp8TileMath's a_off).
  const u32 wave0 = __shfl_sync(0xffffffffu, wg, 0) * kWaves;
  for (u32 i = 0; i < num_stages; ++i) {
    mbar_wait(&ring.full[stage], phase);
    const u64 db = smem_desc_sw128(sm.b + stage * b_stage_bytes);
#pragma unroll
    for (u32 w = 0; w < kWaves; ++w)
#pragma unroll
      for (u32 x = 0; x < Mma::kNumAccum; ++x) reg_fence(acc[w][x]);
    wgmma_fence();
#pragma unroll
    for (u32 w = 0; w < kWaves; ++w) {
      const u64 da = smem_desc_sw128(sm.a + stage * a_stage_bytes + (wave0 + w) * 64 * 128);
#pragma unroll
      for (u32 k = 0; k < kKSteps; ++k) Mma::mma(da + 2 * k, db + 2 * k, acc[w], i > 0 || k > 0);
    }
    wgmma_commit();
#pragma unroll
    for (u32 w = 0; w < kWaves; ++w)
#pragma unroll
      for (u32 x = 0; x < Mma::kNumAccum; ++x) reg_fence(acc[w][x]);
    // Keep this stage's wgmma in flight; the previous stage is now free.
    wgmma_wait<1>();
    if (i > 0) ring.release(prev_stage, lane);
    prev_stage = stage;
    if (++stage == kStages) stage = 0, phase ^= 1;
  }
  wgmma_wait<0>();
#pragma unroll
  for (u32 w = 0; w < kWaves; ++w)
#pragma unroll
    for (u32 x = 0; x < Mma::kNumAccum; ++x) reg_fence(acc[w][x]);
  ring.release(prev_stage, lane);
}

}  // namespace jaxgemm
