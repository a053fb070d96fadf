// Microbenchmark: is one SM's TMA ingest bound per box, per stage (barrier
// round trip) or per issuing thread?
//
// Why: tools/tma_probe.cu (H200, 2026-11-28) measured ~177 cycles per stage
// from L2 and ~268 from HBM with one CTA, the same for 16- to 128-row boxes
// and for 4 or 12 stages in flight: a fixed cost per stage that pipelining
// does not hide.  The 64-row FP8 tiles load two boxes per K block (A, B) and
// run at ~150-180 ns per K block; if the cost is per box, boxes that span
// several K blocks (a 3-D tensor map) would cut it.
//
// Every CTA reads the same L2-resident 64-row x 7168-byte block (or, "own",
// its own rows of a 1 GB matrix).  Per stage, `nbox` pieces of `rows` x 128
// bytes at consecutive K blocks, loaded as
//   2d: nbox 2-D boxes (one instruction each), one barrier;
//   3d: one 3-D box (128 B, rows, nbox) over the same bytes (one instruction);
//   2t: nbox 2-D boxes split between two issuing threads (two warps).
// Build and run on the device:
//   nvcc -std=c++17 -gencode arch=compute_90a,code=sm_90a -O3 -I src_cuda \
//        tools/tma_issue_probe.cu -o /tmp/tma_issue_probe && /tmp/tma_issue_probe
#include "ptx.cuh"

namespace probe {
using namespace jaxgemm;

constexpr int kRingBytes = 192 * 1024;  // also forces one CTA per SM

// mode 0: 2d, 1: 3d, 2: 2t.  Threads 0 and 64 issue, thread 32 consumes.
__global__ void __launch_bounds__(96, 1) issue_probe(const __grid_constant__ TmaDesc d2,
                                                     const __grid_constant__ TmaDesc d3,
                                                     long long* cycles, int rows, int nbox,
                                                     int stages, int iters, int k_blocks,
                                                     int mode, int own) {
  extern __shared__ __align__(1024) unsigned char smem[];
  u64* full = reinterpret_cast<u64*>(smem + kRingBytes);
  u64* empty = full + 32;
  const u32 piece = static_cast<u32>(rows) * 128;
  const u32 bytes = piece * nbox;
  if (threadIdx.x == 0) {
    for (int s = 0; s < stages; ++s) mbar_init(&full[s], mode == 2 ? 2 : 1), mbar_init(&empty[s], 1);
    fence_barrier_init();
  }
  __syncthreads();
  const int groups = k_blocks / nbox;
  const int row0 = own ? blockIdx.x * rows : 0;
  const bool issuer = threadIdx.x == 0 || (mode == 2 && threadIdx.x == 64);
  if (issuer) {
    const int half = threadIdx.x == 64;  // 2t: thread 64 issues the second half of the boxes
    int s = 0;
    u32 phase = 0;
    for (int i = 0; i < iters; ++i) {
      mbar_wait(&empty[s], phase ^ 1);
      const int g = i % groups;
      const int band = own ? (i / groups) * gridDim.x * rows : 0;
      unsigned char* dst = smem + s * bytes;
      if (mode == 1) {
        mbar_arrive_expect_tx(&full[s], bytes);
        tma_load_3d(dst, &d3, &full[s], 0, row0 + band, g * nbox);
      } else {
        const int b0 = mode == 2 ? half * (nbox / 2) : 0;
        const int b1 = mode == 2 ? b0 + nbox / 2 : nbox;
        mbar_arrive_expect_tx(&full[s], piece * (b1 - b0));
        for (int b = b0; b < b1; ++b)
          tma_load_2d(dst + b * piece, &d2, &full[s], (g * nbox + b) * 128, row0 + band);
      }
      if (++s == stages) s = 0, phase ^= 1;
    }
  } else if (threadIdx.x == 32) {
    int s = 0;
    u32 phase = 0;
    const long long t0 = clock64();
    unsigned long long g0, g1;
    asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(g0));
    for (int i = 0; i < iters; ++i) {
      mbar_wait(&full[s], phase);
      mbar_arrive(&empty[s]);
      if (++s == stages) s = 0, phase ^= 1;
    }
    cycles[blockIdx.x] = clock64() - t0;
    asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(g1));
    cycles[gridDim.x + blockIdx.x] = static_cast<long long>(g1 - g0);
  }
}
}  // namespace probe

