// The kernel JIT: NVRTC compilation of generated translation units, with an
// in-process and an on-disk cache.
//
// Cache key: the generated source, the content of every header in the kernel
// source folder, the compile options, the NVRTC version and the arch.  Files
// are written to a temporary name and renamed, so several processes compiling
// the same kernel at once never see a torn file.
#pragma once

#include <string>
#include <vector>

namespace jaxgemm {

struct JitSettings {
  std::string source_dir;  // src_cuda/ (kernel headers)
  std::string cache_dir;   // default ~/.cache/jaxgemm, JAXGEMM_CACHE_DIR
  bool cache_enabled = true;   // JAXGEMM_DISABLE_CACHE=1 turns it off
  bool debug = false;          // JAXGEMM_JIT_DEBUG=1: compile commands, times, hits
  bool ptxas_verbose = false;  // JAXGEMM_PTXAS_VERBOSE=1: ptxas -v into the log
  std::string dump_dir;        // JAXGEMM_DUMP_DIR: source, ptx, cubin of each build
};

// Called once by the Python package at import (reads the env vars above).
void jit_configure(const std::string& source_dir, const std::string& cache_dir);
JitSettings jit_settings();

struct KernelRequest {
  std::string name;             // kernel family, e.g. "fp8_gemm_nt" (also the cache subfolder)
  std::string source;           // the generated translation unit
  std::string name_expression;  // e.g. "&fp8_gemm_nt_kernel<2112, 7168, ...>"
  std::vector<std::string> extra_options;
};

struct KernelBinary {
  std::string cubin;
  std::string lowered_name;
  std::string cache_path;  // empty when the cache is off
  std::string log;         // NVRTC/ptxas log of a fresh compile
  std::string key;
  bool cache_hit = false;  // loaded from disk or memory rather than compiled
  double seconds = 0;      // compile time, or disk load time on a hit
};

// Compiles or loads `req`.  Thread-safe.
bool jit_build(const KernelRequest& req, KernelBinary* out, std::string* error);

// Forgets the in-process cache (the disk cache stays): benchmarks use it to
// time loads from disk.
void jit_clear_memory_cache();

// The NVRTC options every kernel is compiled with (for the record / tests).
std::vector<std::string> jit_base_options();

}  // namespace jaxgemm
