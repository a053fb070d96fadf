// Helpers shared by the execute handlers of the GEMM custom calls.
#pragma once

#include <cstdint>
#include <initializer_list>
#include <string>

#include "kernel_state.h"
#include "xla/ffi/api/ffi.h"

namespace jaxgemm {

// An internal error naming the kernel and its static config.
xla::ffi::Error internal(const std::string& what, const GemmSpec& spec);

// InvalidArgument unless `buf` has exactly this dtype and shape.
xla::ffi::Error check_dims(const char* name, const xla::ffi::AnyBuffer& buf,
                           xla::ffi::DataType dtype, std::initializer_list<int64_t> dims,
                           const GemmSpec& spec);

// Persistent grid: one cluster per scheduling unit, at most as many clusters
// as fit on the current device at once (or on the SMs the caller allows).
bool persistent_grid(KernelState* state, int64_t units, unsigned* grid, std::string* error);

}  // namespace jaxgemm
