#include "loaded_kernel.h"

#include <sstream>

namespace jaxgemm {

LoadedKernel::~LoadedKernel() {
  if (lib_ != nullptr && drv_ != nullptr) drv_->cuLibraryUnload(lib_);
}

bool LoadedKernel::load(const KernelBinary& bin, unsigned smem_bytes, unsigned threads,
                        std::string* error) {
  drv_ = cuda_driver(error);
  if (drv_ == nullptr) return false;
  bin_ = bin;
  smem_bytes_ = smem_bytes;
  threads_ = threads;
  CUresult r = drv_->cuLibraryLoadData(&lib_, bin_.cubin.data(), nullptr, nullptr, 0, nullptr,
                                       nullptr, 0);
  if (r != CUDA_SUCCESS) {
    *error = "cuLibraryLoadData failed: " + cu_result_string(r);
    return false;
  }
  r = drv_->cuLibraryGetKernel(&kernel_, lib_, bin_.lowered_name.c_str());
  if (r != CUDA_SUCCESS) {
    *error = "cuLibraryGetKernel(" + bin_.lowered_name + ") failed: " + cu_result_string(r);
    return false;
  }
  return true;
}

bool LoadedKernel::prepare_current_device(int* num_sms, std::string* error) {
  CUdevice dev;
  CUresult r = drv_->cuCtxGetDevice(&dev);
  if (r != CUDA_SUCCESS) {
    *error = "no current CUDA context (cuCtxGetDevice: " + cu_result_string(r) + ")";
    return false;
  }
  std::lock_guard<std::mutex> lock(mu_);
  for (const auto& d : devices_) {
    if (d.first == dev) {
      *num_sms = d.second;
      return true;
    }
  }
  int major = 0, sms = 0;
  drv_->cuDeviceGetAttribute(&major, CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR, dev);
  drv_->cuDeviceGetAttribute(&sms, CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT, dev);
  if (major != 9) {
    *error = "jaxgemm kernels need a Hopper GPU (sm_90); this device has compute capability " +
             std::to_string(major) + ".x";
    return false;
  }
  // Getting the function loads the kernel into this context now, before any
  // CUDA-graph capture could see a lazy load.
  CUfunction fn;
  r = drv_->cuKernelGetFunction(&fn, kernel_);
  if (r == CUDA_SUCCESS)
    r = drv_->cuFuncSetAttribute(fn, CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES,
                                 static_cast<int>(smem_bytes_));
  if (r != CUDA_SUCCESS) {
    std::ostringstream s;
    s << "cannot configure " << bin_.lowered_name << " for " << smem_bytes_
      << " bytes of dynamic shared memory: " << cu_result_string(r);
    *error = s.str();
    return false;
  }
  devices_.emplace_back(dev, sms);
  *num_sms = sms;
  return true;
}

bool LoadedKernel::launch(CUstream stream, unsigned grid, void** params, std::string* error) {
  CUfunction fn;
  CUresult r = drv_->cuKernelGetFunction(&fn, kernel_);
  if (r == CUDA_SUCCESS) {
    CUlaunchConfig cfg = {};
    cfg.gridDimX = grid;
    cfg.gridDimY = 1;
    cfg.gridDimZ = 1;
    cfg.blockDimX = threads_;
    cfg.blockDimY = 1;
    cfg.blockDimZ = 1;
    cfg.sharedMemBytes = smem_bytes_;
    cfg.hStream = stream;
    cfg.attrs = nullptr;
    cfg.numAttrs = 0;
    r = drv_->cuLaunchKernelEx(&cfg, fn, params, nullptr);
  }
  if (r != CUDA_SUCCESS) {
    std::ostringstream s;
    s << "launch of " << bin_.lowered_name << " (grid " << grid << ", block " << threads_ << ", "
      << smem_bytes_ << " B shared) failed: " << cu_result_string(r);
    *error = s.str();
    return false;
  }
  return true;
}

}  // namespace jaxgemm
