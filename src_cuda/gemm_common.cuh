// Pieces shared by the GEMM kernels: the persistent tile scheduler, the
// shared-memory pipeline ring (with 2/4-CTA cluster multicast of A), and the
// epilogue that stages a warpgroup's accumulators in shared memory and
// writes them with TMA.
#pragma once

#include "ptx.cuh"
#include "smem_plan.h"

namespace jaxgemm {

// Persistent tile order.  The unit of scheduling is a cluster tile: one M
// block and kCluster consecutive N blocks (CTA rank r of the cluster takes
// N block kCluster * g + r, and the cluster shares the A tile through TMA
// multicast).  Units are numbered so that consecutive numbers share an M
// block and walk N in bands of kBandN units: a wave of clusters touches few
// A and B tiles, which stay in L2.
template <u32 kBandN, u32 kCluster>
struct DenseScheduler {
  u32 num_m_blocks, num_n_blocks, num_n_groups, num_units;
  __device__ DenseScheduler(u32 m, u32 block_m, u32 n, u32 block_n) {
    num_m_blocks = (m + block_m - 1) / block_m;
    num_n_blocks = (n + block_n - 1) / block_n;
    num_n_groups = (num_n_blocks + kCluster - 1) / kCluster;
    num_units = num_m_blocks * num_n_groups;
  }
  __device__ __forceinline__ static u32 first_unit() { return blockIdx.x / kCluster; }
  __device__ __forceinline__ static u32 unit_stride() { return gridDim.x / kCluster; }
  // N block may be past the last one (a cluster straddling the N edge): that
  // CTA still loads and multicasts its share of A, and stores nothing.
  __device__ __forceinline__ void tile(u32 t, u32 rank, u32& m_block, u32& n_block) const {
    const u32 band_units = kBandN * num_m_blocks;
    const u32 band = t / band_units;
    const u32 first = band * kBandN;
    const u32 width = min(kBandN, num_n_groups - first);
    const u32 r = t - band * band_units;
    m_block = r / width;
    n_block = (first + r % width) * kCluster + rank;
  }
};

// The trip count of the FP8 producer's K loops.  With 12-16 K blocks (K =
// 1536-2048) NVRTC 13.0 unrolled them completely and the 40-register
// producer spilled (224 bytes at 4096 x 24576 x 1536 on 256x128 tiles, 136
// at 128x64 tiles with K = 2048; NVRTC 13.5: 16 bytes at the first);
// hidden from the compiler, the loop keeps the shape it has at larger K.
// Outside that range the count stays a compile-time constant: hidden at
// 4 K blocks it made NVRTC 13.5 spill instead (tools/spill_scan.py checks
// every benchmarked kernel).
template <u32 kNumKBlocks>
__device__ __forceinline__ u32 k_loop_count() {
  if constexpr (kNumKBlocks >= 8 && kNumKBlocks <= 16) return opaque(kNumKBlocks);
  return kNumKBlocks;
}

// A GEMM kernel's dynamic shared memory, carved as its plan says (the base
// aligned to 1024 bytes for the 128-byte swizzle): the output staging, then
// per region all stages of A, of B, of per-row B scales, of the scale
// loader's slots, then the barriers.  Regions a kernel does not use are empty.
struct GemmSmem {
  unsigned char *d, *a, *b, *sb, *sf;
  u64* bars;
};
template <u32 kStages>
__device__ __forceinline__ GemmSmem carve_gemm_smem(unsigned char* raw,
                                                    const jaxgemm_plan::GemmSmemPlan& p) {
  GemmSmem s;
  s.d = raw + ((1024 - (smem_addr(raw) & 1023)) & 1023);
  s.a = s.d + p.d_tile;
  s.b = s.a + kStages * p.a_stage;
  s.sb = s.b + kStages * p.b_stage;
  s.sf = s.sb + kStages * p.sb_stage;
  s.bars = reinterpret_cast<u64*>(s.sf + kStages * p.sf_stage);
  return s;
}

// The stage ring: "full" barriers (the producer's expected bytes, completed
// by TMA) and "empty" barriers (every lane of this CTA's consumer warps,
// plus one arrival per consumer warp of each peer CTA of the cluster, since a
// multicast writes every CTA's copy of the stage).
template <u32 kStages, u32 kCluster>
struct Ring {
  static constexpr u32 kNumStages = kStages;
  u64* full;
  u64* empty;
  __device__ __forceinline__ void init(u32 consumer_warps, u32 producers = 1) const {
#pragma unroll
    for (u32 s = 0; s < kStages; ++s) {
      mbar_init(&full[s], producers);
      mbar_init(&empty[s], consumer_warps * (32 + kCluster - 1));
    }
    fence_barrier_init();
  }
  // Called by every lane of a consumer warp once it is done with `stage`.
  // Every lane arrives (release) on its own CTA's barrier, so each lane's
  // reads of the stage (the scales it loaded) are ordered before the refill
  // by the barrier itself; lanes < kCluster other than this CTA's rank also
  // arrive on that peer's barrier, whose producer multicasts into this CTA.
  // (A __syncwarp and one lane's arrive is also correct, but racecheck does
  // not carry the warp barrier over to the other lanes and reported the
  // refill racing their scale reads wherever the ring wrapped inside a tile.)
  __device__ __forceinline__ void release(u32 stage, u32 lane) const {
    mbar_arrive(&empty[stage]);
    if constexpr (kCluster > 1) {
      if (lane < kCluster && lane != cluster_ctarank()) mbar_arrive_cluster(&empty[stage], lane);
    }
  }
};

// How many of a warpgroup's kWaves 64-row waves, the first at row wave_row0,
// start before row_end (the m-grouped kernels' segment end).
template <u32 kWaves>
__device__ __forceinline__ u32 live_waves(u32 wave_row0, u32 row_end) {
  return wave_row0 >= row_end ? 0u : min(kWaves, (row_end - wave_row0 + 63) / 64);
}

// Consumes n stages of the ring without reading them: a math warpgroup whose
// rows of a tile all lie past the end of the tile's segment (an m-grouped
// tile of a small group) skips the wgmma but still owes each stage its
// release.  Each stage is waited for first: released early, this
// warpgroup's arrival could land in the stage's previous phase, before the
// other warpgroup's, and complete that phase with a double count.
template <u32 kStages, u32 kCluster>
__device__ __forceinline__ void skip_stages(const Ring<kStages, kCluster>& ring, u32 n, u32& stage,
                                            u32& phase, u32 lane) {
  for (u32 i = 0; i < n; ++i) {
    mbar_wait(&ring.full[stage], phase);
    ring.release(stage, lane);
    if (++stage == kStages) stage = 0, phase ^= 1;
  }
}

// The start every GEMM kernel shares: one producer thread prefetches the
// TMA descriptors and initialises the ring ("full" expects `producers`
// arrivals per stage), then the CTA synchronises; in a cluster every CTA
// does, since a peer's barriers must be initialised before anyone multicasts
// into its shared memory.
template <u32 kStages, u32 kCluster, typename... Desc>
__device__ __forceinline__ void gemm_prologue(const Ring<kStages, kCluster>& ring, bool init_thread,
                                              u32 consumer_warps, u32 producers,
                                              const Desc*... descs) {
  if (init_thread) {
    (tma_prefetch_desc(descs), ...);
    ring.init(consumer_warps, producers);
  }
  if constexpr (kCluster > 1)
    cluster_sync();
  else
    __syncthreads();
}

// Loads one stage's A tile: the whole tile, or with a cluster this CTA's
// 1/kCluster slice of its rows, multicast to every CTA of the cluster.
template <u32 BLOCK_M, u32 kCluster>
__device__ __forceinline__ void load_a_stage(unsigned char* dst, const TmaDesc* desc, u64* bar,
                                             u32 k_coord, u32 m0, u32 rank) {
  if constexpr (kCluster == 1) {
    tma_load_2d(dst, desc, bar, k_coord, m0);
  } else {
    constexpr u32 kRows = BLOCK_M / kCluster;
    static_assert(kRows % 8 == 0, "multicast slices must be whole 8-row swizzle atoms");
    tma_load_2d_multicast(dst + rank * kRows * 128, desc, bar, k_coord, m0 + rank * kRows,
                          static_cast<unsigned short>((1u << kCluster) - 1));
  }
}

// A stage's scale slots (FP8 kernels): sf[0, BLOCK_M) the tile rows' A
// scales, then, with per-block B scales, a 2 x 4 block [B block][K block
// % 4]: K block kb's first B block scale at sf[BLOCK_M + kb % 4], its second
// at sf[BLOCK_M + kSecondBScale + kb % 4].  That is the layout of the TMA
// box of TmaStageScales, whose start along K must be a multiple of 4 (16
// bytes: an unaligned start is an illegal instruction); the scale-loader
// warp writes the same slots.
constexpr u32 kSecondBScale = 4;
__device__ __forceinline__ u32 b_scale_slot(u32 kb) { return kb % kSecondBScale; }

// Scales by TMA (dense kernels built with scales_tma): the A scales come
// from the transposed [ceil(K/128), M (padded to 4)] copy, one contiguous
// box of BLOCK_M per stage (row0 is a multiple of BLOCK_M, so the box start
// is 16-byte aligned); the B block scales from [n blocks, ceil(K/128)
// (padded to 4)] as a box of 4 K blocks x 2 N blocks starting at
// (kb rounded down to 4, b_row), of which the stage uses column kb % 4.
// Out-of-bounds elements arrive as zeros.
// Measured (H100, 2026-11-28, same call, transpose included): over the
// cp.async scale loader below, +7-10% on 256x128 tiles and +2-5% on 128x192
// at M = 4096.
// kRowBoxes (scales_tma 2): the A scales stay row-major, [M, ceil(K/128)
// padded to 4], and each stage loads a box of 4 K blocks x BLOCK_M rows
// (the row is the box's outer coordinate, so any row0 works; the stage uses
// slot kb % 4 of each row's 16 bytes).  No transpose, 4x the scale bytes.
template <u32 BLOCK_M, bool kPerBlockB, bool kRowBoxes = false>
struct TmaStageScales {
  static constexpr u32 kABytes = BLOCK_M * 4 * (kRowBoxes ? kSecondBScale : 1);
  static constexpr u32 kBytes = kABytes + (kPerBlockB ? 2 * kSecondBScale * 4 : 0);
  __device__ __forceinline__ static void load(unsigned char* sf, const TmaDesc* tm_sa,
                                              const TmaDesc* tm_sbb, u64* bar, u32 row0, u32 kb,
                                              u32 b_row) {
    const int kb4 = static_cast<int>(kb - b_scale_slot(kb));
    if constexpr (kRowBoxes)
      tma_load_2d(sf, tm_sa, bar, kb4, static_cast<int>(row0));
    else
      tma_load_2d(sf, tm_sa, bar, static_cast<int>(row0), static_cast<int>(kb));
    if constexpr (kPerBlockB) tma_load_2d(sf + kABytes, tm_sbb, bar, kb4, static_cast<int>(b_row));
  }
};

// The scale-loader warp of the FP8 kernels (per-block B scales): for one
// tile, which of its B scale blocks exist, and per stage the copy of the
// tile's A row scales and B block scales into the stage's scale slots.
struct TileBScales {
  u32 blk;            // the tile's first 128-column B scale block
  bool first, second;  // whether that block / the next one is in the tile
};
template <u32 BLOCK_N>
__device__ __forceinline__ TileBScales tile_b_scales(u32 n0, u32 shape_n, u32 n_scale_blocks,
                                                     bool per_block) {
  TileBScales t;
  t.blk = n0 / 128;
  t.first = per_block && n0 < shape_n;
  t.second = t.first && (t.blk + 1) * 128 - n0 < BLOCK_N && t.blk + 1 < n_scale_blocks;
  return t;
}

// sf[r] = sa[row0 + r, kb] for the tile's rows (0 at and past row_end), then
// sb[blk + i, kb] for the tile's B blocks (0 where absent) in the B slots,
// by cp.async from one warp; completion arrives on `full` (one arrival per
// lane).  sa is [rows, kNumKBlocks], sb [n blocks, kNumKBlocks].
template <u32 BLOCK_M, u32 kNumKBlocks>
__device__ __forceinline__ void load_stage_scales(float* sf, u64* full, const float* sa, u32 row0,
                                                  u32 row_end, const float* sb,
                                                  const TileBScales& bs, u32 kb, u32 lane) {
#pragma unroll
  for (u32 i = 0; i < BLOCK_M / 32; ++i) {
    const u32 row = row0 + i * 32 + lane;
    const bool ok = row < row_end;
    cp_async_4(sf + i * 32 + lane, sa + (ok ? static_cast<u64>(row) * kNumKBlocks + kb : 0), ok);
  }
  if (lane < 2) {
    const bool ok = lane == 0 ? bs.first : bs.second;
    cp_async_4(sf + BLOCK_M + lane * kSecondBScale + b_scale_slot(kb),
               sb + (ok ? (bs.blk + lane) * kNumKBlocks + kb : 0), ok);
  }
  cp_async_mbar_arrive(full);
}

// Applies the TMA swizzle of a box whose rows are kRowBytes long (128/64/32;
// 16 = none): the 16-byte chunk index is XORed with the row's low bits.
template <u32 kRowBytes>
__device__ __forceinline__ u32 swizzle_offset(u32 offset) {
  constexpr u32 kMask = kRowBytes / 16 - 1;
  return offset ^ (((offset >> 7) & kMask) << 4);
}

// Hands one staged output slab (64 rows at (row0, col0 + col_off) of D,
// written by the warpgroup's threads) to TMA: fence, warpgroup barrier, then
// one thread stores it (3-D D [groups, M, N] when group >= 0; nothing wholly
// past M or N) and commits a bulk group, empty or not, so that the count of
// groups stays exact.  The column is formed inside the storing thread's
// branch, where the kernels had it (the SASS of every kernel is unchanged).
__device__ __forceinline__ void publish_slab(const unsigned char* slab, const TmaDesc* desc_d,
                                             u32 row0, u32 col0, u32 col_off, u32 m, u32 n,
                                             u32 wg_thread, u32 barrier_id, int group) {
  fence_proxy_async_smem();
  named_barrier_sync(barrier_id, 128);
  if (wg_thread == 0) {
    const u32 col = col0 + col_off;
    if (row0 < m && col < n) {
      if (group >= 0)
        tma_store_3d(desc_d, slab, col, row0, group);
      else
        tma_store_2d(desc_d, slab, col, row0);
    }
    tma_store_commit();
  }
}

// Epilogue of the math warpgroups.  A 64 x BLOCK_N accumulator block (one
// wave, wgmma register layout) is converted and written to D at (row0,
// col0) one column slab at a time: the slab goes into the next buffer of
// the warpgroup's staging ring (TMA-swizzled), and one thread issues a TMA
// store of it.  A buffer is rewritten only after the store
// that last read it is done reading, so stores overlap the next slabs, the
// next tile's main loop, and each other.  TMA drops the parts of a box past
// M and N.  The wgmma accumulator layout: acc[4j + {0,1}] = (row r, cols
// 8j + 2q + {0,1}) and acc[4j + {2,3}] = (row r + 8, same cols), with
// r = 16 * warp + lane / 4 and q = lane % 4.
// kSlabCols: the kernel plan's slab_cols (src_cuda/smem_plan.h), which the
// host's D descriptor boxes match.
template <u32 BLOCK_N, bool kOutF32, u32 kSlabCols>
struct TileStore {
  static constexpr u32 kOutBytes = kOutF32 ? 4 : 2;
  static constexpr u32 kRowBytes = kSlabCols * kOutBytes;
  static constexpr u32 kNumSlabs = BLOCK_N / kSlabCols;
  static constexpr u32 kSlabBytes = 64 * kRowBytes;
  static constexpr u32 kRing = jaxgemm_plan::store_ring_slabs(BLOCK_N, kSlabCols);
  static constexpr u32 kBytes = kRing * kSlabBytes;  // one warpgroup's staging ring
  static_assert(BLOCK_N % kSlabCols == 0, "block N must be a multiple of the store slab");
  static_assert(kSlabBytes % 1024 == 0, "slabs must keep the swizzle period aligned");

