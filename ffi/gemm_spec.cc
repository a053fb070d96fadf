#include "gemm_spec.h"

#include <sstream>

#include "layout.h"
#include "smem_plan.h"

namespace jaxgemm {

GemmSpec GemmSpec::from_attrs(const GemmAttrs& a) {
  GemmSpec s;
  s.kernel = std::string(a.kernel);
  s.m = a.m;
  s.n = a.n;
  s.k = a.k;
  s.block_m = a.block_m;
  s.block_n = a.block_n;
  s.stages = a.stages;
  s.band_n = a.band_n;
  s.out_f32 = a.out_f32 != 0;
  s.accumulate = a.accumulate != 0;
  s.sb_per_row = a.sb_per_row != 0;
  s.cluster = a.cluster;
  s.masked = a.masked != 0;
  s.masked_zero_fill = a.masked != 2;
  s.scales_tma = static_cast<int>(a.scales_tma);
  s.num_sms = a.num_sms;
  s.smem_override = a.smem_override;
  return s;
}

unsigned GemmSpec::threads() const {
  if (is_pack()) return 256;
  return jaxgemm_plan::gemm_threads(static_cast<unsigned>(block_m));
}

jaxgemm_plan::GemmSmemPlan GemmSpec::smem_plan() const {
  return jaxgemm_plan::gemm_smem_plan(static_cast<unsigned>(block_m),
                                      static_cast<unsigned>(block_n),
                                      static_cast<unsigned>(stages),
                                      static_cast<unsigned>(in_bytes()),
                                      static_cast<unsigned>(out_bytes()), sb_per_row,
                                      adds_c(), scales_tma == 2);
}

unsigned GemmSpec::smem_bytes() const {
  if (smem_override > 0) return static_cast<unsigned>(smem_override);
  if (is_pack()) return 0;  // static shared memory only
  return smem_plan().total;
}

bool GemmSpec::validate(std::string* error) const {
  std::ostringstream e;
  if (kernel != "fp8_gemm_nt" && kernel != "bf16_gemm_nt" && kernel != "bf16_gemm_nt_pingpong" &&
      kernel != "m_grouped_fp8_gemm_nt" &&
      kernel != "m_grouped_bf16_gemm_nt" && kernel != "k_grouped_fp8_gemm" &&
      kernel != "k_grouped_bf16_gemm" && kernel != "k_grouped_pack_fp8" &&
      kernel != "k_grouped_pack_bf16")
    e << "unknown kernel '" << kernel << "'";
  else if (kernel == "bf16_gemm_nt_pingpong" && (block_m != 128 || block_n > 128 || cluster > 2))
    e << "the ping-pong BF16 kernel takes 128-row tiles of at most 128 columns, cluster 1 or 2";
  else if (is_pack() && (m <= 0 || n < m || k <= 0 || k % 128))
    e << "k-grouped pack needs 0 < m <= n and k a positive multiple of 128";
  else if (is_pack())
    ;  // none of the GEMM rules below apply
  else if (is_k_grouped() && (!out_f32 || sb_per_row != is_fp8() || cluster > 2 || m <= 0 ||
                              k % 128))
    e << "k-grouped GEMMs are FP32 out, per-row scales (FP8), clusters of at most 2, m > 0, "
         "k a multiple of 128";
  else if (masked && !is_grouped())
    e << "only m-grouped GEMMs have a masked layout";
  else if (is_grouped() && (accumulate || sb_per_row || cluster > 2))
    e << "m-grouped GEMMs take no C, per-block B scales only, clusters of at most 2";
  else if (n <= 0 || k <= 0)
    e << "n and k must be positive (got n=" << n << ", k=" << k << ")";
  else if (k % layout::contiguous_alignment(in_bytes()) != 0)
    e << "k=" << k << " must be a multiple of " << layout::contiguous_alignment(in_bytes());
  else if (n % layout::contiguous_alignment(out_bytes()) != 0)
    e << "n=" << n << " must be a multiple of " << layout::contiguous_alignment(out_bytes());
  else if (block_m != 64 && block_m != 128 && block_m != 256 &&
           !(block_m == 192 && kernel == "fp8_gemm_nt" && block_n <= 128 && cluster == 1 &&
             !accumulate && !sb_per_row))
    e << "block_m must be 64, 128 or 256 (192: dense FP8 with per-block B scales and no C, "
         "block_n <= 128, cluster 1)";
  else if (cluster != 1 && cluster != 2 && cluster != 4)
    e << "cluster must be 1, 2 or 4";
  else if ((block_m / cluster) % 8 != 0)
    e << "block_m / cluster must be a multiple of 8 (the multicast slice)";
  else if (stages < 1 || band_n < 1)
    e << "stages and band_n must be positive";
  else if (accumulate && !out_f32)
    e << "accumulation into C needs FP32 output";
  else if (is_k_grouped() && block_m > static_cast<int64_t>(jaxgemm_plan::kKGroupedMaxBlockM))
    e << "k-grouped GEMMs need block_m <= " << jaxgemm_plan::kKGroupedMaxBlockM;
  else if (sb_per_row && !is_fp8())
    e << "per-row B scales exist only for FP8";
  else if (scales_tma < 0 || scales_tma > 2)
    e << "scales_tma must be 0, 1 or 2";
  else if (scales_tma && (!is_fp8() || is_k_grouped() || is_pack()))
    e << "scales by TMA exist only for the FP8 dense and m-grouped GEMMs";
  else if (scales_tma == 1 && is_grouped())
    e << "the m-grouped GEMMs take their scales by TMA as row boxes only (scales_tma 2)";
  if (e.str().empty()) return true;
  *error = "invalid GEMM config (" + describe() + "): " + e.str();
  return false;
}

KernelRequest GemmSpec::request() const {
  std::ostringstream args;
  if (is_pack()) {
    args << in_bytes() << ", " << m << ", " << n << ", " << k / 128;
    KernelRequest r;
    r.name = kernel;
    r.name_expression = "&jaxgemm::k_grouped_pack_kernel<" + args.str() + ">";
    r.source = "#include \"k_grouped_pack.cuh\"\n";
    return r;
  }
  if (is_k_grouped()) {
    args << m << ", " << n << ", " << block_m << ", " << block_n << ", " << stages << ", "
         << (accumulate ? "true" : "false") << ", " << band_n << ", " << cluster;
    KernelRequest r;
    r.name = kernel;
    r.name_expression = "&jaxgemm::" + kernel + "_kernel<" + args.str() + ">";
    r.source = "#define JAXGEMM_ONLY_WGMMA_N " + std::to_string(block_n) + "\n#include \"" +
               kernel + ".cuh\"\n";
    return r;
  }
  args << n << ", " << k << ", " << block_m << ", " << block_n << ", " << stages << ", "
       << (out_f32 ? "true" : "false") << ", ";
  if (!is_grouped()) args << (accumulate ? "true" : "false") << ", ";
  if (is_grouped()) {
    args << (masked ? "true" : "false") << ", ";
    if (is_fp8()) args << scales_tma << ", ";
  } else if (is_fp8())
    args << (sb_per_row ? "true" : "false") << ", " << scales_tma << ", ";
  args << band_n << ", " << cluster;
  KernelRequest r;
  r.name = kernel;
  r.name_expression = "&jaxgemm::" + kernel + "_kernel<" + args.str() + ">";
  // A tiny translation unit per instance: include the kernel, name the one
  // template instance (NVRTC instantiates it through the name expression).
  r.source = "#define JAXGEMM_ONLY_WGMMA_N " + std::to_string(block_n) + "\n" +
             (masked && !masked_zero_fill ? "#define JAXGEMM_MASKED_SKIP_ZERO_ROWS 1\n" : "") +
             "#include \"" + kernel + ".cuh\"\n";
  return r;
}

std::string GemmSpec::describe() const {
  std::ostringstream s;
  s << kernel << (m ? " m=" + std::to_string(m) : std::string()) << " n=" << n << " k=" << k << " block=" << block_m << "x" << block_n
    << " stages=" << stages << " band_n=" << band_n << " cluster=" << cluster << " out=" << (out_f32 ? "f32" : "bf16")
    << (accumulate ? " +C" : "") << (sb_per_row ? " sb=per-row" : "")
    << (scales_tma == 1 ? " scales=tma" : scales_tma == 2 ? " scales=tma-rows" : "")
    << (is_grouped() ? (masked ? (masked_zero_fill ? " masked" : " masked(no zero rows)")
                               : " contiguous")
                     : "");
  return s.str();
}

}  // namespace jaxgemm
