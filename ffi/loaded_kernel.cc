#include "loaded_kernel.h"

#include <cstdio>
#include <cstdlib>
#include <sstream>

namespace jaxgemm {

LoadedKernel::~LoadedKernel() {
  if (lib_ != nullptr && drv_ != nullptr) drv_->cuLibraryUnload(lib_);
}

bool LoadedKernel::load(const KernelBinary& bin, unsigned smem_bytes, unsigned threads,
                        unsigned cluster, std::string* error) {
  cluster_ = cluster;
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

bool LoadedKernel::prepare_current_device(DeviceInfo* info, std::string* error) {
  CUdevice dev;
  CUresult r = drv_->cuCtxGetDevice(&dev);
  if (r != CUDA_SUCCESS) {
    *error = "no current CUDA context (cuCtxGetDevice: " + cu_result_string(r) + ")";
    return false;
  }
  std::lock_guard<std::mutex> lock(mu_);
  for (const auto& d : devices_) {
    if (d.device == dev) {
      *info = d;
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
  DeviceInfo d;
  d.device = dev;
  d.num_sms = sms;
  d.max_active_clusters = sms / static_cast<int>(cluster_);
  if (cluster_ > 1) {
    // Clusters must fit in one GPC: fewer than SMs / cluster may be resident.
    CUlaunchConfig cfg = {};
    CUlaunchAttribute attr = {};
    attr.id = CU_LAUNCH_ATTRIBUTE_CLUSTER_DIMENSION;
    attr.value.clusterDim.x = cluster_;
    attr.value.clusterDim.y = 1;
    attr.value.clusterDim.z = 1;
    cfg.gridDimX = cluster_ * static_cast<unsigned>(d.max_active_clusters);
    cfg.gridDimY = cfg.gridDimZ = 1;
    cfg.blockDimX = threads_;
    cfg.blockDimY = cfg.blockDimZ = 1;
    cfg.sharedMemBytes = smem_bytes_;
    cfg.attrs = &attr;
    cfg.numAttrs = 1;
    int clusters = 0;
    CUresult occ = drv_->cuOccupancyMaxActiveClusters(&clusters, fn, &cfg);
    if (occ == CUDA_SUCCESS && clusters > 0) d.max_active_clusters = clusters;
  }
  if (const char* cap = std::getenv("JAXGEMM_DEBUG_MAX_CLUSTERS"))  // experiments only
    d.max_active_clusters = std::atoi(cap);
  if (d.max_active_clusters < 1) d.max_active_clusters = 1;
  if (jit_settings().debug)
    std::fprintf(stderr, "[jaxgemm] %s on device %d: %d SMs, %d resident clusters of %u\n",
                 bin_.lowered_name.c_str(), static_cast<int>(dev), sms, d.max_active_clusters,
                 cluster_);
  devices_.push_back(d);
  *info = d;
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
    CUlaunchAttribute attr = {};
    attr.id = CU_LAUNCH_ATTRIBUTE_CLUSTER_DIMENSION;
    attr.value.clusterDim.x = cluster_;
    attr.value.clusterDim.y = 1;
    attr.value.clusterDim.z = 1;
    cfg.attrs = &attr;
    cfg.numAttrs = 1;
    r = drv_->cuLaunchKernelEx(&cfg, fn, params, nullptr);
  }
  if (r != CUDA_SUCCESS) {
    std::ostringstream s;
    s << "launch of " << bin_.lowered_name << " (grid " << grid << ", cluster " << cluster_
      << ", block " << threads_ << ", "
      << smem_bytes_ << " B shared) failed: " << cu_result_string(r);
    *error = s.str();
    return false;
  }
  return true;
}

}  // namespace jaxgemm