#ifndef __CUDACC_RTC__
#include <cstdio>
#include <vector>

#include "tma_encode.h"

// rank 2: [outer, inner] bytes, box [rows, 128]; rank 3: the same bytes as
// [K / 128, outer, 128] (K block, row, byte), box [nbox, rows, 128].
static probe::TmaDesc make_desc(void* ptr, unsigned long long inner, unsigned long long outer,
                                unsigned rows, unsigned nbox, unsigned rank) {
  const cuuint64_t dims2[2] = {inner, outer};
  const cuuint64_t strides2[1] = {inner};
  const cuuint32_t box2[2] = {128, rows};
  const cuuint64_t dims3[3] = {128, outer, inner / 128};
  const cuuint64_t strides3[2] = {inner, 128};
  const cuuint32_t box3[3] = {128, rows, nbox};
  return rank == 2 ? encode_byte_tensor<probe::TmaDesc>(2, ptr, dims2, strides2, box2)
                   : encode_byte_tensor<probe::TmaDesc>(3, ptr, dims3, strides3, box3);
}

int main() {
  cudaDeviceProp prop;
  CHECK(cudaGetDeviceProperties(&prop, 0));
  const int sms = prop.multiProcessorCount;
  std::printf("%s, %d SMs\n", prop.name, sms);
  const unsigned long long K = 7168;
  const unsigned long long own_outer = (1ull << 30) / K;
  unsigned char *a, *b;
  long long* d_cycles;
  CHECK(cudaMalloc(&a, 256 * K));
  CHECK(cudaMalloc(&b, own_outer * K));
  CHECK(cudaMemset(a, 1, 256 * K));
  CHECK(cudaMemset(b, 1, own_outer * K));
  CHECK(cudaMalloc(&d_cycles, 2 * sms * sizeof(long long)));
  const int smem = probe::kRingBytes + 64 * 8;
  CHECK(cudaFuncSetAttribute(probe::issue_probe, cudaFuncAttributeMaxDynamicSharedMemorySize, smem));
  const int k_blocks = static_cast<int>(K / 128);  // 56
  const char* names[3] = {"2d", "3d", "2t"};
  for (int own = 0; own < 2; ++own)
    for (int rows : {16, 64})
      for (int nbox : {1, 2, 4})
        for (int mode = 0; mode < 3; ++mode) {
          if (mode == 2 && nbox == 1) continue;
          const int stages = 8;
          if (stages * rows * 128 * nbox > probe::kRingBytes) continue;
          unsigned char* base = own ? b : a;
          const unsigned long long outer = own ? own_outer : 256;
          const probe::TmaDesc d2 = make_desc(base, K, outer, rows, nbox, 2);
          const probe::TmaDesc d3 = make_desc(base, K, outer, rows, nbox, 3);
          for (int ctas : {1, sms}) {
            const int groups = k_blocks / nbox;
            const int passes = own ? 8 : 64;
            const int iters = groups * passes;
            for (int rep = 0; rep < 2; ++rep)
              probe::issue_probe<<<ctas, 96, smem>>>(d2, d3, d_cycles, rows, nbox, stages, iters,
                                                     k_blocks, mode, own);
            CHECK(cudaGetLastError());
            CHECK(cudaDeviceSynchronize());
            std::vector<long long> h(2 * ctas);
            CHECK(cudaMemcpy(h.data(), d_cycles, 2 * ctas * sizeof(long long), cudaMemcpyDeviceToHost));
            double sum = 0, ns = 0;
            for (int c = 0; c < ctas; ++c) sum += static_cast<double>(h[c]), ns += static_cast<double>(h[ctas + c]);
            const double cyc = sum / ctas / iters, nsp = ns / ctas / iters;
            std::printf("%-6s rows %2d  boxes/stage %d  %s  ctas %3d: %7.1f cycles (%6.1f ns) per stage, "
                        "%6.1f cycles per piece, %6.1f B/clk per SM, clock %.2f GHz\n",
                        own ? "own" : "shared", rows, nbox, names[mode], ctas, cyc, nsp, cyc / nbox,
                        rows * 128.0 * nbox / cyc, cyc / nsp);
          }
        }
  return 0;
}
#endif
