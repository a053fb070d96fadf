// Epilogue of the m-grouped kernels: a tile's last rows may belong to the
// next group, so rows are stored one by one (16-byte predicated stores out of
// a shared-memory slab) instead of with TMA boxes.
#pragma once

#include "gemm_common.cuh"

namespace jaxgemm {

// Stores a 64 x BLOCK_N wave to rows [row0, row_end) and columns < n of D.
// kSlabCols: the kernel plan's slab_cols (src_cuda/smem_plan.h).
template <u32 BLOCK_N, bool kOutF32, u32 kSlabCols>
struct MaskedTileStore {
  static constexpr u32 kOutBytes = kOutF32 ? 4 : 2;
  static constexpr u32 kRowBytes = kSlabCols * kOutBytes;
  static constexpr u32 kNumSlabs = BLOCK_N / kSlabCols;
  static constexpr u32 kBytes = 64 * kRowBytes;  // one slab buffer per warpgroup
  static constexpr u32 kChunksPerRow = kRowBytes / 16;

  __device__ __forceinline__ static void run(const float* acc, unsigned char* buf,
                                             unsigned char* d, u32 ld_bytes, u32 row0,
                                             u32 row_end, u32 col0, u32 n, u32 wg_thread,
                                             u32 barrier_id) {
    const u32 warp = wg_thread / 32, lane = wg_thread % 32;
    const u32 r = warp * 16 + lane / 4, q = lane % 4;
#pragma unroll
    for (u32 s = 0; s < kNumSlabs; ++s) {
      named_barrier_sync(barrier_id, 128);  // the previous slab's copy-out is done
#pragma unroll
      for (u32 j = s * kSlabCols / 8; j < (s + 1) * kSlabCols / 8; ++j) {
        const u32 c = 8 * j + 2 * q - s * kSlabCols;
#pragma unroll
        for (u32 h = 0; h < 2; ++h) {
          const u32 off = swizzle_offset<kRowBytes>((r + 8 * h) * kRowBytes + c * kOutBytes);
          if constexpr (kOutF32)
            st_shared_f32x2(buf + off, acc[4 * j + 2 * h], acc[4 * j + 2 * h + 1]);
          else
            st_shared_u32(buf + off, pack_bf16x2(acc[4 * j + 2 * h], acc[4 * j + 2 * h + 1]));
        }
      }
      named_barrier_sync(barrier_id, 128);
#pragma unroll
      for (u32 c = wg_thread; c < 64 * kChunksPerRow; c += 128) {
        const u32 row = c / kChunksPerRow, chunk = c % kChunksPerRow;
        const u32 grow = row0 + row;
        const u32 gcol = col0 + s * kSlabCols + chunk * (16 / kOutBytes);
        if (grow < row_end && gcol < n) {
          const U32x4 v = ld_shared_v4(buf + swizzle_offset<kRowBytes>(row * kRowBytes + chunk * 16));
          st_global_v4(d + static_cast<u64>(grow) * ld_bytes + gcol * kOutBytes, v);
        }
      }
    }
  }
};

}  // namespace jaxgemm
