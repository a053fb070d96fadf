// TMA descriptors (CUtensorMap) for 2-D row-major tensors.
#pragma once

#include <cuda.h>

#include <cstdint>
#include <string>

#include "cuda_driver.h"

namespace jaxgemm {

// Swizzle mode for boxes whose rows are `row_bytes` long (128/64/32; 16 or
// less: none).  Matches swizzle_offset<> in src_cuda/gemm_common.cuh.
CUtensorMapSwizzle swizzle_for_row_bytes(uint32_t row_bytes);

// Encodes a descriptor of a [outer, inner] row-major tensor at `ptr` (row
// stride `row_stride_bytes`), read or written in boxes of
// [box_outer, box_inner].  Out-of-bounds elements load as zero and are
// dropped on store.
bool make_tma_2d(const CudaDriver& drv, CUtensorMap* out, CUtensorMapDataType dtype, void* ptr,
                 uint64_t inner, uint64_t outer, uint64_t row_stride_bytes, uint32_t box_inner,
                 uint32_t box_outer, CUtensorMapSwizzle swizzle, std::string* error);

// A [groups, outer, inner] row-major tensor, boxes of [1, box_outer, box_inner]:
// a box never crosses from one group's rows into the next one's.
bool make_tma_3d(const CudaDriver& drv, CUtensorMap* out, CUtensorMapDataType dtype, void* ptr,
                 uint64_t inner, uint64_t outer, uint64_t groups, uint64_t row_stride_bytes,
                 uint32_t box_inner, uint32_t box_outer, CUtensorMapSwizzle swizzle,
                 std::string* error);

// The output slabs of the GEMM epilogues (TileStore, src_cuda/gemm_common.cuh):
// D or C, FP32 or BF16, seen as [rows, n] (groups == 0) or [groups, rows, n],
// in boxes of 64 rows x slab_cols columns (the kernel plan's slab_cols),
// swizzled by the slab's row bytes as the kernel writes them.
bool make_output_slab_desc(const CudaDriver& drv, CUtensorMap* out, bool f32, void* ptr,
                           uint64_t n, uint64_t rows, uint64_t groups, uint32_t slab_cols,
                           std::string* error);

}  // namespace jaxgemm
