// FFI handler symbols of the GEMM custom calls.  Every target shares the
// instantiate and initialize stages (kernel_state.cc) and has its own execute.
#pragma once

#include "xla/ffi/api/ffi.h"

XLA_FFI_DECLARE_HANDLER_SYMBOL(JaxgemmInstantiate);
XLA_FFI_DECLARE_HANDLER_SYMBOL(JaxgemmInitialize);
XLA_FFI_DECLARE_HANDLER_SYMBOL(JaxgemmDenseExecute);
XLA_FFI_DECLARE_HANDLER_SYMBOL(JaxgemmGroupedExecute);
XLA_FFI_DECLARE_HANDLER_SYMBOL(JaxgemmKGroupedExecute);
XLA_FFI_DECLARE_HANDLER_SYMBOL(JaxgemmKGroupedPackExecute);
