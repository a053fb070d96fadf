// The single source of truth for jaxgemm's operand layouts and alignment rules.
//
// The Python package reads every rule below through the extension module
// (jaxgemm/layout.py), and the FFI handlers check XLA's buffers against the
// same functions, so the two sides cannot drift apart.
#pragma once

#include <cstdint>

namespace jaxgemm::layout {

// Fine-grained FP8 scaling: one float32 scale per 1x128 run of a token's
// contraction axis ("per token"), or per 128x128 block of a weight ("per block").
inline constexpr int64_t kScaleBlock = 128;

// TMA requires every global stride (bytes) to be a multiple of 16 and the
// global base address to be 16-byte aligned.
inline constexpr int64_t kTmaStrideAlignBytes = 16;

constexpr int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }
constexpr int64_t round_up(int64_t a, int64_t b) { return ceil_div(a, b) * b; }

// Number of 128-wide scale blocks along a contraction axis of length k.
constexpr int64_t num_scale_blocks(int64_t k) { return ceil_div(k, kScaleBlock); }

// Elements per 16 bytes: the alignment (in elements) the kernels need on the
// contiguous axis of every operand and of the output.  Python pads operands
// that miss it (zero padding along K is exact), so users never see it.
constexpr int64_t contiguous_alignment(int64_t itemsize) {
  return kTmaStrideAlignBytes / itemsize;
}

// Scales by TMA (the FP8 dense kernel, chosen per call by the config): the
// A scales go transposed, [ceil(K/128), rows] with rows padded to a
// multiple of 4 (a 16-byte row stride), so that one contiguous TMA box
// per stage brings a tile's row scales; or (row boxes: the m-grouped
// kernels, whose tiles start at any row) stay [rows, ceil(K/128)] with the
// K axis padded to a multiple of 4.  Per-block B scales keep their layout
// [.., ceil(N/128), ceil(K/128)] with the K axis padded to a multiple of 4.
inline constexpr int64_t kTmaScaleAlign = kTmaStrideAlignBytes / 4;
constexpr int64_t tma_scale_a_cols(int64_t rows) { return round_up(rows, kTmaScaleAlign); }
constexpr int64_t tma_scale_k_blocks(int64_t k) {
  return round_up(num_scale_blocks(k), kTmaScaleAlign);
}

// Per-group 128-row scale blocks for the k-grouped (weight-gradient) GEMM: the
// token axis is split into groups of ragged length and each group's 1x128
// scale blocks start at the group's first token, so a block never straddles
// two groups.  Group g owns ceil(k_g / 128) scale rows, stored one group after
// another.  The static number of scale rows bounds sum_g ceil(k_g / 128) for
// any split of k_total tokens into `groups` groups.
constexpr int64_t k_grouped_scale_rows(int64_t k_total, int64_t groups) {
  return (k_total + groups * (kScaleBlock - 1)) / kScaleBlock;
}

// Largest kernel tile extents (the dense kernel's persistent scheduler and
// register budget), used by the config heuristics on the Python side.
inline constexpr int64_t kBlockK = 128;
inline constexpr int64_t kMaxBlockN = 256;

}  // namespace jaxgemm::layout
