// FFI handler symbols of the dense GEMM custom calls (see dense_handlers.cc).
#pragma once

#include "xla/ffi/api/ffi.h"

XLA_FFI_DECLARE_HANDLER_SYMBOL(JaxgemmDenseInstantiate);
XLA_FFI_DECLARE_HANDLER_SYMBOL(JaxgemmDenseInitialize);
XLA_FFI_DECLARE_HANDLER_SYMBOL(JaxgemmDenseExecute);
XLA_FFI_DECLARE_HANDLER_SYMBOL(JaxgemmGroupedExecute);
XLA_FFI_DECLARE_HANDLER_SYMBOL(JaxgemmKGroupedExecute);
