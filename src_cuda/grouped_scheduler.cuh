// Tile order of the m-grouped GEMMs, from group sizes that live on the device.
//
// The rows of the output are cut into segments, walked in order:
//   contiguous: group g's rows [off_g, off_g + size_g) (sizes clamped at 0,
//               offsets at M: the clamp semantics of jaxgemm/_groups.py), then
//               one zero segment for the rows past the last group;
//   masked:     group g's rows [g*M_max, g*M_max + masked_m[g]) (masked_m
//               clipped to [0, M_max]), then its zero rows up to (g+1)*M_max
//               (an empty segment when the translation unit defines
//               JAXGEMM_MASKED_SKIP_ZERO_ROWS: those rows are left untouched).
// A segment is ceil(rows / BLOCK_M) row tiles (the first starts at the
// segment's first row, aligned or not) times the N blocks; a zero segment
// only stores zeros.  Every thread walks the same units in increasing order,
// so each keeps a cursor and reads each group size once.
#pragma once

#include "ptx.cuh"

#ifndef JAXGEMM_MASKED_SKIP_ZERO_ROWS
#define JAXGEMM_MASKED_SKIP_ZERO_ROWS 0
#endif

namespace jaxgemm {

template <bool kMasked, u32 BLOCK_M, u32 kBandN, u32 kCluster>
struct GroupedScheduler {
  const int* sizes;
  u32 groups, m, num_n_groups;  // m: rows of A (contiguous) or M_max (masked)
  // Cursor: the current segment.
  u32 seg = 0, seg_first = 0, seg_units = 0, seg_row0 = 0, seg_rows = 0, next_row = 0;
  int seg_group = -1;

  __device__ GroupedScheduler(const int* sizes_, u32 groups_, u32 m_, u32 n, u32 block_n)
      : sizes(sizes_), groups(groups_), m(m_) {
    num_n_groups = ((n + block_n - 1) / block_n + kCluster - 1) / kCluster;
    load(0);
  }
  __device__ __forceinline__ static u32 first_unit() { return blockIdx.x / kCluster; }
  // Read where used (asm volatile: never held in a register across the
  // tile loop), which keeps the 40-register producer of the two-warpgroup
  // FP8 kernels free of spills.
  __device__ __forceinline__ static u32 unit_stride() {
    u32 n;
    asm volatile("mov.u32 %0, %%nctaid.x;" : "=r"(n));
    return n / kCluster;
  }
  __device__ __forceinline__ u32 num_segments() const { return kMasked ? 2 * groups : groups + 1; }

  __device__ __forceinline__ void load(u32 s) {
    seg = s;
    if (s >= num_segments()) return;
    if constexpr (kMasked) {
      const u32 g = s / 2;
      const int raw = __ldg(sizes + g);
      const u32 valid = raw <= 0 ? 0u : min(static_cast<u32>(raw), m);
      seg_group = (s % 2 == 0) ? static_cast<int>(g) : -1;
      seg_row0 = g * m + ((s % 2 == 0) ? 0 : valid);
      seg_rows = (s % 2 == 0) ? valid : (JAXGEMM_MASKED_SKIP_ZERO_ROWS ? 0u : m - valid);
    } else if (s < groups) {
      const int raw = __ldg(sizes + s);
      const u32 size = raw <= 0 ? 0u : static_cast<u32>(raw);
      seg_group = static_cast<int>(s);
      seg_row0 = next_row;
      seg_rows = min(m - next_row, size);
      next_row = seg_row0 + seg_rows;
    } else {
      seg_group = -1;  // rows past the last group
      seg_row0 = next_row;
      seg_rows = m - next_row;
    }
    seg_units = (seg_rows + BLOCK_M - 1) / BLOCK_M * num_n_groups;
  }

  // Moves the cursor to unit t (t never decreases); false past the last unit.
  __device__ __forceinline__ bool find(u32 t) {
    while (seg < num_segments() && t >= seg_first + seg_units) {
      seg_first += seg_units;
      load(seg + 1);
    }
    return seg < num_segments();
  }

  // Unit t (after find(t)): the tile's first row, the segment's end row, the
  // CTA's N block and the group (-1: a zero tile).
  __device__ __forceinline__ void tile(u32 t, u32 rank, u32& row0, u32& row_end, u32& n_block,
                                       int& group) const {
    const u32 u = t - seg_first;
    const u32 m_tiles = (seg_rows + BLOCK_M - 1) / BLOCK_M;
    const u32 band_units = kBandN * m_tiles;
    const u32 band = u / band_units;
    const u32 first = band * kBandN;
    const u32 width = min(kBandN, num_n_groups - first);
    const u32 r = u - band * band_units;
    row0 = seg_row0 + (r / width) * BLOCK_M;
    row_end = seg_row0 + seg_rows;
    n_block = (first + r % width) * kCluster + rank;
    group = seg_group;
  }
};

}  // namespace jaxgemm
