// The nanobind module jaxgemm._jaxgemm_ext: layout rules, FFI registrations,
// and the JIT entry points the Python package and its tests use.
#include <nanobind/nanobind.h>
#include <nanobind/stl/string.h>
#include <nanobind/stl/tuple.h>
#include <nanobind/stl/vector.h>

#include "cuda_driver.h"
#include "handlers.h"
#include "gemm_spec.h"
#include "jit_cache.h"
#include "kernel_state.h"
#include "layout.h"
#include "nvrtc_compiler.h"
#include "smem_plan.h"

namespace nb = nanobind;
namespace L = jaxgemm::layout;

namespace {

nb::capsule fn_capsule(void* fn) { return nb::capsule(fn); }

nb::dict stage_bundle(void* instantiate, void* initialize, void* execute) {
  nb::dict d;
  d["instantiate"] = fn_capsule(instantiate);
  d["initialize"] = fn_capsule(initialize);
  d["execute"] = fn_capsule(execute);
  return d;
}

jaxgemm::GemmSpec spec_from_dict(const nb::dict& a) {
  auto get = [&](const char* k) -> int64_t {
    if (!a.contains(k)) throw nb::key_error(k);
    return nb::cast<int64_t>(a[k]);
  };
  jaxgemm::GemmSpec s;
  s.kernel = nb::cast<std::string>(a["kernel"]);
  s.m = a.contains("m") ? get("m") : 0;
  s.n = get("n");
  s.k = get("k");
  s.block_m = get("block_m");
  s.block_n = get("block_n");
  s.stages = get("stages");
  s.band_n = get("band_n");
  s.out_f32 = get("out_f32") != 0;
  s.accumulate = get("accumulate") != 0;
  s.sb_per_row = get("sb_per_row") != 0;
  s.cluster = a.contains("cluster") ? get("cluster") : 1;
  s.masked = a.contains("masked") && get("masked") != 0;
  s.masked_zero_fill = !(a.contains("masked") && get("masked") == 2);
  s.scales_tma = a.contains("scales_tma") ? static_cast<int>(get("scales_tma")) : 0;
  s.num_sms = get("num_sms");
  s.smem_override = get("smem_override");
  return s;
}

}  // namespace

