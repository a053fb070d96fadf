// Packs a token-major operand of the k-grouped GEMMs into their K-major,
// group-padded layout, group sizes on the device.
//
//   x   [K_total, X]   token-major (FP8 or BF16), tokens grouped in order
//   out [X_PAD, R*128] out[c, 128*b + t] = x[start_g + 128*j + t, c] where
//                      padded block b is group g's j-th block (blocks of
//                      group g: ceil(size_g / 128), groups back to back);
//                      zero past each group's last token, in blocks past the
//                      last group's and in columns X..X_PAD.
//
// This is the FP8 wgmma's K-major requirement plus the group padding that
// keeps every 128-token scale block inside one group.  One CTA transposes one
// 128-token x 128-byte tile through shared memory: coalesced 16-byte loads
// along x's rows, coalesced 16-byte stores along out's rows.  Each thread
// reads whole words of the tile (16 tokens x 4 FP8 columns, or 8 tokens x 2
// BF16 columns; a swizzle of the tile puts a warp's reads in 32 distinct
// banks) and transposes them with byte permutes; the byte-by-byte reads this
// replaced hit one bank 8 ways and held the packer near 1.9 TB/s on the H100.  (XLA fuses the
// equivalent gather + transpose into one loop fusion with strided reads,
// ~0.1 TB/s on the H100.)  `sizes` are clamped (non-negative, summing to at
// most K_total; jaxgemm/_groups.py).
#pragma once

#include "ptx.cuh"

