#include "cuda_driver.h"

#include <dlfcn.h>

#include <mutex>

namespace jaxgemm {
namespace {

struct Loaded {
  CudaDriver api;
  std::string error;
  bool ok = false;
};

Loaded load() {
  Loaded l;
  void* lib = dlopen("libcuda.so.1", RTLD_NOW | RTLD_GLOBAL);
  if (lib == nullptr) lib = dlopen("libcuda.so", RTLD_NOW | RTLD_GLOBAL);
  if (lib == nullptr) {
    const char* e = dlerror();
    l.error = std::string("cannot load the CUDA driver (libcuda.so.1): ") + (e ? e : "unknown");
    return l;
  }
#define JAXGEMM_DRIVER_FN(name)                                                 \
  l.api.name = reinterpret_cast<decltype(&::name)>(dlsym(lib, #name));          \
  if (l.api.name == nullptr) {                                                  \
    l.error = "the CUDA driver lacks " #name " (driver too old for jaxgemm; "   \
              "CUDA 12.4+ needed)";                                             \
    return l;                                                                   \
  }
#include "cuda_driver_fns.inc"
#undef JAXGEMM_DRIVER_FN
  CUresult r = l.api.cuInit(0);
  if (r != CUDA_SUCCESS) {
    l.error = "cuInit failed: " + std::to_string(static_cast<int>(r));
    return l;
  }
  l.ok = true;
  return l;
}

}  // namespace

const CudaDriver* cuda_driver(std::string* error) {
  static Loaded* loaded = new Loaded(load());  // never destroyed: outlives XLA's teardown
  if (!loaded->ok) {
    if (error) *error = loaded->error;
    return nullptr;
  }
  return &loaded->api;
}

std::string cu_result_string(CUresult r) {
  const CudaDriver* d = cuda_driver(nullptr);
  const char* name = nullptr;
  const char* text = nullptr;
  if (d) {
    d->cuGetErrorName(r, &name);
    d->cuGetErrorString(r, &text);
  }
  std::string s = name ? name : ("CUresult " + std::to_string(static_cast<int>(r)));
  if (text) s += std::string(" (") + text + ")";
  return s;
}

}  // namespace jaxgemm
