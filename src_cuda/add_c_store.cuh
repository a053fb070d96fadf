// Epilogue of the GEMMs with C (dense D = C + A @ B^T, k-grouped D[g] = C[g]
// + A_g^T B_g; FP32): C is read by the kernel, not copied into D beforehand.
//
// Aliasing C to D and reducing into it with TMA makes XLA copy C into D
// first (a D2D memcpy) unless the caller donated C: one more pass over the
// FP32 output, 41% of the time at 7168x4096x2048.
// Instead each math warpgroup keeps a 64 x BLOCK_N output block (one wave)
// in shared memory: at the start of a tile one thread TMA-loads the first
// wave's C into it (the load lands during the tile's main loop), the
// epilogue adds the accumulators to C in place and TMA-stores the slabs to
// D.  A warpgroup with two waves (256-row dense tiles; staging both would
// take 128 KiB) warms L2 with the second wave's C at the tile's start and
// reloads the buffer from there slab by slab, each slab as soon as the
// first wave's store has read it.  The same buffer serves the next tile
// once those stores have read it.
#pragma once

#include "gemm_common.cuh"

namespace jaxgemm {

template <u32 BLOCK_N>
struct TileAddCStore {
  static constexpr u32 kSlabCols = jaxgemm_plan::store_slab_cols(BLOCK_N, 4);
  static constexpr u32 kRowBytes = kSlabCols * 4;
  static constexpr u32 kNumSlabs = BLOCK_N / kSlabCols;
  static constexpr u32 kSlabBytes = 64 * kRowBytes;
  static constexpr u32 kBytes = kNumSlabs * kSlabBytes;  // one warpgroup's block
  static_assert(BLOCK_N % kSlabCols == 0, "block N must be a multiple of the store slab");
  static_assert(kSlabBytes % 1024 == 0, "slabs must keep the swizzle period aligned");

  // Before the kernel's prologue synchronises: one "C landed" barrier per
  // math warpgroup, completed by that warpgroup's C loads.
  __device__ __forceinline__ static void init_barriers(u64* c_full, u32 math_warpgroups,
                                                       bool init_thread) {
    if (init_thread)
      for (u32 w = 0; w < math_warpgroups; ++w) mbar_init(&c_full[w], 1);
  }

  // One thread of the warpgroup (the one that issues its stores): once the
  // previous tile's stores have read `buf`, load C's rows [row0, row0 + 64)
  // and columns [col0, col0 + BLOCK_N) into it, slab by slab (TMA zero-fills
  // past M and N), completing on `bar`.  Slabs wholly past M or N are not
  // loaded and not stored.  `group` >= 0 selects a 3-D C [groups, M, N] (the
  // k-grouped kernels; TMA clips rows per group).
  __device__ __forceinline__ static void prefetch(unsigned char* buf, const TmaDesc* desc_c,
                                                  u64* bar, u32 row0, u32 col0, u32 m, u32 n,
                                                  int group = -1) {
    tma_store_wait_read<0>();
    u32 bytes = 0;
    if (row0 < m) {
#pragma unroll
      for (u32 s = 0; s < kNumSlabs; ++s) {
        const u32 col = col0 + s * kSlabCols;
        if (col < n) {
          if (group >= 0)
            tma_load_3d(buf + s * kSlabBytes, desc_c, bar, col, row0, group);
          else
            tma_load_2d(buf + s * kSlabBytes, desc_c, bar, col, row0);
          bytes += kSlabBytes;
        }
      }
    }
    mbar_arrive_expect_tx(bar, bytes);
  }

  // One thread, at the start of a dense tile whose warpgroup owns kWaves
  // waves from row0: wave 0's C into `buf` (as prefetch), the other waves'
  // C into L2 for finish_tile to reload.
  template <u32 kWaves>
  __device__ __forceinline__ static void begin_tile(unsigned char* buf, const TmaDesc* desc_c,
                                                    u64* bar, u32 row0, u32 col0, u32 m, u32 n) {
    prefetch(buf, desc_c, bar, row0, col0, m, n);
#pragma unroll
    for (u32 w = 1; w < kWaves; ++w) {
#pragma unroll
      for (u32 s = 0; s < kNumSlabs; ++s) {
        const u32 row = row0 + 64 * w, col = col0 + s * kSlabCols;
        if (row < m && col < n) tma_prefetch_l2_2d(desc_c, col, row);
      }
    }
  }

