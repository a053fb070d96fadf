#include "jit_cache.h"

#include <dirent.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <map>
#include <memory>
#include <mutex>
#include <random>
#include <sstream>

#include "nvrtc_compiler.h"

namespace jaxgemm {
namespace {

std::mutex g_mu;
JitSettings g_settings;
std::map<std::string, std::string> g_header_digest;  // source_dir -> digest
std::map<std::string, std::shared_ptr<KernelBinary>> g_memory;  // key -> binary

bool env_flag(const char* name) {
  const char* v = std::getenv(name);
  return v != nullptr && *v != '\0' && std::string(v) != "0";
}

// 128-bit FNV-1a (two 64-bit lanes with different offsets); a cache key, not
// a security boundary.
struct Hasher {
  uint64_t a = 0xcbf29ce484222325ull, b = 0x84222325cbf29ce4ull;
  void add(const std::string& s) {
    for (unsigned char c : s) {
      a = (a ^ c) * 0x100000001b3ull;
      b = (b ^ c) * 0x100000001b3ull;
      b ^= b >> 29;
    }
    a ^= s.size();
    a *= 0x100000001b3ull;
  }
  std::string hex() const {
    char buf[33];
    std::snprintf(buf, sizeof buf, "%016llx%016llx", static_cast<unsigned long long>(a),
                  static_cast<unsigned long long>(b));
    return buf;
  }
};

bool read_file(const std::string& path, std::string* out) {
  std::ifstream f(path, std::ios::binary);
  if (!f) return false;
  std::ostringstream ss;
  ss << f.rdbuf();
  *out = ss.str();
  return true;
}

bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

// Digest of every kernel header, so that editing any header invalidates the
// cache.  Computed once per process and source folder.
std::string header_digest(const std::string& dir) {
  auto it = g_header_digest.find(dir);
  if (it != g_header_digest.end()) return it->second;
  std::vector<std::string> names;
  if (DIR* d = opendir(dir.c_str())) {
    while (dirent* e = readdir(d)) {
      std::string n = e->d_name;
      if (ends_with(n, ".cuh") || ends_with(n, ".h") || ends_with(n, ".cu")) names.push_back(n);
    }
    closedir(d);
  }
  std::sort(names.begin(), names.end());
  Hasher h;
  for (const auto& n : names) {
    std::string content;
    read_file(dir + "/" + n, &content);
    h.add(n);
    h.add(content);
  }
  return g_header_digest[dir] = h.hex();
}

bool make_dirs(const std::string& path) {
  std::string cur;
  std::stringstream ss(path);
  std::string part;
  if (!path.empty() && path[0] == '/') cur = "/";
  while (std::getline(ss, part, '/')) {
    if (part.empty()) continue;
    cur += part + "/";
    if (mkdir(cur.c_str(), 0755) != 0 && errno != EEXIST) return false;
  }
  return true;
}

// Write to a unique temporary file in the same folder, then rename: readers
// see the old state or the whole new file, never part of it.
bool atomic_write(const std::string& path, const std::string& data) {
  static std::mt19937_64 rng(std::random_device{}());
  std::string tmp = path + ".tmp." + std::to_string(getpid()) + "." + std::to_string(rng());
  {
    std::ofstream f(tmp, std::ios::binary);
    if (!f) return false;
    f.write(data.data(), static_cast<std::streamsize>(data.size()));
    if (!f) return false;
  }
  if (std::rename(tmp.c_str(), path.c_str()) != 0) {
    std::remove(tmp.c_str());
    return false;
  }
  return true;
}

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

}  // namespace

void jit_configure(const std::string& source_dir, const std::string& cache_dir) {
  std::lock_guard<std::mutex> lock(g_mu);
  g_settings.source_dir = source_dir;
  g_settings.cache_dir = cache_dir;
  g_settings.cache_enabled = !env_flag("JAXGEMM_DISABLE_CACHE");
  g_settings.debug = env_flag("JAXGEMM_JIT_DEBUG");
  g_settings.ptxas_verbose = env_flag("JAXGEMM_PTXAS_VERBOSE");
  const char* dump = std::getenv("JAXGEMM_DUMP_DIR");
  g_settings.dump_dir = dump ? dump : "";
  g_header_digest.clear();
}

void jit_clear_memory_cache() {
  std::lock_guard<std::mutex> lock(g_mu);
  g_memory.clear();
}

JitSettings jit_settings() {
  std::lock_guard<std::mutex> lock(g_mu);
  return g_settings;
}

std::vector<std::string> jit_base_options() {
  // sm_90a: wgmma and setmaxnreg exist only on the arch-specific target.
  // A real arch makes NVRTC emit a cubin, which the driver loads even when
  // NVRTC is newer than the driver (PTX of a newer ISA would be refused).
  return {"-std=c++17", "-arch=sm_90a", "-DNDEBUG", "-lineinfo", "--fmad=true"};
}

bool jit_build(const KernelRequest& req, KernelBinary* out, std::string* error) {
  JitSettings s = jit_settings();
  if (s.source_dir.empty()) {
    *error = "jaxgemm JIT: kernel source folder not configured";
    return false;
  }
  if (!nvrtc_loaded()) {
    *error = "jaxgemm JIT: NVRTC not found. Install the nvidia-cuda-nvrtc wheel "
             "(pip install 'jaxgemm[cuda]') or point JAXGEMM_NVRTC_PATH at libnvrtc.so";
    return false;
  }
  std::vector<std::string> options = jit_base_options();
  options.push_back("--include-path=" + s.source_dir);
  for (const auto& o : req.extra_options) options.push_back(o);
  if (s.ptxas_verbose) options.push_back("--ptxas-options=-v");

  Hasher h;
  h.add(req.source);
  h.add(req.name_expression);
  {
    std::lock_guard<std::mutex> lock(g_mu);
    h.add(header_digest(s.source_dir));
  }
  for (const auto& o : options) {
    // The include path differs between installs of the same sources.
    if (o.rfind("--include-path=", 0) != 0) h.add(o);
  }
  h.add(std::to_string(nvrtc_version()));
  const std::string key = h.hex();

  {
    std::lock_guard<std::mutex> lock(g_mu);
    auto it = g_memory.find(key);
    if (it != g_memory.end()) {
      *out = *it->second;
      out->cache_hit = true;
      return true;
    }
  }

  const auto t0 = std::chrono::steady_clock::now();
  const std::string folder = s.cache_dir + "/" + req.name;
  const std::string cubin_path = folder + "/" + key + ".cubin";
  const std::string name_path = folder + "/" + key + ".name";
  KernelBinary bin;
  bin.key = key;
  if (s.cache_enabled && read_file(name_path, &bin.lowered_name) &&
      read_file(cubin_path, &bin.cubin) && !bin.cubin.empty() && !bin.lowered_name.empty()) {
    bin.cache_hit = true;
    bin.cache_path = cubin_path;
    bin.seconds = seconds_since(t0);
    if (s.debug)
      std::fprintf(stderr, "[jaxgemm jit] %s: disk cache hit %s (%.2f ms)\n", req.name.c_str(),
                   cubin_path.c_str(), bin.seconds * 1e3);
  } else {
    if (s.debug) {
      std::string cmd;
      for (const auto& o : options) cmd += " " + o;
      std::fprintf(stderr, "[jaxgemm jit] %s: nvrtc%s  // %s\n", req.name.c_str(), cmd.c_str(),
                   req.name_expression.c_str());
    }
    NvrtcOutput nv;
    const bool want_ptx = !s.dump_dir.empty();
    if (!nvrtc_compile(req.source, req.name + ".cu", req.name_expression, options, want_ptx, &nv,
                       error)) {
      *error += "\n--- generated source ---\n" + req.source;
      return false;
    }
    bin.cubin = std::move(nv.cubin);
    bin.lowered_name = std::move(nv.lowered_name);
    bin.log = std::move(nv.log);
    bin.seconds = seconds_since(t0);
    if (s.debug || s.ptxas_verbose)
      std::fprintf(stderr, "[jaxgemm jit] %s: compiled in %.3f s%s%s\n", req.name.c_str(),
                   bin.seconds, bin.log.empty() ? "" : "\n", bin.log.c_str());
    if (s.cache_enabled && make_dirs(folder)) {
      // The name file first: a cubin on disk implies its name is there too.
      if (atomic_write(name_path, bin.lowered_name) && atomic_write(cubin_path, bin.cubin))
        bin.cache_path = cubin_path;
    }
    if (!s.dump_dir.empty() && make_dirs(s.dump_dir)) {
      const std::string base = s.dump_dir + "/" + req.name + "_" + key;
      atomic_write(base + ".cu", req.source);
      atomic_write(base + ".cubin", bin.cubin);
      if (!nv.ptx.empty()) atomic_write(base + ".ptx", nv.ptx);
      if (!bin.log.empty()) atomic_write(base + ".log", bin.log);
    }
  }
  {
    std::lock_guard<std::mutex> lock(g_mu);
    g_memory[key] = std::make_shared<KernelBinary>(bin);
  }
  *out = std::move(bin);
  return true;
}

}  // namespace jaxgemm