NB_MODULE(_jaxgemm_ext, m) {
  m.doc() = "jaxgemm native extension: XLA FFI handlers and the NVRTC kernel JIT";

  // ---- layout rules (the single source of truth, see ffi/layout.h) --------
  m.attr("SCALE_BLOCK") = L::kScaleBlock;
  m.attr("TMA_STRIDE_ALIGN_BYTES") = L::kTmaStrideAlignBytes;
  m.attr("TMA_SCALE_ALIGN") = L::kTmaScaleAlign;
  m.attr("BLOCK_K") = L::kBlockK;
  m.attr("MAX_BLOCK_N") = L::kMaxBlockN;
  m.attr("MAX_DYNAMIC_SMEM") = jaxgemm_plan::kMaxDynamicSmem;
  m.attr("K_GROUPED_MAX_BLOCK_M") = jaxgemm_plan::kKGroupedMaxBlockM;
  m.def("num_scale_blocks", &L::num_scale_blocks, nb::arg("k"));
  m.def("contiguous_alignment", &L::contiguous_alignment, nb::arg("itemsize"));
  m.def("tma_scale_a_cols", &L::tma_scale_a_cols, nb::arg("rows"));
  m.def("tma_scale_k_blocks", &L::tma_scale_k_blocks, nb::arg("k"));
  m.def("k_grouped_scale_rows", &L::k_grouped_scale_rows, nb::arg("k_total"),
        nb::arg("groups"));
  m.def(
      "gemm_smem_bytes",
      [](unsigned block_m, unsigned block_n, unsigned stages, unsigned in_bytes,
         unsigned out_bytes, bool sb_per_row, bool add_c, bool a_scale_rows_x4) {
        return jaxgemm_plan::gemm_smem_plan(block_m, block_n, stages, in_bytes, out_bytes,
                                            sb_per_row, add_c, a_scale_rows_x4)
            .total;
      },
      nb::arg("block_m"), nb::arg("block_n"), nb::arg("stages"), nb::arg("in_bytes"),
      nb::arg("out_bytes"), nb::arg("sb_per_row"), nb::arg("add_c") = false,
      nb::arg("a_scale_rows_x4") = false);
  m.def("fits_two_scale_blocks", &jaxgemm_plan::fits_two_scale_blocks, nb::arg("block_n"));

  // ---- XLA FFI ------------------------------------------------------------
  m.def("registrations", []() {
    nb::dict d;
    d["jaxgemm_dense_gemm"] =
        stage_bundle(reinterpret_cast<void*>(JaxgemmInstantiate),
                     reinterpret_cast<void*>(JaxgemmInitialize),
                     reinterpret_cast<void*>(JaxgemmDenseExecute));
    d["jaxgemm_grouped_gemm"] =
        stage_bundle(reinterpret_cast<void*>(JaxgemmInstantiate),
                     reinterpret_cast<void*>(JaxgemmInitialize),
                     reinterpret_cast<void*>(JaxgemmGroupedExecute));
    d["jaxgemm_k_grouped_gemm"] =
        stage_bundle(reinterpret_cast<void*>(JaxgemmInstantiate),
                     reinterpret_cast<void*>(JaxgemmInitialize),
                     reinterpret_cast<void*>(JaxgemmKGroupedExecute));
    d["jaxgemm_k_grouped_pack"] =
        stage_bundle(reinterpret_cast<void*>(JaxgemmInstantiate),
                     reinterpret_cast<void*>(JaxgemmInitialize),
                     reinterpret_cast<void*>(JaxgemmKGroupedPackExecute));
    return d;
  });
  m.def("state_type", []() {
    nb::dict d;
    d["type_id"] = nb::capsule(reinterpret_cast<void*>(&jaxgemm::KernelState::id));
    d["type_info"] = nb::capsule(
        const_cast<void*>(reinterpret_cast<const void*>(jaxgemm::kernel_state_type_info())));
    return d;
  });

  // ---- JIT ----------------------------------------------------------------
  m.def("load_nvrtc", [](const std::string& path) {
    std::string error;
    if (!jaxgemm::nvrtc_load(path, &error)) throw std::runtime_error(error);
  });
  m.def("configure_jit", &jaxgemm::jit_configure, nb::arg("source_dir"), nb::arg("cache_dir"));
  m.def("clear_memory_cache", &jaxgemm::jit_clear_memory_cache);
  m.def("runtime_info", []() {
    nb::dict d;
    auto s = jaxgemm::jit_settings();
    d["nvrtc_loaded"] = jaxgemm::nvrtc_loaded();
    d["nvrtc_version"] = jaxgemm::nvrtc_version();
    d["nvrtc_path"] = jaxgemm::nvrtc_path();
    d["source_dir"] = s.source_dir;
    d["cache_dir"] = s.cache_dir;
    d["cache_enabled"] = s.cache_enabled;
    d["jit_debug"] = s.debug;
    d["ptxas_verbose"] = s.ptxas_verbose;
    d["dump_dir"] = s.dump_dir;
    std::string error;
    const jaxgemm::CudaDriver* drv = jaxgemm::cuda_driver(&error);
    int version = 0;
    if (drv) drv->cuDriverGetVersion(&version);
    d["driver_loaded"] = drv != nullptr;
    d["driver_version"] = version;
    d["driver_error"] = error;
    std::vector<std::string> opts = jaxgemm::jit_base_options();
    d["nvrtc_options"] = opts;
    return d;
  });
  // Compiles (or loads from the cache) a kernel from a dict of the
  // custom call's attributes, without touching a GPU.  Used by the CPU tests
  // and by warm-up tools.
  m.def(
      "compile_kernel",
      [](const nb::dict& attrs, bool want_cubin) {
        jaxgemm::GemmSpec spec = spec_from_dict(attrs);
        std::string error;
        if (!spec.validate(&error)) throw nb::value_error(error.c_str());
        jaxgemm::KernelBinary bin;
        if (!jaxgemm::jit_build(spec.request(), &bin, &error)) throw std::runtime_error(error);
        nb::dict d;
        d["lowered_name"] = bin.lowered_name;
        d["cache_hit"] = bin.cache_hit;
        d["seconds"] = bin.seconds;
        d["log"] = bin.log;
        d["cache_path"] = bin.cache_path;
        d["cubin_size"] = bin.cubin.size();
        d["smem_bytes"] = spec.smem_bytes();
        d["threads"] = spec.threads();
        d["name_expression"] = spec.request().name_expression;
        if (want_cubin) d["cubin"] = nb::bytes(bin.cubin.data(), bin.cubin.size());
        return d;
      },
      nb::arg("attrs"), nb::arg("want_cubin") = false);
}
