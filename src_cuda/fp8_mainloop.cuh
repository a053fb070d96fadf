// The math warpgroups' K loop of the FP8 kernels (dense, m-grouped,
// k-grouped): per 128-deep K block and 64-row wave, FP8 wgmma into a fresh
// accumulator, then promotion into the FP32 result on the CUDA cores,
// multiplied by the A row scale and the B block (or column) scale.
//
// Two schedules, chosen at compile time:
// - pipelined (one 64-row wave per warpgroup, BLOCK_N <= 128): two wgmma
//   accumulators; the next stage's wgmma is issued before this stage's
//   promotion, so the tensor cores work while this warpgroup promotes.
//   Measured on the H100 (2026-11-27, same run): 128x128 tiles 5-6% faster
//   than serial.  Needs three accumulator sets in registers.
// - serial: one accumulator; per wave wgmma, wait, promote.  Kept for two
//   waves per warpgroup (256-row tiles): their pipelined form (two results
//   plus two accumulators, only for BLOCK_N <= 96) measured 7-9% slower than
//   serial on 256x96, and 256x128, the best large-M tile, cannot hold it.
// With two math warpgroups, both start each tile half a wave apart (see
// stagger_wait): +2-5% on 256x128 tiles in the same A/B run.
#pragma once

#include "gemm_common.cuh"
#include "ptx.cuh"

namespace jaxgemm {

// Where a stage's operands and scales live in shared memory: tile bases and
// per-stage strides (the plan's region sizes).  sf holds the stage's A row
// scales (BLOCK_M floats) and, with per-block B scales, the tile's one or two
// B block scales after them; sb the per-column B scales when given per row.
struct StageView {
  const unsigned char *a, *b, *sb, *sf;
  u32 a_bytes, b_bytes, sb_bytes, sf_bytes;
};

__device__ __forceinline__ StageView stage_view(const GemmSmem& s,
                                               const jaxgemm_plan::GemmSmemPlan& p) {
  return StageView{s.a, s.b, s.sb, s.sf, p.a_stage, p.b_stage, p.sb_stage, p.sf_stage};
}

// One math warpgroup's share of a tile: kWaves 64-row waves, the
// warpgroup's rows of the tile.
// kAStride: floats per tile row in a stage's A scale slots (1, or 4 when
// the scales come in row boxes of 4 K blocks; then slot kb % 4 is the one).
// kRowFirst: per-row B scales on one-wave tiles promote as
// (acc * sa) * sb (see promote_pair); the kernel says where that pays.
template <typename Mma, u32 BLOCK_M, u32 BLOCK_N, u32 kWaves, bool kSbPerRow, u32 kAStride = 1,
          bool kRowFirst = true>
struct Fp8TileMath {
  static constexpr u32 kMathWG = jaxgemm_plan::math_warpgroups(BLOCK_M);
  static constexpr u32 kAcc = Mma::kNumAccum;
  static constexpr u32 kKSteps = 128 / 32;
  // The result plus two accumulators in flight; 192 leaves ~40 of the 232
  // registers for addresses, scales and loop state (checked: no spills in
  // tests/test_jit_compile.py).
  // Per-row B scales with one wave per warpgroup: the stage's column scales
  // go into registers before the wgmma is issued (their shared-memory
  // latency hides behind it; after the wait they would stall the
  // promotion), in the serial schedule: the result, one accumulator and
  // BLOCK_N / 4 scale registers (128 columns: 160) fit where the pipelined
  // schedule's three accumulators plus the scales would not.
  // (Three math warpgroups have 160 registers each: serial schedule only.)
  static constexpr bool kPreloadCols =
      kSbPerRow && kWaves == 1 && 2 * kAcc + BLOCK_N / 4 <= 176 && kMathWG <= 2;
  static constexpr bool kPipelined = kWaves == 1 && 3 * kAcc <= 192 && !kPreloadCols && kMathWG <= 2;

  // A stage's scales for one wave of this thread: its two rows' A scales and
  // (per-block B scales) the tile's two B block scales for K block kb.
  struct Scales {
    float a0, a1, b0, b1;
  };

  u32 row;    // this thread's first accumulator row within the tile, wave 0
  u32 a_off;  // byte offset of this warpgroup's first wave in an A stage
  u32 q;      // lane % 4: the accumulator column pair
  u32 wg;     // math warpgroup index (0 or 1)

