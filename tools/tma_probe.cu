// Microbenchmark: how many bytes per cycle one SM's TMA loads can bring into
// shared memory through a stage ring, alone and with every SM loading.
//
// Why: the 64-row FP8 tiles of the M <= 128 shapes run at ~55-78 GB/s of
// stage bytes per SM whatever their CTA count (benchmarks/NOTES.md, session
// 18), as if each SM's TMA ingest had a ceiling near 40 bytes per cycle.  If
// it does, only fewer bytes per SM per FLOP (split-K) helps those shapes; if
// an SM can ingest much more, the kernels lose the time elsewhere.
//
// The ring is the kernels' (src_cuda/ptx.cuh wrappers): one thread waits for
// a stage to be empty and issues a 2-D TMA box of `rows` x 128 bytes (128-byte
// swizzle, like the A and B tiles); another waits for it to be full and
// releases it at once, so only the copies are timed.  Two sources:
//   shared: every CTA reads the same 64-row x 7168-byte block (an A operand,
//           459 KB, L2-resident after the first pass), K block after K block;
//   own:    each CTA streams its own rows of a 1 GB matrix (a B operand, HBM);
//   oob:    as shared, but the matrix has 64 rows and the box 128: half of every
//           box is TMA's zero fill (what a 128-row box costs on 64 real rows).
// Build and run on the device:
//   nvcc -std=c++17 -gencode arch=compute_90a,code=sm_90a -O3 -I src_cuda \
//        tools/tma_probe.cu -o /tmp/tma_probe
//   /tmp/tma_probe
#include "ptx.cuh"

namespace probe {
using namespace jaxgemm;

constexpr int kRingBytes = 192 * 1024;  // also forces one CTA per SM

// Stage s holds `rows` x 128 bytes at s * rows * 128; the barriers follow the ring.
__global__ void __launch_bounds__(64, 1) tma_probe(const __grid_constant__ TmaDesc desc,
                                                   long long* cycles, int rows, int stages,
                                                   int iters, int k_blocks, int own_rows) {
  extern __shared__ __align__(1024) unsigned char smem[];
  u64* full = reinterpret_cast<u64*>(smem + kRingBytes);
  u64* empty = full + 32;
  const u32 bytes = static_cast<u32>(rows) * 128;
  if (threadIdx.x == 0) {
    for (int s = 0; s < stages; ++s) mbar_init(&full[s], 1), mbar_init(&empty[s], 1);
    fence_barrier_init();
  }
  __syncthreads();
  const int row0 = own_rows ? blockIdx.x * rows : 0;
  if (threadIdx.x == 0) {
    // Producer: stage i % stages, K block i % k_blocks (own: a new row band per pass).
    int s = 0;
    u32 phase = 0;
    for (int i = 0; i < iters; ++i) {
      mbar_wait(&empty[s], phase ^ 1);
      mbar_arrive_expect_tx(&full[s], bytes);
      const int kb = i % k_blocks;
      const int band = own_rows ? (i / k_blocks) * gridDim.x * rows : 0;
      tma_load_2d(smem + s * bytes, &desc, &full[s], kb * 128, row0 + band);
      if (++s == stages) s = 0, phase ^= 1;
    }
  } else if (threadIdx.x == 32) {
    // Consumer: waits for each stage and releases it at once.
    int s = 0;
    u32 phase = 0;
    const long long t0 = clock64();
    for (int i = 0; i < iters; ++i) {
      mbar_wait(&full[s], phase);
      mbar_arrive(&empty[s]);
      if (++s == stages) s = 0, phase ^= 1;
    }
    cycles[blockIdx.x] = clock64() - t0;
  }
}
}  // namespace probe

#ifndef __CUDACC_RTC__
#include <cstdio>
#include <vector>

#include "tma_encode.h"

// A [outer, inner] FP8 (byte) matrix, box [box_rows, 128], 128-byte swizzle.
static probe::TmaDesc make_desc(void* ptr, unsigned long long inner, unsigned long long outer,
                                unsigned box_rows) {
  const cuuint64_t dims[2] = {inner, outer};
  const cuuint64_t strides[1] = {inner};
  const cuuint32_t box[2] = {128, box_rows};
  return encode_byte_tensor<probe::TmaDesc>(2, ptr, dims, strides, box);
}

int main() {
  cudaDeviceProp prop;
  CHECK(cudaGetDeviceProperties(&prop, 0));
  int clock_khz = 0;
  CHECK(cudaDeviceGetAttribute(&clock_khz, cudaDevAttrClockRate, 0));
  const int sms = prop.multiProcessorCount;
  std::printf("%s, %d SMs, max SM clock %.2f GHz (GB/s below assume it)\n", prop.name, sms,
              clock_khz / 1e6);
  const unsigned long long K = 7168;
  const unsigned long long own_outer = (1ull << 30) / K;  // ~1 GB: streams from HBM
  unsigned char* a;
  unsigned char* b;
  long long* d_cycles;
  CHECK(cudaMalloc(&a, 256 * K));
  CHECK(cudaMalloc(&b, own_outer * K));
  CHECK(cudaMemset(a, 1, 256 * K));
  CHECK(cudaMemset(b, 1, own_outer * K));
  CHECK(cudaMalloc(&d_cycles, sms * sizeof(long long)));
  const int smem = probe::kRingBytes + 64 * 8;
  CHECK(cudaFuncSetAttribute(probe::tma_probe, cudaFuncAttributeMaxDynamicSharedMemorySize, smem));
  const int k_blocks = static_cast<int>(K / 128);
  for (int mode = 0; mode < 3; ++mode) {  // shared, own, oob
    const int own = mode == 1;
    for (int rows : {16, 64, 128}) {
      if (mode == 2 && rows != 128) continue;
      const probe::TmaDesc desc = own ? make_desc(b, K, own_outer, rows)
                                      : make_desc(a, K, mode == 2 ? 64 : 256, rows);
      for (int stages : {4, 12}) {
        if (stages * rows * 128 > probe::kRingBytes) continue;
        for (int ctas : {1, sms}) {
          // own: a pass over K per row band; enough bands to stay inside the matrix.
          const int iters = own ? k_blocks * static_cast<int>(own_outer / (sms * rows) > 8 ? 8 : own_outer / (sms * rows))
                                : 4096;
          for (int rep = 0; rep < 2; ++rep)
            probe::tma_probe<<<ctas, 64, smem>>>(desc, d_cycles, rows, stages, iters, k_blocks, own);
          CHECK(cudaGetLastError());
          CHECK(cudaDeviceSynchronize());
          std::vector<long long> h(ctas);
          CHECK(cudaMemcpy(h.data(), d_cycles, ctas * sizeof(long long), cudaMemcpyDeviceToHost));
          double sum = 0;
          for (long long v : h) sum += static_cast<double>(v);
          const double cyc = sum / ctas;
          const double bpc = static_cast<double>(iters) * rows * 128 / cyc;
          std::printf("%-6s box %3d x 128 B  stages %2d  ctas %3d: %7.1f cycles per stage  "
                      "%6.1f B/clk per SM  (%6.1f GB/s per SM, %6.2f TB/s all)\n",
                      mode == 1 ? "own" : mode == 2 ? "oob" : "shared", rows, stages, ctas,
                      cyc / iters, bpc,
                      bpc * clock_khz / 1e6, bpc * clock_khz / 1e6 * ctas / 1e3);
        }
      }
    }
  }
  return 0;
}
#endif
