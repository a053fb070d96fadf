#include "nvrtc_compiler.h"

#include <dlfcn.h>

#include <mutex>

namespace jaxgemm {
namespace {

// The slice of nvrtc.h we need, declared here so the build needs no NVRTC
// headers (the library is dlopen'ed).
using nvrtcResult = int;
using nvrtcProgram = struct _nvrtcProgram*;
constexpr nvrtcResult NVRTC_SUCCESS = 0;

struct Nvrtc {
  const char* (*GetErrorString)(nvrtcResult) = nullptr;
  nvrtcResult (*Version)(int*, int*) = nullptr;
  nvrtcResult (*CreateProgram)(nvrtcProgram*, const char*, const char*, int,
                               const char* const*, const char* const*) = nullptr;
  nvrtcResult (*DestroyProgram)(nvrtcProgram*) = nullptr;
  nvrtcResult (*CompileProgram)(nvrtcProgram, int, const char* const*) = nullptr;
  nvrtcResult (*GetCUBINSize)(nvrtcProgram, size_t*) = nullptr;
  nvrtcResult (*GetCUBIN)(nvrtcProgram, char*) = nullptr;
  nvrtcResult (*GetPTXSize)(nvrtcProgram, size_t*) = nullptr;
  nvrtcResult (*GetPTX)(nvrtcProgram, char*) = nullptr;
  nvrtcResult (*GetProgramLogSize)(nvrtcProgram, size_t*) = nullptr;
  nvrtcResult (*GetProgramLog)(nvrtcProgram, char*) = nullptr;
  nvrtcResult (*AddNameExpression)(nvrtcProgram, const char*) = nullptr;
  nvrtcResult (*GetLoweredName)(nvrtcProgram, const char*, const char**) = nullptr;
  int version = 0;
  std::string path;
};

std::mutex g_mu;
Nvrtc* g_nvrtc = nullptr;  // set once, never freed

template <typename F>
bool sym(void* lib, const char* name, F* fn, std::string* error) {
  *fn = reinterpret_cast<F>(dlsym(lib, name));
  if (*fn == nullptr) {
    *error = std::string("libnvrtc lacks ") + name;
    return false;
  }
  return true;
}

std::string program_log(const Nvrtc& n, nvrtcProgram prog) {
  size_t size = 0;
  if (n.GetProgramLogSize(prog, &size) != NVRTC_SUCCESS || size <= 1) return "";
  std::string log(size, '\0');
  n.GetProgramLog(prog, log.data());
  while (!log.empty() && (log.back() == '\0' || log.back() == '\n')) log.pop_back();
  return log;
}

}  // namespace

bool nvrtc_load(const std::string& path, std::string* error) {
  std::lock_guard<std::mutex> lock(g_mu);
  if (g_nvrtc != nullptr) {
    if (g_nvrtc->path == path) return true;
    *error = "NVRTC is already loaded from " + g_nvrtc->path;
    return false;
  }
  void* lib = dlopen(path.c_str(), RTLD_NOW | RTLD_GLOBAL);
  if (lib == nullptr) {
    const char* e = dlerror();
    *error = "cannot load NVRTC from " + path + ": " + (e ? e : "unknown");
    return false;
  }
  auto* n = new Nvrtc();
  bool ok = sym(lib, "nvrtcGetErrorString", &n->GetErrorString, error) &&
            sym(lib, "nvrtcVersion", &n->Version, error) &&
            sym(lib, "nvrtcCreateProgram", &n->CreateProgram, error) &&
            sym(lib, "nvrtcDestroyProgram", &n->DestroyProgram, error) &&
            sym(lib, "nvrtcCompileProgram", &n->CompileProgram, error) &&
            sym(lib, "nvrtcGetCUBINSize", &n->GetCUBINSize, error) &&
            sym(lib, "nvrtcGetCUBIN", &n->GetCUBIN, error) &&
            sym(lib, "nvrtcGetPTXSize", &n->GetPTXSize, error) &&
            sym(lib, "nvrtcGetPTX", &n->GetPTX, error) &&
            sym(lib, "nvrtcGetProgramLogSize", &n->GetProgramLogSize, error) &&
            sym(lib, "nvrtcGetProgramLog", &n->GetProgramLog, error) &&
            sym(lib, "nvrtcAddNameExpression", &n->AddNameExpression, error) &&
            sym(lib, "nvrtcGetLoweredName", &n->GetLoweredName, error);
  if (!ok) {
    delete n;
    return false;
  }
  int major = 0, minor = 0;
  n->Version(&major, &minor);
  n->version = major * 1000 + minor * 10;
  n->path = path;
  g_nvrtc = n;
  return true;
}

bool nvrtc_loaded() {
  std::lock_guard<std::mutex> lock(g_mu);
  return g_nvrtc != nullptr;
}

int nvrtc_version() {
  std::lock_guard<std::mutex> lock(g_mu);
  return g_nvrtc ? g_nvrtc->version : 0;
}

std::string nvrtc_path() {
  std::lock_guard<std::mutex> lock(g_mu);
  return g_nvrtc ? g_nvrtc->path : "";
}

bool nvrtc_compile(const std::string& source, const std::string& program_name,
                   const std::string& name_expression,
                   const std::vector<std::string>& options, bool want_ptx,
                   NvrtcOutput* out, std::string* error) {
  const Nvrtc* n;
  {
    std::lock_guard<std::mutex> lock(g_mu);
    n = g_nvrtc;
  }
  if (n == nullptr) {
    *error = "NVRTC is not loaded (install the nvidia-cuda-nvrtc wheel or set JAXGEMM_NVRTC_PATH)";
    return false;
  }
  nvrtcProgram prog = nullptr;
  nvrtcResult r = n->CreateProgram(&prog, source.c_str(), program_name.c_str(), 0, nullptr, nullptr);
  if (r != NVRTC_SUCCESS) {
    *error = std::string("nvrtcCreateProgram failed: ") + n->GetErrorString(r);
    return false;
  }
  struct Destroy {
    const Nvrtc* n;
    nvrtcProgram* p;
    ~Destroy() { n->DestroyProgram(p); }
  } destroy{n, &prog};

  if (!name_expression.empty()) n->AddNameExpression(prog, name_expression.c_str());
  std::vector<const char*> opts;
  for (const auto& o : options) opts.push_back(o.c_str());
  r = n->CompileProgram(prog, static_cast<int>(opts.size()), opts.data());
  out->log = program_log(*n, prog);
  if (r != NVRTC_SUCCESS) {
    *error = "NVRTC failed to compile " + program_name + " (" + n->GetErrorString(r) +
             "):\n" + out->log;
    return false;
  }
  size_t size = 0;
  if ((r = n->GetCUBINSize(prog, &size)) != NVRTC_SUCCESS || size == 0) {
    *error = "NVRTC produced no cubin for " + program_name + " (compile for a real sm_ arch)";
    return false;
  }
  out->cubin.assign(size, '\0');
  n->GetCUBIN(prog, out->cubin.data());
  if (want_ptx && n->GetPTXSize(prog, &size) == NVRTC_SUCCESS && size > 0) {
    out->ptx.assign(size, '\0');
    n->GetPTX(prog, out->ptx.data());
    while (!out->ptx.empty() && out->ptx.back() == '\0') out->ptx.pop_back();
  }
  if (!name_expression.empty()) {
    const char* lowered = nullptr;
    if (n->GetLoweredName(prog, name_expression.c_str(), &lowered) != NVRTC_SUCCESS ||
        lowered == nullptr) {
      *error = "NVRTC could not resolve kernel " + name_expression;
      return false;
    }
    out->lowered_name = lowered;
  }
  return true;
}

}  // namespace jaxgemm