  // a_off is warp-uniform, and the compiler must see it so: derived from
  // threadIdx it sits in a vector register, so every wgmma's A descriptor
  // was built there and moved to uniform registers (R2UR, a 64-bit add with
  // carry, ~13 more instructions per K block at 64x16).  Broadcast by a
  // shuffle (zero with one math warpgroup), the descriptors are formed in
  // uniform registers.  Same-run A/B on the H200 (2026-11-28): 256x128 c2
  // +3-5% at M = 4096, 64-row tiles +1-5%, 128x64 +4%.
  __device__ __forceinline__ Fp8TileMath(u32 wg_, u32 warp, u32 lane)
      : row(wg_ * kWaves * 64 + warp * 16 + lane / 4),
        a_off(kMathWG == 1 ? 0u : __shfl_sync(0xffffffffu, wg_, 0) * kWaves * 64 * 128),
        q(lane % 4),
        wg(wg_) {}

  __device__ __forceinline__ Scales read_scales(const StageView& v, u32 s, u32 w, u32 kb) const {
    const float* sf = reinterpret_cast<const float*>(v.sf + s * v.sf_bytes);
    Scales sc;
    const u32 a_slot = kAStride == 1 ? 0 : b_scale_slot(kb);
    sc.a0 = sf[(row + w * 64) * kAStride + a_slot];
    sc.a1 = sf[(row + w * 64 + 8) * kAStride + a_slot];
    if constexpr (kSbPerRow) {
      sc.b0 = sc.b1 = 0.f;
    } else {
      sc.b0 = sf[BLOCK_M * kAStride + b_scale_slot(kb)];
      sc.b1 = sf[BLOCK_M * kAStride + kSecondBScale + b_scale_slot(kb)];
    }
    return sc;
  }
  // Per-row B scales: the stage's BLOCK_N column scales.
  __device__ __forceinline__ static const float* col_scales(const StageView& v, u32 s) {
    return reinterpret_cast<const float*>(v.sb + s * v.sb_bytes);
  }

  // Issues (does not wait for) acc = A_wave @ B^T over stage s.
  __device__ __forceinline__ void issue(const StageView& v, u32 s, u32 w, float* acc) const {
    const u64 da = smem_desc_sw128(v.a + s * v.a_bytes + a_off + w * 64 * 128);
    const u64 db = smem_desc_sw128(v.b + s * v.b_bytes);
#pragma unroll
    for (u32 i = 0; i < kAcc; ++i) reg_fence(acc[i]);
    wgmma_fence();
#pragma unroll
    for (u32 k = 0; k < kKSteps; ++k) Mma::mma(da + 2 * k, db + 2 * k, acc, k > 0);
    wgmma_commit();
  }

  // Per-row B scales: the column scales of a stage, loaded into registers
  // before the wgmma when kPreloadCols, else read by the promotion itself.
  struct ColScales {
    float2 v[kPreloadCols ? BLOCK_N / 8 : 1];
  };
  __device__ __forceinline__ static float2 col_pair(const float* sbs, u32 j, u32 q) {
    return *reinterpret_cast<const float2*>(sbs + 8 * j + 2 * q);
  }
  __device__ __forceinline__ ColScales load_cols(const float* sbs) const {
    ColScales c;
    if constexpr (kPreloadCols) {
#pragma unroll
      for (u32 j = 0; j < BLOCK_N / 8; ++j) c.v[j] = col_pair(sbs, j, q);
    }
    return c;
  }
  // fin += acc * sa[row] * sb[col] for column pair j.  One wave per
  // warpgroup: (acc * row scale) first, then one FMA with the column scale;
  // the multiplies need only registers, so they issue while the column-scale
  // loads are in flight (as acc * (sa * sb) they waited on each load:
  // short-scoreboard stalls in Nsight Compute, session 9).  +4-8% on 128-row
  // tiles, but -1-3% on 256-row tiles (two waves, whose other wave's wgmma
  // already hides the loads): those keep acc * (sa * sb) (H100 A/B,
  // 2026-11-28).  The dense kernel's 192-column tiles turn it off too
  // (kRowFirst; +2-3% without it, H200 A/B 2026-11-28), while the k-grouped
  // kernel's gain 1-2% from it.
  __device__ __forceinline__ static void promote_pair(float* fin, const float* acc,
                                                      const Scales& sc, u32 j, float2 bs) {
    if constexpr (kWaves == 1 && kRowFirst) {
      fin[4 * j + 0] += (acc[4 * j + 0] * sc.a0) * bs.x;
      fin[4 * j + 1] += (acc[4 * j + 1] * sc.a0) * bs.y;
      fin[4 * j + 2] += (acc[4 * j + 2] * sc.a1) * bs.x;
      fin[4 * j + 3] += (acc[4 * j + 3] * sc.a1) * bs.y;
    } else {
      fin[4 * j + 0] += acc[4 * j + 0] * (sc.a0 * bs.x);
      fin[4 * j + 1] += acc[4 * j + 1] * (sc.a0 * bs.y);
      fin[4 * j + 2] += acc[4 * j + 2] * (sc.a1 * bs.x);
      fin[4 * j + 3] += acc[4 * j + 3] * (sc.a1 * bs.y);
    }
  }
  __device__ __forceinline__ void promote_cols(float* fin, const float* acc, const Scales& sc,
                                               const ColScales& cs) const {
#pragma unroll
    for (u32 j = 0; j < BLOCK_N / 8; ++j) promote_pair(fin, acc, sc, j, cs.v[kPreloadCols ? j : 0]);
  }

