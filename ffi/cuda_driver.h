// The CUDA driver API, loaded at run time.
//
// libcuda is dlopen'ed on first use instead of linked, so the extension (and
// with it `import jaxgemm` and the CPU reference path) works on machines with
// no CUDA driver at all.  cuda.h supplies only types here.
#pragma once

#include <cuda.h>

#include <string>

namespace jaxgemm {

struct CudaDriver {
#define JAXGEMM_DRIVER_FN(name) decltype(&::name) name = nullptr;
#include "cuda_driver_fns.inc"
#undef JAXGEMM_DRIVER_FN
};

// The loaded driver, or nullptr with `*error` set when libcuda is missing or
// too old.  Thread-safe; loads once.
const CudaDriver* cuda_driver(std::string* error);

// "CUDA_ERROR_X (text)" for a driver result code.
std::string cu_result_string(CUresult r);

}  // namespace jaxgemm
