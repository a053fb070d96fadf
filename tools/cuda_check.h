// Host-side error check shared by the standalone microbenchmarks in tools/
// (wgmma_probe.cu, tma_probe.cu, tma_issue_probe.cu): print the CUDA runtime error and exit.
#pragma once
#include <cuda_runtime.h>

#include <cstdio>
#include <cstdlib>

#define CHECK(x)                                                                 \
  do {                                                                           \
    cudaError_t e_ = (x);                                                        \
    if (e_ != cudaSuccess) {                                                     \
      std::printf("CUDA error %s at %s:%d\n", cudaGetErrorString(e_), __FILE__, \
                  __LINE__);                                                     \
      std::exit(1);                                                              \
    }                                                                            \
  } while (0)
