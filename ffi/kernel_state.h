// The per-instance FFI state of every jaxgemm custom call: the compiled,
// loaded kernel and the static spec it was built from.  XLA creates it at the
// instantiate stage and destroys it with the executable.
#pragma once

#include <memory>

#include "gemm_spec.h"
#include "loaded_kernel.h"
#include "xla/ffi/api/ffi.h"

namespace jaxgemm {

struct KernelState {
  static xla::ffi::TypeId id;
  GemmSpec spec;
  LoadedKernel kernel;
};

// Registered with XLA from Python (jax.ffi.register_ffi_type) before any
// target that uses the state.
const XLA_FFI_TypeInfo* kernel_state_type_info();

}  // namespace jaxgemm
