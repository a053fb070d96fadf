// Tile order of the k-grouped GEMMs, from group sizes that live on the device.
#pragma once

#include "ptx.cuh"

namespace jaxgemm {

// Units in group-major order, banded over N inside a group like the dense
// scheduler; a cursor turns the device-side sizes into block offsets.
template <u32 BLOCK_M, u32 kBandN, u32 kCluster>
struct KGroupedScheduler {
  const int* sizes;
  u32 groups, num_m_blocks, num_n_groups, units_per_group, num_units;
  u32 cur_group = 0, cur_blk_off = 0;

  __device__ KGroupedScheduler(const int* sizes_, u32 groups_, u32 m, u32 n, u32 block_n)
      : sizes(sizes_), groups(groups_) {
    num_m_blocks = (m + BLOCK_M - 1) / BLOCK_M;
    num_n_groups = ((n + block_n - 1) / block_n + kCluster - 1) / kCluster;
    units_per_group = num_m_blocks * num_n_groups;
    num_units = groups * units_per_group;
  }
  __device__ __forceinline__ static u32 first_unit() { return blockIdx.x / kCluster; }
  __device__ __forceinline__ static u32 unit_stride() { return gridDim.x / kCluster; }
  __device__ __forceinline__ static u32 blocks_of(int size) {
    return size <= 0 ? 0u : (static_cast<u32>(size) + 127) / 128;
  }

  // Unit t (non-decreasing across calls): group, M block, N block and the
  // group's K blocks [blk_begin, blk_begin + num_blks).
  __device__ __forceinline__ void tile(u32 t, u32 rank, u32& g, u32& m_block, u32& n_block,
                                       u32& blk_begin, u32& num_blks) {
    g = t / units_per_group;
    while (cur_group < g) cur_blk_off += blocks_of(__ldg(sizes + cur_group++));
    blk_begin = cur_blk_off;
    num_blks = blocks_of(__ldg(sizes + g));
    const u32 u = t - g * units_per_group;
    const u32 band_units = kBandN * num_m_blocks;
    const u32 band = u / band_units;
    const u32 first = band * kBandN;
    const u32 width = min(kBandN, num_n_groups - first);
    const u32 r = u - band * band_units;
    m_block = r / width;
    n_block = (first + r % width) * kCluster + rank;
  }
};

}  // namespace jaxgemm
