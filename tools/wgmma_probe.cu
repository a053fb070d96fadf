// Microbenchmark: how long one K block of FP8 wgmmas (four m64nNk32, both
// operands in shared memory) takes a warpgroup, alone and with other
// warpgroups issuing beside it in the same CTA.
//
// Why: the 64-row dense tiles (the M <= 128 shapes) spend ~355 SM cycles per
// K block whatever their width (16, 32 or 64 columns), and neither a deeper
// ring (16-20 stages) nor independent accumulator chains inside the
// warpgroup changed that (benchmarks/NOTES.md, sessions 17-18).  If a single
// warpgroup's wgmma groups cost ~300 cycles at small N while a second
// warpgroup's run beside them for free, splitting a tile's K blocks between
// two math warpgroups (reduced through shared memory at the end) doubles the
// small-M tiles' pace; if two warpgroups only share the same ~300 cycles,
// it does not, and the bound lies outside the wgmma.
//
// Build and run on the device (no Python, no jaxgemm install needed):
//   nvcc -std=c++17 -gencode arch=compute_90a,code=sm_90a -O3 -I src_cuda \
//        tools/wgmma_probe.cu -o /tmp/wgmma_probe
//   /tmp/wgmma_probe
// Prints cycles per K block per warpgroup (clock64 of each warpgroup's
// thread 0 around the loop, averaged) for N in {16, 32, 64, 128}, 1-3
// warpgroups, and two schedules: "serial" (issue a group, wait for it: the
// 128/256-row tiles) and "pipelined" (issue group j + 1, then wait for group
// j: the 64-row tiles).  Operand contents are irrelevant (zeros).
#include "ptx.cuh"
#include "wgmma.cuh"

namespace probe {
using namespace jaxgemm;

constexpr int kKSteps = 4;       // k32 wgmmas per 128-deep K block
constexpr int kSmemBytes = 64 * 1024;

template <class Mma>
__device__ __forceinline__ void issue(u64 da, u64 db, float* acc) {
#pragma unroll
  for (int i = 0; i < Mma::kNumAccum; ++i) reg_fence(acc[i]);
  wgmma_fence();
#pragma unroll
  for (int k = 0; k < kKSteps; ++k) Mma::mma(da + 2 * k, db + 2 * k, acc, k > 0);
  wgmma_commit();
}
// Waits until at most kInFlight groups are pending, then adds `acc` into `fin`.
template <class Mma, int kInFlight>
__device__ __forceinline__ void retire(float* acc, float* fin) {
  wgmma_wait<kInFlight>();
#pragma unroll
  for (int i = 0; i < Mma::kNumAccum; ++i) reg_fence(acc[i]);
#pragma unroll
  for (int i = 0; i < Mma::kNumAccum; ++i) fin[i] += acc[i];
}

template <int N, int kWG, bool kPipelined>
__global__ void __launch_bounds__(kWG * 128, 1) wgmma_probe(long long* cycles, float* sink,
                                                            int iters) {
  using Mma = WgmmaFp8<N>;
  extern __shared__ __align__(1024) unsigned char smem[];
  const int tid = threadIdx.x, wg = tid / 128;
  for (int i = tid; i < kSmemBytes / 16; i += blockDim.x)
    reinterpret_cast<uint4*>(smem)[i] = make_uint4(0, 0, 0, 0);
  __syncthreads();
  // A: 64 rows x 128 bytes per warpgroup (8 KB apart); B: N rows x 128 bytes at 32 KB.
  const u64 da = smem_desc_sw128(smem + wg * 8192);
  const u64 db = smem_desc_sw128(smem + 32768);
  // fin: every group's result is added in (the kernels' promotion does the same work
  // as FFMAs); without a reader ptxas drops the overwritten groups' wgmmas.
  float acc[2][Mma::kNumAccum], fin[Mma::kNumAccum];
#pragma unroll
  for (int i = 0; i < Mma::kNumAccum; ++i) acc[0][i] = acc[1][i] = fin[i] = 0.f;
  __syncthreads();
  const long long t0 = clock64();
  if constexpr (!kPipelined) {
    for (int it = 0; it < iters; ++it) {
      issue<Mma>(da, db, acc[0]);
      retire<Mma, 0>(acc[0], fin);
    }
  } else {
    // Two accumulators alternate; group j + 1 is issued before group j is waited for.
    // The loop has the kernels' shape (fp8_mainloop.cuh run_pipelined): one group in
    // flight at the back edge, none at either exit; other shapes made ptxas serialize
    // every wgmma (C7514).
    issue<Mma>(da, db, acc[0]);
    for (int j = 0;; j += 2) {
      if (j + 1 >= iters) {
        retire<Mma, 0>(acc[0], fin);
        break;
      }
      issue<Mma>(da, db, acc[1]);
      retire<Mma, 1>(acc[0], fin);
      if (j + 2 >= iters) {
        retire<Mma, 0>(acc[1], fin);
        break;
      }
      issue<Mma>(da, db, acc[0]);
      retire<Mma, 1>(acc[1], fin);
    }
  }
  const long long t1 = clock64();
  if (tid % 128 == 0) cycles[blockIdx.x * kWG + wg] = t1 - t0;
  float s = 0.f;
#pragma unroll
  for (int i = 0; i < Mma::kNumAccum; ++i) s += fin[i];
  if (s != 0.f) sink[tid] = s;  // never true with zero operands; keeps the wgmmas
}
}  // namespace probe