  // Every thread of the warpgroup, after the dense tile's main loop: D = C +
  // acc for each wave (run), reloading `buf` with the next wave's C in
  // between.  `phase` advances once per wave.
  template <u32 kWaves, u32 N>
  __device__ __forceinline__ static void finish_tile(const float (&acc)[kWaves][N],
                                                     unsigned char* buf, const TmaDesc* desc_c,
                                                     const TmaDesc* desc_d, u64* bar, u32& phase,
                                                     u32 row0, u32 col0, u32 m, u32 n,
                                                     u32 wg_thread, u32 barrier_id) {
#pragma unroll
    for (u32 w = 0; w < kWaves; ++w) {
      if (w > 0 && wg_thread == 0) reload<0>(buf, desc_c, bar, row0 + 64 * w, col0, m, n, 0);
      run(acc[w], buf, desc_d, bar, phase, row0 + 64 * w, col0, m, n, wg_thread, barrier_id);
      phase ^= 1;
    }
  }

  // The thread that issued the previous wave's stores: slab S of the wave
  // at row0 into `buf` once the store that read slab S is done reading (the
  // stores were committed one group per slab, in order), then the expected
  // bytes on `bar` (loads may complete first: the phase needs the arrival).
  template <u32 S>
  __device__ __forceinline__ static void reload(unsigned char* buf, const TmaDesc* desc_c,
                                                u64* bar, u32 row0, u32 col0, u32 m, u32 n,
                                                u32 bytes) {
    if constexpr (S == kNumSlabs) {
      mbar_arrive_expect_tx(bar, bytes);
    } else {
      tma_store_wait_read<kNumSlabs - 1 - S>();
      const u32 col = col0 + S * kSlabCols;
      if (row0 < m && col < n) {
        tma_load_2d(buf + S * kSlabBytes, desc_c, bar, col, row0);
        bytes += kSlabBytes;
      }
      reload<S + 1>(buf, desc_c, bar, row0, col0, m, n, bytes);
    }
  }

  // Every thread of the warpgroup: waits for C (`phase` of `bar`), adds its
  // accumulators (wgmma layout, see TileStore) to C in place, and one thread
  // stores each slab to D once the warpgroup has written it.
  __device__ __forceinline__ static void run(const float* acc, unsigned char* buf,
                                             const TmaDesc* desc_d, u64* bar, u32 phase, u32 row0,
                                             u32 col0, u32 m, u32 n, u32 wg_thread,
                                             u32 barrier_id, int group = -1) {
    const u32 warp = wg_thread / 32, lane = wg_thread % 32;
    const u32 r = warp * 16 + lane / 4, q = lane % 4;
    mbar_wait(bar, phase);
#pragma unroll
    for (u32 s = 0; s < kNumSlabs; ++s) {
      unsigned char* slab = buf + s * kSlabBytes;
#pragma unroll
      for (u32 j = s * kSlabCols / 8; j < (s + 1) * kSlabCols / 8; ++j) {
        const u32 c = 8 * j + 2 * q - s * kSlabCols;
#pragma unroll
        for (u32 h = 0; h < 2; ++h) {
          const u32 off = swizzle_offset<kRowBytes>((r + 8 * h) * kRowBytes + c * 4);
          const F32x2 cv = ld_shared_f32x2(slab + off);
          st_shared_f32x2(slab + off, cv.x + acc[4 * j + 2 * h], cv.y + acc[4 * j + 2 * h + 1]);
        }
      }
      publish_slab(slab, desc_d, row0, col0, s * kSlabCols, m, n, wg_thread, barrier_id,
                   group);
    }
  }

  __device__ __forceinline__ static void drain(u32 wg_thread) {
    if (wg_thread == 0) tma_store_wait_all<0>();
  }
};

}  // namespace jaxgemm
