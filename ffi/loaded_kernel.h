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
  bool load(const KernelBinary& bin, unsigned smem_bytes, unsigned threads, unsigned cluster,
            std::string* error);

  struct DeviceInfo {
    CUdevice device = 0;
    int num_sms = 0;
    int max_active_clusters = 0;  // clusters of this kernel resident at once
  };
  // Configures the kernel for the current context's device (once per
  // device) and returns the device's facts.  Safe to call from any stage;
  // the initialize stage calls it so that execute only launches.
  bool prepare_current_device(DeviceInfo* info, std::string* error);

  bool launch(CUstream stream, unsigned grid, void** params, std::string* error);

  unsigned smem_bytes() const { return smem_bytes_; }
  unsigned threads() const { return threads_; }
  const KernelBinary& binary() const { return bin_; }

 private:
  const CudaDriver* drv_ = nullptr;
  CUlibrary lib_ = nullptr;
  CUkernel kernel_ = nullptr;
  unsigned smem_bytes_ = 0, threads_ = 0, cluster_ = 1;
  KernelBinary bin_;
  std::mutex mu_;
  std::vector<DeviceInfo> devices_;  // configured devices
};

}  // namespace jaxgemm
