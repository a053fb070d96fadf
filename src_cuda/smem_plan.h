// Shared-memory plans of the GEMM kernels, as plain constexpr C++.
//
// Included by the kernels (through NVRTC) and by the host (the FFI handlers
// and, through the extension module, the Python config heuristics), so that
// the bytes a kernel carves out of its dynamic shared memory and the bytes the
// host asks for at launch are computed by the same code.
#pragma once

#ifndef JAXGEMM_SMEM_PLAN_H_
#define JAXGEMM_SMEM_PLAN_H_

// Host and device (NVRTC) alike.
#if defined(__CUDACC__)
#define JAXGEMM_HD __host__ __device__
#else
#define JAXGEMM_HD
#endif

namespace jaxgemm_plan {

// Hopper: 227 KiB of dynamic shared memory per block at most.
constexpr unsigned kMaxDynamicSmem = 232448;
constexpr unsigned kBlockK = 128;  // K per pipeline stage (one FP8 scale block)

JAXGEMM_HD constexpr unsigned align_up(unsigned x, unsigned a) { return (x + a - 1) / a * a; }

// Dense / grouped NT GEMM ring: per stage an A tile [block_m, block_k] and a
// B tile [block_n, block_k] (128B-swizzled, 1024-byte aligned), optionally a
// per-row B scale vector; then the output staging tile, then 2 mbarriers per
// stage.  `in_bytes` is 1 for FP8, 2 for BF16 (BF16 stages take half the K).
// Math warpgroups of a config: one for a 64-row tile, else two, each taking
// block_m / 128 consecutive 64-row "waves" of the tile (block_m 256: two).
// block_m 192 (dense FP8 only, no cluster: with one its producer spills):
// three math warpgroups of one wave each, so that two warpgroups' wgmmas are
// queued while the third promotes.
JAXGEMM_HD constexpr unsigned math_warpgroups(unsigned block_m) {
  return block_m <= 64 ? 1 : block_m == 192 ? 3 : 2;
}
JAXGEMM_HD constexpr unsigned m_waves(unsigned block_m) { return block_m / (64 * math_warpgroups(block_m)); }
JAXGEMM_HD constexpr unsigned gemm_threads(unsigned block_m) { return 128 * (math_warpgroups(block_m) + 1); }

// Register split by setmaxnreg: the producer warpgroup drops to
// `producer_regs` per thread and the math warpgroups rise to math_regs.
// Registers only move within the pool the CTA was launched with, threads x
// the per-thread count __launch_bounds__(threads, 1) allows (65536 / threads,
// at most 255, rounded down to 8: 168 for 384 threads, 248 for 256), and an
// increase the pool cannot cover waits forever (a hang, not an error): every
// kernel static_asserts its split with reg_split_fits.
JAXGEMM_HD constexpr unsigned math_regs(unsigned block_m) {
  return math_warpgroups(block_m) == 1 ? 248 : math_warpgroups(block_m) == 2 ? 232 : 160;
}
// A kernel whose math warpgroups need less than math_regs (BF16: no
// promotion) may pass its own figure and give the producer more.
JAXGEMM_HD constexpr bool reg_split_fits(unsigned block_m, unsigned producer_regs,
                                         unsigned math = 0) {
  const unsigned threads = gemm_threads(block_m);
  const unsigned cap = 65536 / threads < 255 ? 65536 / threads : 255;
  const unsigned mr = math ? math : math_regs(block_m);
  return 128 * (producer_regs + math_warpgroups(block_m) * mr) <= threads * (cap / 8 * 8);
}

// The output tile is staged in shared memory as column slabs that one TMA
// store each writes back: a slab is `store_slab_cols` columns wide (at most
// 128 bytes, the widest swizzled box) and holds 64 rows (one wave of a math
// warpgroup).  A warpgroup cycles through a ring of `store_ring_slabs`
// slab buffers, so staging costs 16 KiB per warpgroup at most instead of a
// whole tile, and the freed shared memory goes to pipeline stages.
// The slab's row size in bytes is also its TMA swizzle mode (128/64/32 B;
// 16 B means no swizzle).  Kernels and host handlers take a config's slab
// width from its plan (gemm_smem_plan's slab_cols below).
JAXGEMM_HD constexpr unsigned store_slab_cols(unsigned block_n, unsigned out_bytes) {
  return block_n % (128 / out_bytes) == 0   ? 128 / out_bytes
         : block_n % (64 / out_bytes) == 0  ? 64 / out_bytes
         : block_n % (32 / out_bytes) == 0  ? 32 / out_bytes
                                            : 16 / out_bytes;
}

JAXGEMM_HD constexpr unsigned store_ring_slabs(unsigned block_n, unsigned slab_cols) {
  return block_n / slab_cols < 2 ? 1 : 2;
}

// Staging bytes of the slab rings of a config's math warpgroups.
JAXGEMM_HD constexpr unsigned store_ring_bytes(unsigned block_m, unsigned block_n,
                                               unsigned out_bytes, unsigned slab_cols) {
  return math_warpgroups(block_m) * store_ring_slabs(block_n, slab_cols) * 64 * slab_cols *
         out_bytes;
}

// The k-grouped kernels run one 64-row wave per math warpgroup (two waves
// plus the group cursor overflow the registers with per-row-scaled
// promotion), so block M of at most 128.
constexpr unsigned kKGroupedMaxBlockM = 128;

struct GemmSmemPlan {
  unsigned a_stage, b_stage, sb_stage, sf_stage, stage, d_tile, barriers, total;
  unsigned slab_cols;  // output staging slab width (columns), see store_slab_cols
};

JAXGEMM_HD constexpr GemmSmemPlan gemm_smem_plan(unsigned block_m, unsigned block_n, unsigned stages,
                                                 unsigned in_bytes, unsigned out_bytes,
                                                 bool sb_per_row, bool add_c = false,
                                                 bool a_scale_rows_x4 = false) {
  GemmSmemPlan p{};
  const unsigned stage_k_bytes = 128;  // one 128-byte swizzle row of K per stage
  p.a_stage = block_m * stage_k_bytes;
  p.b_stage = block_n * stage_k_bytes;
  p.sb_stage = sb_per_row ? align_up(block_n * 4, 128) : 0;
  // FP8: the stage's A scales (one per tile row) and its two B block scales
  // (a 4 x 2 box of them when loaded by TMA; src_cuda/gemm_common.cuh).
  // With a_scale_rows_x4 (scales_tma 2) each tile row brings the scales of 4
  // K blocks (a 16-byte TMA box row), of which the stage uses one.
  p.sf_stage = in_bytes == 1 ? align_up(block_m * 4 * (a_scale_rows_x4 ? 4 : 1) + 32, 128) : 0;
  p.stage = p.a_stage + p.b_stage + p.sb_stage + p.sf_stage;
  p.barriers = stages * 2 * 8 + (add_c ? math_warpgroups(block_m) * 8 : 0);
  // Each math warpgroup stages its output through a small ring of slabs, or
  // with C one whole 64-row block (one wave), and then has a barrier for
  // C's loads.  Slab rows are as wide as block N allows (128 bytes at most):
  // narrower slabs buy pipeline stages (the FP8 256x128 tile a 4th with
  // 64-byte rows) but measured no faster (H200, 2026-11-28: 256x128 -2 to
  // +1%, 128x192 with a 5th stage -2 to -5%; results/ab/stages_release_20261128).
  p.slab_cols = store_slab_cols(block_n, out_bytes);
  p.d_tile = add_c ? align_up(math_warpgroups(block_m) * 64 * block_n * out_bytes, 1024)
                   : align_up(store_ring_bytes(block_m, block_n, out_bytes, p.slab_cols), 1024);
  // 1024 bytes of slack: the kernel aligns the dynamic smem base to 1024.
  p.total = 1024 + stages * p.stage + p.barriers + p.d_tile;
  return p;
}

// With per-block (128x128) B scales a tile may straddle at most two scale
// blocks: its start n0 = n_block * block_n sits at a multiple of
// gcd(block_n, 128) inside a scale block.
JAXGEMM_HD constexpr unsigned gcd_with_128(unsigned block_n) {
  return (block_n & (~block_n + 1)) < 128 ? (block_n & (~block_n + 1)) : 128;
}
JAXGEMM_HD constexpr bool fits_two_scale_blocks(unsigned block_n) {
  return block_n - gcd_with_128(block_n) <= 128;
}

}  // namespace jaxgemm_plan

#endif  // JAXGEMM_SMEM_PLAN_H_
