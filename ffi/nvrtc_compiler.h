// NVRTC, loaded at run time, compiling one translation unit to an sm_90a cubin.
#pragma once

#include <string>
#include <vector>

namespace jaxgemm {

// Loads libnvrtc from `path` (Python finds it and preloads its builtins
// library).  Returns false with `*error` set on failure.  Idempotent for the
// same path.
bool nvrtc_load(const std::string& path, std::string* error);
bool nvrtc_loaded();
// NVRTC version as major*1000 + minor*10 (e.g. 13050), or 0 if not loaded.
int nvrtc_version();
std::string nvrtc_path();

struct NvrtcOutput {
  std::string cubin;
  std::string ptx;           // only when asked for (debug dumps)
  std::string log;           // compiler log (ptxas -v lands here too)
  std::string lowered_name;  // mangled name of `name_expression`
};

// Compiles `source` with `options`; on failure returns false and puts the
// NVRTC error and the full compiler log in `*error`.
bool nvrtc_compile(const std::string& source, const std::string& program_name,
                   const std::string& name_expression,
                   const std::vector<std::string>& options, bool want_ptx,
                   NvrtcOutput* out, std::string* error);

}  // namespace jaxgemm
