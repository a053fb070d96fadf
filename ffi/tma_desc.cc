#include "tma_desc.h"

#include <cstring>
#include <sstream>

namespace jaxgemm {

CUtensorMapSwizzle swizzle_for_row_bytes(uint32_t row_bytes) {
  switch (row_bytes) {
    case 128: return CU_TENSOR_MAP_SWIZZLE_128B;
    case 64: return CU_TENSOR_MAP_SWIZZLE_64B;
    case 32: return CU_TENSOR_MAP_SWIZZLE_32B;
    default: return CU_TENSOR_MAP_SWIZZLE_NONE;
  }
}

bool make_tma_2d(const CudaDriver& drv, CUtensorMap* out, CUtensorMapDataType dtype, void* ptr,
                 uint64_t inner, uint64_t outer, uint64_t row_stride_bytes, uint32_t box_inner,
                 uint32_t box_outer, CUtensorMapSwizzle swizzle, std::string* error) {
  std::memset(out, 0, sizeof(*out));
  const cuuint64_t dims[2] = {inner, outer};
  const cuuint64_t strides[1] = {row_stride_bytes};
  const cuuint32_t box[2] = {box_inner, box_outer};
  const cuuint32_t elem_strides[2] = {1, 1};
  CUresult r = drv.cuTensorMapEncodeTiled(
      out, dtype, 2, ptr, dims, strides, box, elem_strides, CU_TENSOR_MAP_INTERLEAVE_NONE,
      swizzle, CU_TENSOR_MAP_L2_PROMOTION_L2_256B, CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE);
  if (r != CUDA_SUCCESS) {
    std::ostringstream s;
    s << "cuTensorMapEncodeTiled failed (" << cu_result_string(r) << ") for a [" << outer << ", "
      << inner << "] tensor at " << ptr << ", row stride " << row_stride_bytes << " B, box ["
      << box_outer << ", " << box_inner << "]";
    *error = s.str();
    return false;
  }
  return true;
}

bool make_tma_3d(const CudaDriver& drv, CUtensorMap* out, CUtensorMapDataType dtype, void* ptr,
                 uint64_t inner, uint64_t outer, uint64_t groups, uint64_t row_stride_bytes,
                 uint32_t box_inner, uint32_t box_outer, CUtensorMapSwizzle swizzle,
                 std::string* error) {
  std::memset(out, 0, sizeof(*out));
  const cuuint64_t dims[3] = {inner, outer, groups};
  const cuuint64_t strides[2] = {row_stride_bytes, row_stride_bytes * outer};
  const cuuint32_t box[3] = {box_inner, box_outer, 1};
  const cuuint32_t elem_strides[3] = {1, 1, 1};
  CUresult r = drv.cuTensorMapEncodeTiled(
      out, dtype, 3, ptr, dims, strides, box, elem_strides, CU_TENSOR_MAP_INTERLEAVE_NONE,
      swizzle, CU_TENSOR_MAP_L2_PROMOTION_L2_256B, CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE);
  if (r != CUDA_SUCCESS) {
    std::ostringstream s;
    s << "cuTensorMapEncodeTiled failed (" << cu_result_string(r) << ") for a [" << groups
      << ", " << outer << ", " << inner << "] tensor at " << ptr;
    *error = s.str();
    return false;
  }
  return true;
}

bool make_output_slab_desc(const CudaDriver& drv, CUtensorMap* out, bool f32, void* ptr,
                           uint64_t n, uint64_t rows, uint64_t groups, uint32_t slab_cols,
                           std::string* error) {
  const uint32_t elem = f32 ? 4 : 2;
  const auto dtype = f32 ? CU_TENSOR_MAP_DATA_TYPE_FLOAT32 : CU_TENSOR_MAP_DATA_TYPE_BFLOAT16;
  const auto swizzle = swizzle_for_row_bytes(slab_cols * elem);
  if (groups == 0)
    return make_tma_2d(drv, out, dtype, ptr, n, rows, n * elem, slab_cols, 64, swizzle, error);
  return make_tma_3d(drv, out, dtype, ptr, n, rows, groups, n * elem, slab_cols, 64, swizzle,
                     error);
}

}  // namespace jaxgemm