namespace jaxgemm {

template <u32 kElemBytes, u32 X, u32 X_PAD, u32 R>
__global__ void __launch_bounds__(256) k_grouped_pack_kernel(const unsigned char* __restrict__ x,
                                                             const int* __restrict__ sizes,
                                                             u32 groups,
                                                             unsigned char* __restrict__ out) {
  static_assert(kElemBytes == 1 || kElemBytes == 2, "FP8 or BF16");
  constexpr u32 kCols = 128 / kElemBytes;         // x columns per tile (128 bytes)
  constexpr u32 kRowBytes = X * kElemBytes;       // one token row of x
  constexpr bool kVec = kRowBytes % 16 == 0;      // 16-byte loads stay aligned
  // Smem rows are unpadded; their 16-byte chunks are swizzled instead (see
  // the stores below).
  constexpr u32 kStride = 128;
  constexpr u32 kTokPerChunk = 16 / kElemBytes;   // tokens in one 16-byte output chunk
  __shared__ __align__(16) unsigned char tile[128 * kStride];
  __shared__ u32 s_tok0, s_valid;

  constexpr u32 kColTiles = (X_PAD + kCols - 1) / kCols;
  const u32 tid = threadIdx.x;
  const u32 b = blockIdx.x / kColTiles;             // padded 128-token block
  const u32 c0 = (blockIdx.x % kColTiles) * kCols;  // first x column of the tile
  if (tid == 0) {
    // Which group owns padded block b, and where its tokens start.
    u32 blk = 0, tok = 0, tok0 = 0, valid = 0;
    for (u32 g = 0; g < groups; ++g) {
      const u32 size = static_cast<u32>(max(__ldg(sizes + g), 0));
      const u32 nb = (size + 127) / 128;
      if (b < blk + nb) {
        const u32 j = b - blk;
        tok0 = tok + 128 * j;
        valid = min(128u, size - 128 * j);
        break;
      }
      blk += nb;
      tok += size;
    }
    s_tok0 = tok0;
    s_valid = valid;
  }
  __syncthreads();
  const u32 tok0 = s_tok0, valid = s_valid;

  // Load: 128 token rows x 8 chunks of 16 bytes; zeros where nothing is read.
#pragma unroll
  for (u32 i = 0; i < 4; ++i) {
    const u32 c = tid + 256 * i;
    const u32 row = c / 8, byte0 = (c % 8) * 16;
    const u64 src_row = static_cast<u64>(tok0 + row) * kRowBytes;
    const u32 col_byte = c0 * kElemBytes + byte0;
    U32x4 v{0, 0, 0, 0};
    if (row < valid) {
      if constexpr (kVec) {
        if (col_byte < kRowBytes) v = *reinterpret_cast<const U32x4*>(x + src_row + col_byte);
      } else {
        unsigned char bytes[16];
#pragma unroll
        for (u32 k = 0; k < 16; ++k)
          bytes[k] = col_byte + k < kRowBytes ? x[src_row + col_byte + k] : 0;
        v = *reinterpret_cast<const U32x4*>(bytes);
      }
    }
    // FP8: the row's 16-byte chunk q lies at chunk q ^ (row / 16 % 8).  BF16:
    // word i of the row lies at word i ^ s, s = 2 * (row / 8 % 16): chunk
    // q ^ (s / 4), its two word pairs swapped when s & 2.
    u32 slot = byte0 ^ (((row / 16) % 8) * 16);
    if constexpr (kElemBytes == 2) {
      const u32 s = 2 * ((row / 8) % 16);
      slot = byte0 ^ ((s / 4) * 16);
      if (s & 2) v = U32x4{v.z, v.w, v.x, v.y};
    }
    *reinterpret_cast<U32x4*>(tile + row * kStride + slot) = v;
  }
  __syncthreads();

  if constexpr (kElemBytes == 1) {
    // Thread (warp w, lane 8 * j + h): columns 4 * (4w + j) .. +3 (one word of
    // each token row, in the row's chunk w, stored at chunk w ^ h) of tokens
    // 16h .. 16h + 15 (the token rows h * 16 + t, whose swizzle is h).  The
    // 8 lanes of one j write one output row's 128 bytes.
    const u32 warp = tid / 32, lane = tid % 32, j = lane / 8, h = lane % 8;
    const u32 col4 = 4 * (4 * warp + j);
    u32 w[16];
#pragma unroll
    for (u32 t = 0; t < 16; ++t)
      w[t] = *reinterpret_cast<const u32*>(tile + (h * 16 + t) * kStride + (warp ^ h) * 16 + 4 * j);
    u32 col[4][4];  // col[c][q]: tokens 4q .. 4q + 3 of column col4 + c
#pragma unroll
    for (u32 q = 0; q < 4; ++q) {
      // 4 tokens x 4 columns: byte pairs of columns 0/1 and 2/3, then whole columns.
      const u32 lo01 = __byte_perm(w[4 * q], w[4 * q + 1], 0x5140);
      const u32 lo23 = __byte_perm(w[4 * q + 2], w[4 * q + 3], 0x5140);
      const u32 hi01 = __byte_perm(w[4 * q], w[4 * q + 1], 0x7362);
      const u32 hi23 = __byte_perm(w[4 * q + 2], w[4 * q + 3], 0x7362);
      col[0][q] = __byte_perm(lo01, lo23, 0x5410);
      col[1][q] = __byte_perm(lo01, lo23, 0x7632);
      col[2][q] = __byte_perm(hi01, hi23, 0x5410);
      col[3][q] = __byte_perm(hi01, hi23, 0x7632);
    }
    constexpr u32 kOutRowBytes = R * 128;
#pragma unroll
    for (u32 c = 0; c < 4; ++c) {
      if (c0 + col4 + c >= X_PAD) continue;
      *reinterpret_cast<U32x4*>(out + static_cast<u64>(c0 + col4 + c) * kOutRowBytes + b * 128 +
                                h * 16) = U32x4{col[c][0], col[c][1], col[c][2], col[c][3]};
    }
  } else {
    // BF16.  Thread (warp w, lane 16 * j + h), for i = 0, 1: columns 2p and
    // 2p + 1, p = 4w + 2i + j (word p of each token row, at word p ^ 2h), of
    // tokens 8h .. 8h + 7 (rows 8h + t, whose swizzle is 2h); a warp's reads
    // hit 32 banks, and the 16 lanes of one j write one output row's 256 bytes.
    const u32 warp = tid / 32, lane = tid % 32, j = lane / 16, h = lane % 16;
    constexpr u32 kOutRowBytes = R * 128 * 2;
#pragma unroll
    for (u32 i = 0; i < 2; ++i) {
      const u32 p = 4 * warp + 2 * i + j;
      u32 w[8];
#pragma unroll
      for (u32 t = 0; t < 8; ++t)
        w[t] = *reinterpret_cast<const u32*>(tile + (8 * h + t) * kStride + 4 * (p ^ (2 * h)));
      u32 lo[4], hi[4];  // tokens 2u, 2u + 1 of column 2p (lo) and 2p + 1 (hi)
#pragma unroll
      for (u32 u = 0; u < 4; ++u) {
        lo[u] = __byte_perm(w[2 * u], w[2 * u + 1], 0x5410);
        hi[u] = __byte_perm(w[2 * u], w[2 * u + 1], 0x7632);
      }
      const u64 at = static_cast<u64>(c0 + 2 * p) * kOutRowBytes + b * 256 + h * 16;
      if (c0 + 2 * p < X_PAD)
        *reinterpret_cast<U32x4*>(out + at) = U32x4{lo[0], lo[1], lo[2], lo[3]};
      if (c0 + 2 * p + 1 < X_PAD)
        *reinterpret_cast<U32x4*>(out + at + kOutRowBytes) = U32x4{hi[0], hi[1], hi[2], hi[3]};
    }
  }
}

}  // namespace jaxgemm
