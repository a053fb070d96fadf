// Host-side TMA descriptors for the standalone microbenchmarks in tools/
// (tma_probe.cu, tma_issue_probe.cu): a byte tensor of 2 or 3 dimensions,
// 128-byte swizzle like the kernels' A and B tiles, 256-byte L2 promotion.
#pragma once
#include <cuda.h>
#include <cudaTypedefs.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "cuda_check.h"

// dims / strides / box as cuTensorMapEncodeTiled takes them (innermost first;
// rank - 1 strides in bytes).  Desc: the kernel's 128-byte descriptor type.
template <class Desc>
inline Desc encode_byte_tensor(unsigned rank, void* ptr, const cuuint64_t* dims,
                               const cuuint64_t* strides, const cuuint32_t* box) {
  static PFN_cuTensorMapEncodeTiled_v12000 encode = [] {
    PFN_cuTensorMapEncodeTiled_v12000 fn = nullptr;
    cudaDriverEntryPointQueryResult q;
    CHECK(cudaGetDriverEntryPointByVersion("cuTensorMapEncodeTiled",
                                           reinterpret_cast<void**>(&fn), 12000,
                                           cudaEnableDefault, &q));
    if (fn == nullptr) {
      std::printf("cuTensorMapEncodeTiled not found\n");
      std::exit(1);
    }
    return fn;
  }();
  static_assert(sizeof(Desc) == sizeof(CUtensorMap), "a descriptor is 128 bytes");
  CUtensorMap m;
  std::memset(&m, 0, sizeof m);
  const cuuint32_t elem[3] = {1, 1, 1};
  const CUresult r = encode(&m, CU_TENSOR_MAP_DATA_TYPE_UINT8, rank, ptr, dims, strides, box,
                            elem, CU_TENSOR_MAP_INTERLEAVE_NONE, CU_TENSOR_MAP_SWIZZLE_128B,
                            CU_TENSOR_MAP_L2_PROMOTION_L2_256B, CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE);
  if (r != CUDA_SUCCESS) {
    std::printf("cuTensorMapEncodeTiled (rank %u) failed (%d)\n", rank, static_cast<int>(r));
    std::exit(1);
  }
  Desc d;
  std::memcpy(&d, &m, sizeof d);
  return d;
}
