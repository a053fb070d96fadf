// The per-stage math of the FP8 kernels (dense, m-grouped, k-grouped): one
// 64-row wave's wgmma over a 128-deep K block into a fresh accumulator, and
// its promotion into the FP32 result on the CUDA cores.
#pragma once

#include "ptx.cuh"

namespace jaxgemm {

// acc = A_tile @ B_tile^T over one stage (kKSteps wgmma of K 32), waited.
template <typename Mma, u32 kKSteps>
__device__ __forceinline__ void wgmma_stage_fresh(u64 desc_a, u64 desc_b, float* acc) {
#pragma unroll
  for (u32 i = 0; i < Mma::kNumAccum; ++i) reg_fence(acc[i]);
  wgmma_fence();
#pragma unroll
  for (u32 k = 0; k < kKSteps; ++k) Mma::mma(desc_a + 2 * k, desc_b + 2 * k, acc, k > 0);
  wgmma_commit();
#pragma unroll
  for (u32 i = 0; i < Mma::kNumAccum; ++i) reg_fence(acc[i]);
  wgmma_wait<0>();
}

// fin += acc * sa[row] * sb[block] with per-block (128x128) B scales: the
// columns before `boundary` use b0, the rest b1 (a tile straddling two
// blocks).  a0/a1: the thread's two rows (r and r + 8).
template <u32 BLOCK_N>
__device__ __forceinline__ void promote_block_scaled(float* fin, const float* acc, float a0,
                                                     float a1, float b0, float b1, u32 boundary) {
  const float s00 = a0 * b0, s01 = a0 * b1, s10 = a1 * b0, s11 = a1 * b1;
#pragma unroll
  for (u32 j = 0; j < BLOCK_N / 8; ++j) {
    const bool first = 8 * j < boundary;
    const float t0 = first ? s00 : s01, t1 = first ? s10 : s11;
    fin[4 * j + 0] += acc[4 * j + 0] * t0;
    fin[4 * j + 1] += acc[4 * j + 1] * t0;
    fin[4 * j + 2] += acc[4 * j + 2] * t1;
    fin[4 * j + 3] += acc[4 * j + 3] * t1;
  }
}

// fin += acc * sa[row] * sb[col] with per-row (1x128) B scales `sbs` (the
// stage's BLOCK_N column scales in shared memory); q = lane % 4.
template <u32 BLOCK_N>
__device__ __forceinline__ void promote_row_scaled(float* fin, const float* acc, float a0,
                                                   float a1, const float* sbs, u32 q) {
#pragma unroll
  for (u32 j = 0; j < BLOCK_N / 8; ++j) {
    const float2 bs = *reinterpret_cast<const float2*>(sbs + 8 * j + 2 * q);
    fin[4 * j + 0] += acc[4 * j + 0] * (a0 * bs.x);
    fin[4 * j + 1] += acc[4 * j + 1] * (a0 * bs.y);
    fin[4 * j + 2] += acc[4 * j + 2] * (a1 * bs.x);
    fin[4 * j + 3] += acc[4 * j + 3] * (a1 * bs.y);
  }
}

}  // namespace jaxgemm
