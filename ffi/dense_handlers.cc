// Execute handler of jaxgemm_dense_gemm (FP8 and BF16 NT GEMMs, optional C):
// encode the TMA descriptors of this call's buffers and launch on XLA's
// stream, nothing else (command-buffer compatible).
#include <algorithm>
#include <cstring>

#include "handler_common.h"
#include "handlers.h"
#include "layout.h"
#include "smem_plan.h"
#include "tma_desc.h"

namespace ffi = xla::ffi;

namespace jaxgemm {
namespace {

// Operands: fp8: a, sa, b, sb[, c]; bf16: a, b[, c].  `c` [M, N] FP32, when
// present, is read by the kernel (not aliased to D): D = C + A @ B^T.
ffi::Error DenseExecute(CUstream stream, KernelState* state, ffi::RemainingArgs args,
                        ffi::Result<ffi::AnyBuffer> d) {
  const GemmSpec& spec = state->spec;
  std::string error;
  const CudaDriver* drv = cuda_driver(&error);
  if (drv == nullptr) return internal(error, spec);
  const bool fp8 = spec.is_fp8();
  const size_t num_required = fp8 ? 4 : 2;
  if (args.size() < num_required) return internal("too few operands", spec);
  auto a = args.get<ffi::AnyBuffer>(0).value();
  const int64_t m = a.dimensions().size() == 2 ? a.dimensions()[0] : -1;
  const auto in_type = fp8 ? ffi::DataType::F8E4M3FN : ffi::DataType::BF16;
  const auto out_type = spec.out_f32 ? ffi::DataType::F32 : ffi::DataType::BF16;
  if (auto e = check_dims("a", a, in_type, {m, spec.k}, spec); e.failure()) return e;
  auto b = args.get<ffi::AnyBuffer>(fp8 ? 2 : 1).value();
  if (auto e = check_dims("b", b, in_type, {spec.n, spec.k}, spec); e.failure()) return e;
  if (auto e = check_dims("d", *d, out_type, {m, spec.n}, spec); e.failure()) return e;
  if (spec.accumulate && args.size() != num_required + 1) return internal("c is missing", spec);
  if (m == 0) return ffi::Error::Success();

  const int64_t units = layout::ceil_div(m, spec.block_m) *
                        layout::ceil_div(layout::ceil_div(spec.n, spec.block_n), spec.cluster);
  unsigned grid = 0;
  if (!persistent_grid(state, units, &grid, &error)) return internal(error, spec);

  const auto in_dtype = fp8 ? CU_TENSOR_MAP_DATA_TYPE_UINT8 : CU_TENSOR_MAP_DATA_TYPE_BFLOAT16;
  const uint32_t box_k = static_cast<uint32_t>(128 / spec.in_bytes());  // one 128-byte row
  CUtensorMap tm_a, tm_b, tm_d, tm_c, tm_sb;
  std::memset(&tm_sb, 0, sizeof tm_sb);
  const uint32_t slab_cols = spec.smem_plan().slab_cols;
  bool ok =
      make_tma_2d(*drv, &tm_a, in_dtype, a.untyped_data(), spec.k, m, spec.k * spec.in_bytes(),
                  box_k, spec.block_m / spec.cluster, CU_TENSOR_MAP_SWIZZLE_128B, &error) &&
      make_tma_2d(*drv, &tm_b, in_dtype, b.untyped_data(), spec.k, spec.n,
                  spec.k * spec.in_bytes(), box_k, spec.block_n, CU_TENSOR_MAP_SWIZZLE_128B,
                  &error) &&
      make_output_slab_desc(*drv, &tm_d, spec.out_f32, d->untyped_data(), spec.n, m, 0, slab_cols,
                            &error);
  if (!ok) return internal(error, spec);
  // C: the same boxes as D (its slabs are loaded where D's are staged);
  // without C the kernel never reads tm_c.
  tm_c = tm_d;
  if (spec.accumulate) {
    auto c = args.get<ffi::AnyBuffer>(num_required).value();
    if (auto e = check_dims("c", c, ffi::DataType::F32, {m, spec.n}, spec); e.failure()) return e;
    if (!make_output_slab_desc(*drv, &tm_c, true, c.untyped_data(), spec.n, m, 0, slab_cols,
                               &error))
      return internal(error, spec);
  }

  uint32_t m32 = static_cast<uint32_t>(m);
  if (fp8) {
    auto sa = args.get<ffi::AnyBuffer>(1).value();
    auto sb = args.get<ffi::AnyBuffer>(3).value();
    const int64_t kb = layout::num_scale_blocks(spec.k);
    if (!spec.scales_tma) {
      if (auto e = check_dims("a.scale", sa, ffi::DataType::F32, {m, kb}, spec); e.failure())
        return e;
    }
    CUtensorMap tm_sa, tm_sbb;
    if (auto e = scale_descriptors(spec, sa, sb, m, layout::num_scale_blocks(spec.n), &tm_sa,
                                   &tm_sbb);
        e.failure())
      return e;
    if (spec.sb_per_row) {
      // Per-row B scales arrive transposed, [ceil(K/128), N], so that one TMA
      // box per stage brings a tile's column scales.
      if (auto e = check_dims("b.scale (transposed)", sb, ffi::DataType::F32, {kb, spec.n}, spec);
          e.failure())
        return e;
      if (!make_tma_2d(*drv, &tm_sb, CU_TENSOR_MAP_DATA_TYPE_FLOAT32, sb.untyped_data(), spec.n,
                       kb, spec.n * 4, spec.block_n, 1, CU_TENSOR_MAP_SWIZZLE_NONE, &error))
        return internal(error, spec);
    } else if (!spec.scales_tma) {
      if (auto e = check_dims("b.scale", sb, ffi::DataType::F32,
                              {layout::num_scale_blocks(spec.n), kb}, spec);
          e.failure())
        return e;
    }
    const float* sa_ptr = static_cast<const float*>(sa.untyped_data());
    const float* sb_ptr = static_cast<const float*>(sb.untyped_data());
    void* params[] = {&tm_a, &tm_b, &tm_d, &tm_c, &tm_sb, &tm_sa, &tm_sbb, &sa_ptr, &sb_ptr, &m32};
    if (!state->kernel.launch(stream, grid, params, &error)) return internal(error, spec);
  } else {
    void* params[] = {&tm_a, &tm_b, &tm_d, &tm_c, &m32};
    if (!state->kernel.launch(stream, grid, params, &error)) return internal(error, spec);
  }
  return ffi::Error::Success();
}

}  // namespace
}  // namespace jaxgemm

XLA_FFI_DEFINE_HANDLER_SYMBOL(JaxgemmDenseExecute, jaxgemm::DenseExecute,
                              ffi::Ffi::Bind()
                                  .Ctx<ffi::PlatformStream<CUstream>>()
                                  .Ctx<ffi::State<jaxgemm::KernelState>>()
                                  .RemainingArgs()
                                  .Ret<ffi::AnyBuffer>(),
                              {ffi::Traits::kCmdBufferCompatible});