  // `ring` is this warpgroup's staging ring; `seq` counts the slabs this
  // warpgroup has staged so far (kept across tiles); `wg_thread` in [0, 128).
  // `group` >= 0 selects a 3-D D [groups, M, N] (TMA clips rows per group).
  __device__ __forceinline__ static void run(const float* acc, unsigned char* ring,
                                             const TmaDesc* desc_d, u32 row0, u32 col0, u32 m,
                                             u32 n, u32 wg_thread, u32 barrier_id, u32& seq,
                                             int group = -1) {
    const u32 warp = wg_thread / 32, lane = wg_thread % 32;
    const u32 r = warp * 16 + lane / 4, q = lane % 4;
#pragma unroll
    for (u32 s = 0; s < kNumSlabs; ++s, ++seq) {
      unsigned char* buf = ring + (seq % kRing) * kSlabBytes;
      if (seq >= kRing) {
        // The store issued kRing slabs ago read this buffer: wait for it.
        if (wg_thread == 0) tma_store_wait_read<kRing - 1>();
        named_barrier_sync(barrier_id, 128);
      }
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
      publish_slab(buf, desc_d, row0, col0, s * kSlabCols, m, n, wg_thread, barrier_id, group);
    }
  }

  // Before the CTA exits, its stores must have finished reading shared memory.
  __device__ __forceinline__ static void drain(u32 wg_thread) {
    if (wg_thread == 0) tma_store_wait_all<0>();
  }
};

}  // namespace jaxgemm
