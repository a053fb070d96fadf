// Helpers shared by the execute handlers of the GEMM custom calls.
#pragma once

#include <cstdint>
#include <initializer_list>
#include <string>

#include "kernel_state.h"
#include "tma_desc.h"
#include "xla/ffi/api/ffi.h"

namespace jaxgemm {

// An internal error naming the kernel and its static config.
xla::ffi::Error internal(const std::string& what, const GemmSpec& spec);

// InvalidArgument unless `buf` has exactly this dtype and shape.
xla::ffi::Error check_dims(const char* name, const xla::ffi::AnyBuffer& buf,
                           xla::ffi::DataType dtype, std::initializer_list<int64_t> dims,
                           const GemmSpec& spec);

// Scales by TMA (spec.scales_tma; layout.h): checks the A scales, transposed
// [kb, tma_scale_a_cols(rows)] (1) or row-major [rows, tma_scale_k_blocks(k)]
// (2, row boxes), and, unless B scales are per row, the B block scales
// [b_rows, tma_scale_k_blocks(k)] (b_rows: N blocks, times groups), and
// encodes their descriptors: A boxes of block_m rows of one K block (1) or of
// 4 K blocks (2), B boxes of 4 K blocks x 2 N blocks
// (src_cuda/gemm_common.cuh, TmaStageScales).  Without scales_tma both
// descriptors are zeroed; the callers check the cp.async layouts themselves.
xla::ffi::Error scale_descriptors(const GemmSpec& spec, const xla::ffi::AnyBuffer& sa,
                                  const xla::ffi::AnyBuffer& sb, int64_t rows, int64_t b_rows,
                                  CUtensorMap* tm_sa, CUtensorMap* tm_sbb);

// Persistent grid: one cluster per scheduling unit, at most as many clusters
// as fit on the current device at once (or on the SMs the caller allows).
bool persistent_grid(KernelState* state, int64_t units, unsigned* grid, std::string* error);

}  // namespace jaxgemm