  // fin += acc * sa[row] * sb.  Per-block B scales: columns before `boundary`
  // use b0, the rest b1 (a tile straddling two 128-column blocks).
  __device__ __forceinline__ void promote(float* fin, const float* acc, const Scales& sc,
                                          const float* sbs, u32 boundary) const {
    if constexpr (kSbPerRow) {
#pragma unroll
      for (u32 j = 0; j < BLOCK_N / 8; ++j) promote_pair(fin, acc, sc, j, col_pair(sbs, j, q));
    } else {
      const float s00 = sc.a0 * sc.b0, s01 = sc.a0 * sc.b1;
      const float s10 = sc.a1 * sc.b0, s11 = sc.a1 * sc.b1;
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
  }

  // fin = this warpgroup's rows of the tile, summed over num_k_blocks stages
  // of the ring, starting at (stage, phase), which are advanced past them.
  // Each stage is released once its last wave is promoted: the promotion is
  // the first use of the scales read from it (and, per-row, reads them).
  // live_waves 0: none of this warpgroup's rows are stored (a small group's
  // m-grouped tile): no wgmma, fin stays zero, the stages are only released.
  // Any other value runs every wave.  Kernels that never skip leave it at
  // kWaves, a constant, so their code does not change.
  template <class RingT>
  __device__ __forceinline__ void run(float (&fin)[kWaves][kAcc], u32 num_k_blocks,
                                      const RingT& ring, const StageView& v, u32& stage,
                                      u32& phase, u32 lane, u32 boundary,
                                      u32 live_waves = kWaves) const {
#pragma unroll
    for (u32 w = 0; w < kWaves; ++w)
#pragma unroll
      for (u32 i = 0; i < kAcc; ++i) fin[w][i] = 0.f;
    if (live_waves == 0) {
      // Keep the stagger barrier's count: each warpgroup passes it once per
      // tile with a K loop (only warpgroup 1 waits, only 0 arrives).
      if (num_k_blocks > 0) stagger_wait(), stagger_signal();
      skip_stages(ring, num_k_blocks, stage, phase, lane);
    } else if constexpr (kPipelined) {
      run_pipelined(fin, num_k_blocks, ring, v, stage, phase, lane, boundary);
    } else {
      run_serial(fin, num_k_blocks, ring, v, stage, phase, lane, boundary);
    }
  }

 private:
  // Two math warpgroups start a tile half a wave apart: warpgroup 1 issues
  // its first wgmma only once warpgroup 0's first one is done.  Started
  // together, both wait on the same stages, their wgmmas share the tensor
  // cores and finish together, and both then promote while the tensor cores
  // idle; offset, one promotes while the other's wgmma runs, and the offset
  // persists through the tile.  (Defining JAXGEMM_NO_STAGGER in a copy of
  // this header turns it off, for same-run A/B timing.)
  // Warpgroup w + 1 waits on barrier kStaggerBarrier + w (7, and 8 with three
  // math warpgroups); named barrier ids 1-3 are the epilogue's.
  static constexpr u32 kStaggerBarrier = 7;
  __device__ __forceinline__ void stagger_wait() const {
#ifndef JAXGEMM_NO_STAGGER
    if constexpr (kMathWG == 2) {
      if (wg == 1) named_barrier_sync(kStaggerBarrier, 256);
    } else if constexpr (kMathWG == 3) {
      if (wg == 1) named_barrier_sync(kStaggerBarrier, 256);
      if (wg == 2) named_barrier_sync(kStaggerBarrier + 1, 256);
    }
#endif
  }
  __device__ __forceinline__ void stagger_signal() const {
#ifndef JAXGEMM_NO_STAGGER
    if constexpr (kMathWG == 2) {
      if (wg == 0) named_barrier_arrive(kStaggerBarrier, 256);
    } else if constexpr (kMathWG == 3) {
      if (wg == 0) named_barrier_arrive(kStaggerBarrier, 256);
      if (wg == 1) named_barrier_arrive(kStaggerBarrier + 1, 256);
    }
#endif
  }

  template <class RingT>
  __device__ __forceinline__ static void advance(u32& stage, u32& phase) {
    if (++stage == RingT::kNumStages) stage = 0, phase ^= 1;
  }

  template <class RingT>
  __device__ __forceinline__ void run_serial(float (&fin)[kWaves][kAcc], u32 num_k_blocks,
                                             const RingT& ring, const StageView& v, u32& stage,
                                             u32& phase, u32 lane, u32 boundary) const {
    float acc[kAcc];
    for (u32 kb = 0; kb < num_k_blocks; ++kb) {
      mbar_wait(&ring.full[stage], phase);
      Scales sc[kWaves];
#pragma unroll
      for (u32 w = 0; w < kWaves; ++w) sc[w] = read_scales(v, stage, w, kb);
      ColScales cols;
      if constexpr (kPreloadCols) cols = load_cols(col_scales(v, stage));
#pragma unroll
      for (u32 w = 0; w < kWaves; ++w) {
        if (w == 0 && kb == 0) stagger_wait();
        issue(v, stage, w, acc);
#pragma unroll
        for (u32 i = 0; i < kAcc; ++i) reg_fence(acc[i]);
        wgmma_wait<0>();
#pragma unroll
        for (u32 i = 0; i < kAcc; ++i) reg_fence(acc[i]);
        if (w == 0 && kb == 0) stagger_signal();
        if constexpr (kPreloadCols)
          promote_cols(fin[w], acc, sc[w], cols);
        else
          promote(fin[w], acc, sc[w], col_scales(v, stage), boundary);
      }
      ring.release(stage, lane);
      advance<RingT>(stage, phase);
    }
  }

  // Stage j's accumulator is acc[j % 2]; stage j + 1's wgmma is issued
  // before stage j is promoted.  The loop's back edge is reached only with
  // one wgmma group in flight (stage j + 2's, in acc[0]) and both exits with
  // none: when the last step was chosen inside a step and the paths met at
  // the back edge with one group or none in flight, ptxas injected a full
  // wait there ("C7517: warpgroup.wait is injected ... to allow use of
  // registers defined by GMMA"), so every second step promoted without
  // overlap, and in the masked 64x112 kernel it serialized every wgmma
  // (C7514).  A form with the tail peeled after the loop got C7514 too.
  template <class RingT>
  __device__ __forceinline__ void run_pipelined(float (&fin)[kWaves][kAcc], u32 num_k_blocks,
                                                const RingT& ring, const StageView& v,
                                                u32& stage, u32& phase, u32 lane,
                                                u32 boundary) const {
    static_assert(kWaves == 1, "the pipelined schedule runs one wave per warpgroup");
    if (num_k_blocks == 0) return;
    float acc[2][kAcc];
    Scales sc[2];
    u32 job_stage[2];
    mbar_wait(&ring.full[stage], phase);
    sc[0] = read_scales(v, stage, 0, 0);
    job_stage[0] = stage;
    stagger_wait();
    issue(v, stage, 0, acc[0]);
    for (u32 j = 0;; j += 2) {
      if (j + 1 >= num_k_blocks) {
        step<0, false>(j, fin, acc, sc, job_stage, ring, v, stage, phase, lane, boundary);
        break;
      }
      step<0, true>(j, fin, acc, sc, job_stage, ring, v, stage, phase, lane, boundary);
      if (j + 2 >= num_k_blocks) {
        step<1, false>(j + 1, fin, acc, sc, job_stage, ring, v, stage, phase, lane, boundary);
        break;
      }
      step<1, true>(j + 1, fin, acc, sc, job_stage, ring, v, stage, phase, lane, boundary);
    }
    advance<RingT>(stage, phase);
  }

  // One step of the pipelined schedule: with kIssueNext, issue stage j + 1's
  // wgmma (into the other accumulator) and wait for stage j's only, else
  // (the last stage) wait for all; then promote stage j and release it.
  // P = j % 2 names stage j's accumulator.
  template <u32 P, bool kIssueNext, class RingT>
  __device__ __forceinline__ void step(u32 j, float (&fin)[kWaves][kAcc],
                                       float (&acc)[2][kAcc], Scales (&sc)[2],
                                       u32 (&job_stage)[2], const RingT& ring,
                                       const StageView& v, u32& stage, u32& phase, u32 lane,
                                       u32 boundary) const {
    if constexpr (kIssueNext) {
      advance<RingT>(stage, phase);
      mbar_wait(&ring.full[stage], phase);
      sc[1 - P] = read_scales(v, stage, 0, j + 1);
      job_stage[1 - P] = stage;
      issue(v, stage, 0, acc[1 - P]);
#pragma unroll
      for (u32 i = 0; i < kAcc; ++i) reg_fence(acc[1 - P][i]);
      wgmma_wait<1>();
    } else {
      wgmma_wait<0>();
    }
#pragma unroll
    for (u32 i = 0; i < kAcc; ++i) reg_fence(acc[P][i]);
    if (j == 0) stagger_signal();
    promote(fin[0], acc[P], sc[P], col_scales(v, job_stage[P]), boundary);
    ring.release(job_stage[P], lane);
  }
};

}  // namespace jaxgemm
