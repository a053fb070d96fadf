// A JIT-compiled kernel loaded into the driver: context-independent
// (cuLibrary), configured lazily per device (dynamic shared memory limit, SM
// count).  Owned by the FFI per-instance state.
#pragma once

#include <cuda.h>

#include <mutex>
#include <string>
#include <vector>

#include "cuda_driver.h"
#include "jit_cache.h"

namespace jaxgemm {

class LoadedKernel {
 public:
  ~LoadedKernel();
  // Loads `bin` (no device or context needed).
  bool load(const KernelBinary& bin, unsigned smem_bytes, unsigned threads, std::string* error);

  // Configures the kernel for the current context's device (once per
  // device) and returns that device's SM count.  Safe to call from any stage;
  // the initialize stage calls it so that execute only launches.
  bool prepare_current_device(int* num_sms, std::string* error);

  bool launch(CUstream stream, unsigned grid, void** params, std::string* error);

  unsigned smem_bytes() const { return smem_bytes_; }
  unsigned threads() const { return threads_; }
  const KernelBinary& binary() const { return bin_; }

 private:
  const CudaDriver* drv_ = nullptr;
  CUlibrary lib_ = nullptr;
  CUkernel kernel_ = nullptr;
  unsigned smem_bytes_ = 0, threads_ = 0;
  KernelBinary bin_;
  std::mutex mu_;
  std::vector<std::pair<CUdevice, int>> devices_;  // configured devices and their SM counts
};

}  // namespace jaxgemm
