// Static description of one JIT-compiled GEMM kernel instance: what the
// Python side passes as custom-call attributes, and how it becomes a
// translation unit for NVRTC.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "jit_cache.h"
#include "smem_plan.h"

namespace jaxgemm {

// Attributes of every GEMM custom call (all i64 except `kernel`).  The
// Python side (jaxgemm/_kernels.py) passes exactly these names.
struct GemmAttrs {
  std::string_view kernel;  // {fp8,bf16}_gemm_nt, m_grouped_{fp8,bf16}_gemm_nt, k_grouped_{fp8,bf16}_gemm,
                            // k_grouped_pack_{fp8,bf16}
  int64_t m, n, k;          // compile-time problem shape (m: k-grouped only; else M is a run-time value)
  int64_t block_m, block_n, stages, band_n;
  int64_t out_f32, accumulate, sb_per_row;
  int64_t cluster;          // CTAs per cluster sharing the A tile by TMA multicast (1, 2, 4)
  int64_t masked;           // m-grouped: 0 = contiguous; masked layout: 1 = rows past
                            // masked_m zeroed, 2 = left untouched
  int64_t scales_tma;       // FP8 dense and m-grouped: 0 = the cp.async scale loader;
                            // scales by TMA (layout.h) from 1 = transposed A scales
                            // (dense only), 2 = row boxes
  int64_t num_sms;          // grid cap; 0 = every SM of the device
  int64_t smem_override;    // tests only: launch with this much dynamic smem (0 = planned)
};

struct GemmSpec {
  std::string kernel;
  int64_t m = 0, n = 0, k = 0, block_m = 0, block_n = 0, stages = 0, band_n = 0, cluster = 1;
  bool masked = false;
  bool masked_zero_fill = true;  // masked only: store zeros past masked_m
  bool out_f32 = false, accumulate = false, sb_per_row = false;
  int scales_tma = 0;  // 0 cp.async loader, 1 TMA from transposed A scales, 2 TMA row boxes
  int64_t num_sms = 0, smem_override = 0;

  static GemmSpec from_attrs(const GemmAttrs& a);
  bool is_fp8() const { return kernel.find("bf16") == std::string::npos; }
  bool is_grouped() const { return kernel.rfind("m_grouped_", 0) == 0; }
  bool is_k_grouped() const { return kernel.rfind("k_grouped_", 0) == 0 && !is_pack(); }
  // The k-grouped operand packer (src_cuda/k_grouped_pack.cuh): m = X (columns
  // of the token-major input), n = X padded, k = R*128 (padded tokens).
  bool is_pack() const { return kernel.rfind("k_grouped_pack_", 0) == 0; }
  int64_t in_bytes() const { return is_fp8() ? 1 : 2; }
  int64_t out_bytes() const { return out_f32 ? 4 : 2; }
  // A GEMM with C (dense or k-grouped) reads C itself (src_cuda/add_c_store.cuh).
  bool adds_c() const { return accumulate && !is_grouped() && !is_pack(); }
  unsigned threads() const;
  unsigned smem_bytes() const;  // from src_cuda/smem_plan.h
  // The kernel's shared-memory plan (src_cuda/smem_plan.h), from the same
  // arguments the kernel template passes; its slab_cols sets the output
  // descriptors' boxes.
  jaxgemm_plan::GemmSmemPlan smem_plan() const;
  // Rejects specs the kernels cannot run (unknown kernel, bad block sizes).
  bool validate(std::string* error) const;
  KernelRequest request() const;
  std::string describe() const;
};

}  // namespace jaxgemm