#ifndef __CUDACC_RTC__
#include <cstdio>
#include <vector>

#include "cuda_check.h"

template <int N, int kWG, bool kPipelined>
void run(int ctas, long long* d_cycles, float* d_sink) {
  CHECK(cudaFuncSetAttribute(probe::wgmma_probe<N, kWG, kPipelined>,
                             cudaFuncAttributeMaxDynamicSharedMemorySize, probe::kSmemBytes));
  const int iters = 4096;
  for (int rep = 0; rep < 2; ++rep)  // the first launch warms up clocks and caches
    probe::wgmma_probe<N, kWG, kPipelined>
        <<<ctas, kWG * 128, probe::kSmemBytes>>>(d_cycles, d_sink, iters);
  CHECK(cudaGetLastError());
  CHECK(cudaDeviceSynchronize());
  std::vector<long long> h(ctas * kWG);
  CHECK(cudaMemcpy(h.data(), d_cycles, h.size() * sizeof(long long), cudaMemcpyDeviceToHost));
  double sum = 0;
  for (long long v : h) sum += static_cast<double>(v);
  const double per_kb = sum / h.size() / iters;
  // FP8 FLOPs per K block per warpgroup: 2 * 64 * N * 128.
  const double flop_per_clk_sm = 2.0 * 64 * N * 128 * kWG / per_kb;
  std::printf("N=%3d  warpgroups=%d  %-9s  ctas=%3d  %7.1f cycles per K block per warpgroup"
              "  (%6.0f FP8 FLOP/clk/SM, peak ~8192)\n",
              N, kWG, kPipelined ? "pipelined" : "serial", ctas, per_kb, flop_per_clk_sm);
}

template <int N>
void run_n(int sms, long long* c, float* s) {
  run<N, 1, false>(1, c, s);
  run<N, 1, true>(1, c, s);
  run<N, 2, false>(1, c, s);
  run<N, 2, true>(1, c, s);
  if constexpr (N <= 64) run<N, 3, true>(1, c, s);  // 3 x 128 threads: 168 registers each
  run<N, 1, true>(sms, c, s);
  run<N, 2, true>(sms, c, s);
}

int main() {
  cudaDeviceProp prop;
  CHECK(cudaGetDeviceProperties(&prop, 0));
  const int sms = prop.multiProcessorCount;
  std::printf("%s, %d SMs\n", prop.name, sms);
  long long* d_cycles;
  float* d_sink;
  CHECK(cudaMalloc(&d_cycles, sms * 3 * sizeof(long long)));
  CHECK(cudaMalloc(&d_sink, 384 * sizeof(float)));
  run_n<16>(sms, d_cycles, d_sink);
  run_n<32>(sms, d_cycles, d_sink);
  run_n<64>(sms, d_cycles, d_sink);
  run_n<128>(sms, d_cycles, d_sink);
  return 0;
}
#endif
