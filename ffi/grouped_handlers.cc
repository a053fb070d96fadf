// Execute handlers of jaxgemm_grouped_gemm (m-grouped FP8, contiguous or
// masked) and jaxgemm_k_grouped_gemm (k-grouped FP8 weight gradient).  The
// group sizes stay on the device: the kernels read them; the host only
// bounds the number of tiles to size the persistent grid.
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

// m-grouped: FP8 a, sa, b, sb, sizes -> d, or BF16 a, b, sizes -> d.  A is
// [M, K] (contiguous) or [G, M_max, K] (masked); the kernel reads the group
// sizes on the device.
ffi::Error GroupedExecute(CUstream stream, KernelState* state, ffi::RemainingArgs args,
                          ffi::Result<ffi::AnyBuffer> d) {
  const GemmSpec& spec = state->spec;
  std::string error;
  const CudaDriver* drv = cuda_driver(&error);
  if (drv == nullptr) return internal(error, spec);
  const bool fp8 = spec.is_fp8();
  if (args.size() != (fp8 ? 5u : 3u))
    return internal(fp8 ? "expected a, sa, b, sb, group sizes" : "expected a, b, group sizes", spec);
  auto a = args.get<ffi::AnyBuffer>(0).value();
  auto b = args.get<ffi::AnyBuffer>(fp8 ? 2 : 1).value();
  auto sizes = args.get<ffi::AnyBuffer>(fp8 ? 4 : 2).value();
  const int64_t groups = b.dimensions().size() == 3 ? b.dimensions()[0] : -1;
  const auto ad = a.dimensions();
  const int64_t rows = spec.masked ? (ad.size() == 3 ? ad[0] * ad[1] : -1)
                                   : (ad.size() == 2 ? ad[0] : -1);
  const int64_t m = spec.masked ? (ad.size() == 3 ? ad[1] : -1) : rows;
  const int64_t kb = layout::num_scale_blocks(spec.k);
  const auto in_type = fp8 ? ffi::DataType::F8E4M3FN : ffi::DataType::BF16;
  const auto out_type = spec.out_f32 ? ffi::DataType::F32 : ffi::DataType::BF16;
  if (spec.masked) {
    if (auto e = check_dims("a", a, in_type, {groups, m, spec.k}, spec); e.failure()) return e;
    if (auto e = check_dims("d", *d, out_type, {groups, m, spec.n}, spec); e.failure()) return e;
  } else {
    if (auto e = check_dims("a", a, in_type, {rows, spec.k}, spec); e.failure()) return e;
    if (auto e = check_dims("d", *d, out_type, {rows, spec.n}, spec); e.failure()) return e;
  }
  if (auto e = check_dims("b", b, in_type, {groups, spec.n, spec.k}, spec); e.failure()) return e;
  const void* sa_ptr = nullptr;
  const void* sb_ptr = nullptr;
  // Scales by TMA (row boxes): sa [rows, K blocks padded to 4] (masked: the
  // groups' rows flattened) and sb [G * ceil(N/128), K blocks padded to 4];
  // scale_descriptors checks those shapes.
  CUtensorMap tm_sa{}, tm_sbb{};
  if (fp8 && spec.scales_tma) {
    auto sa = args.get<ffi::AnyBuffer>(1).value();
    auto sb = args.get<ffi::AnyBuffer>(3).value();
    if (auto e = scale_descriptors(spec, sa, sb, rows,
                                   groups * layout::num_scale_blocks(spec.n), &tm_sa, &tm_sbb);
        e.failure())
      return e;
    sa_ptr = sa.untyped_data();
    sb_ptr = sb.untyped_data();
  } else if (fp8) {
    auto sa = args.get<ffi::AnyBuffer>(1).value();
    auto sb = args.get<ffi::AnyBuffer>(3).value();
    if (auto e = check_dims("a.scale", sa, ffi::DataType::F32,
                            spec.masked ? std::initializer_list<int64_t>{groups, m, kb}
                                        : std::initializer_list<int64_t>{rows, kb},
                            spec);
        e.failure())
      return e;
    if (auto e = check_dims("b.scale", sb, ffi::DataType::F32,
                            {groups, layout::num_scale_blocks(spec.n), kb}, spec);
        e.failure())
      return e;
    sa_ptr = sa.untyped_data();
    sb_ptr = sb.untyped_data();
  }
  if (auto e = check_dims("group sizes", sizes, ffi::DataType::S32, {groups}, spec); e.failure()) return e;
  if (rows <= 0) return ffi::Error::Success();

  // Units are only known on the device; bound them: every segment adds at
  // most one partial row tile.
  const int64_t segments = spec.masked ? 2 * groups : groups + 1;
  const int64_t units = (layout::ceil_div(rows, spec.block_m) + segments) *
                        layout::ceil_div(layout::ceil_div(spec.n, spec.block_n), spec.cluster);
  unsigned grid = 0;
  if (!persistent_grid(state, units, &grid, &error)) return internal(error, spec);

  const auto dtype = fp8 ? CU_TENSOR_MAP_DATA_TYPE_UINT8 : CU_TENSOR_MAP_DATA_TYPE_BFLOAT16;
  const int64_t row_bytes = spec.k * spec.in_bytes();
  const uint32_t box_k = static_cast<uint32_t>(128 / spec.in_bytes());  // one 128-byte row
  CUtensorMap tm_a, tm_b;
  bool ok = make_tma_2d(*drv, &tm_a, dtype, a.untyped_data(), spec.k, rows, row_bytes, box_k,
                        spec.block_m / spec.cluster, CU_TENSOR_MAP_SWIZZLE_128B, &error) &&
            make_tma_2d(*drv, &tm_b, dtype, b.untyped_data(), spec.k, groups * spec.n, row_bytes,
                        box_k, spec.block_n, CU_TENSOR_MAP_SWIZZLE_128B, &error);
  // D as [rows, N] for the FP8 kernels' TMA stores of whole tiles (masked:
  // the groups' M_max rows flattened); the same slab boxes as the dense D.
  CUtensorMap tm_d{};
  if (ok && fp8) {
    ok = make_output_slab_desc(*drv, &tm_d, spec.out_f32, d->untyped_data(), spec.n, rows, 0,
                               spec.smem_plan().slab_cols, &error);
  }
  if (!ok) return internal(error, spec);
  const void* sizes_ptr = sizes.untyped_data();
  void* d_ptr = d->untyped_data();
  uint32_t m32 = static_cast<uint32_t>(m), g32 = static_cast<uint32_t>(groups);
  void* fp8_params[] = {&tm_a,   &tm_b,   &tm_sa,     &tm_sbb, &tm_d,
                        &sa_ptr, &sb_ptr, &sizes_ptr, &d_ptr,  &m32, &g32};
  void* bf16_params[] = {&tm_a, &tm_b, &sizes_ptr, &d_ptr, &m32, &g32};
  if (!state->kernel.launch(stream, grid, fp8 ? fp8_params : bf16_params, &error))
    return internal(error, spec);
  return ffi::Error::Success();
}

// k-grouped: FP8 a [M, Kpad], sa [R, M padded to 4], b [N, Kpad], sb [R, N], sizes [G]
// (clamped), or BF16 a, b, sizes; then optionally c [G, M, N] FP32, read by
// the kernel (not aliased) -> d [G, M, N] FP32 = c + the group products.
ffi::Error KGroupedExecute(CUstream stream, KernelState* state, ffi::RemainingArgs args,
                           ffi::Result<ffi::AnyBuffer> d) {
  const GemmSpec& spec = state->spec;
  std::string error;
  const CudaDriver* drv = cuda_driver(&error);
  if (drv == nullptr) return internal(error, spec);
  const bool fp8 = spec.is_fp8();
  if (args.size() < (fp8 ? 5u : 3u))
    return internal(fp8 ? "expected a, sa, b, sb, group sizes[, c]" : "expected a, b, group sizes[, c]",
                    spec);
  auto a = args.get<ffi::AnyBuffer>(0).value();
  auto b = args.get<ffi::AnyBuffer>(fp8 ? 2 : 1).value();
  auto sizes = args.get<ffi::AnyBuffer>(fp8 ? 4 : 2).value();
  const int64_t groups = sizes.dimensions().size() == 1 ? sizes.dimensions()[0] : -1;
  const int64_t rblocks = spec.k / 128;
  using DT = ffi::DataType;
  const auto in_type = fp8 ? DT::F8E4M3FN : DT::BF16;
  if (auto e = check_dims("a", a, in_type, {spec.m, spec.k}, spec); e.failure()) return e;
  if (auto e = check_dims("b", b, in_type, {spec.n, spec.k}, spec); e.failure()) return e;
  if (auto e = check_dims("group sizes", sizes, DT::S32, {groups}, spec); e.failure()) return e;
  if (auto e = check_dims("d", *d, DT::F32, {groups, spec.m, spec.n}, spec); e.failure()) return e;
  const size_t c_index = fp8 ? 5 : 3;
  if (spec.accumulate && args.size() != c_index + 1) return internal("c is missing", spec);
  if (groups <= 0) return ffi::Error::Success();

  const int64_t units = groups * layout::ceil_div(spec.m, spec.block_m) *
                        layout::ceil_div(layout::ceil_div(spec.n, spec.block_n), spec.cluster);
  unsigned grid = 0;
  if (!persistent_grid(state, units, &grid, &error)) return internal(error, spec);

  const auto dtype = fp8 ? CU_TENSOR_MAP_DATA_TYPE_UINT8 : CU_TENSOR_MAP_DATA_TYPE_BFLOAT16;
  const int64_t row_bytes = spec.k * spec.in_bytes();
  const uint32_t box_k = static_cast<uint32_t>(128 / spec.in_bytes());  // one 128-byte row
  const uint32_t slab_cols = spec.smem_plan().slab_cols;
  CUtensorMap tm_a, tm_b, tm_d, tm_c, tm_sb;
  bool ok =
      make_tma_2d(*drv, &tm_a, dtype, a.untyped_data(), spec.k, spec.m, row_bytes, box_k,
                  spec.block_m / spec.cluster, CU_TENSOR_MAP_SWIZZLE_128B, &error) &&
      make_tma_2d(*drv, &tm_b, dtype, b.untyped_data(), spec.k, spec.n, row_bytes, box_k,
                  spec.block_n, CU_TENSOR_MAP_SWIZZLE_128B, &error) &&
      make_output_slab_desc(*drv, &tm_d, true, d->untyped_data(), spec.n, spec.m, groups,
                            slab_cols, &error);
  if (!ok) return internal(error, spec);
  // C: the same boxes as D; without C the kernel never reads tm_c.
  tm_c = tm_d;
  if (spec.accumulate) {
    auto c = args.get<ffi::AnyBuffer>(c_index).value();
    if (auto e = check_dims("c", c, DT::F32, {groups, spec.m, spec.n}, spec); e.failure())
      return e;
    if (!make_output_slab_desc(*drv, &tm_c, true, c.untyped_data(), spec.n, spec.m, groups,
                               slab_cols, &error))
      return internal(error, spec);
  }
  const void* sizes_ptr = sizes.untyped_data();
  uint32_t g32 = static_cast<uint32_t>(groups);
  if (!fp8) {
    void* params[] = {&tm_a, &tm_b, &tm_d, &tm_c, &sizes_ptr, &g32};
    if (!state->kernel.launch(stream, grid, params, &error)) return internal(error, spec);
    return ffi::Error::Success();
  }
  auto sa = args.get<ffi::AnyBuffer>(1).value();
  auto sb = args.get<ffi::AnyBuffer>(3).value();
  const int64_t sa_cols = layout::tma_scale_a_cols(spec.m);
  if (auto e = check_dims("a.scale (M padded to 4)", sa, DT::F32, {rblocks, sa_cols}, spec);
      e.failure())
    return e;
  if (auto e = check_dims("b.scale", sb, DT::F32, {rblocks, spec.n}, spec); e.failure()) return e;
  CUtensorMap tm_sa;
  if (!make_tma_2d(*drv, &tm_sb, CU_TENSOR_MAP_DATA_TYPE_FLOAT32, sb.untyped_data(), spec.n,
                   rblocks, spec.n * 4, spec.block_n, 1, CU_TENSOR_MAP_SWIZZLE_NONE, &error) ||
      !make_tma_2d(*drv, &tm_sa, CU_TENSOR_MAP_DATA_TYPE_FLOAT32, sa.untyped_data(), sa_cols,
                   rblocks, sa_cols * 4, spec.block_m, 1, CU_TENSOR_MAP_SWIZZLE_NONE, &error))
    return internal(error, spec);
  void* params[] = {&tm_a, &tm_b, &tm_d, &tm_c, &tm_sb, &tm_sa, &sizes_ptr, &g32};
  if (!state->kernel.launch(stream, grid, params, &error)) return internal(error, spec);
  return ffi::Error::Success();
}

// k-grouped operand packing: x [K_total, X] token-major (FP8 or BF16), sizes
// [G] (clamped) -> out [X_PAD, R*128] K-major, group-padded (k_grouped_pack.cuh).
ffi::Error KGroupedPackExecute(CUstream stream, KernelState* state, ffi::AnyBuffer x,
                               ffi::AnyBuffer sizes, ffi::Result<ffi::AnyBuffer> out) {
  const GemmSpec& spec = state->spec;
  using DT = ffi::DataType;
  const auto in_type = spec.is_fp8() ? DT::F8E4M3FN : DT::BF16;
  const auto xd = x.dimensions();
  const int64_t k_total = xd.size() == 2 ? xd[0] : -1;
  const int64_t groups = sizes.dimensions().size() == 1 ? sizes.dimensions()[0] : -1;
  if (auto e = check_dims("x", x, in_type, {k_total, spec.m}, spec); e.failure()) return e;
  if (auto e = check_dims("group sizes", sizes, DT::S32, {groups}, spec); e.failure()) return e;
  if (auto e = check_dims("out", *out, in_type, {spec.n, spec.k}, spec); e.failure()) return e;
  const int64_t col_tiles = layout::ceil_div(spec.n, 128 / spec.in_bytes());
  const int64_t grid = col_tiles * (spec.k / 128);
  if (grid == 0) return ffi::Error::Success();
  const void* x_ptr = x.untyped_data();
  const void* sizes_ptr = sizes.untyped_data();
  void* out_ptr = out->untyped_data();
  uint32_t g32 = static_cast<uint32_t>(groups);
  void* params[] = {&x_ptr, &sizes_ptr, &g32, &out_ptr};
  std::string error;
  if (!state->kernel.launch(stream, static_cast<unsigned>(grid), params, &error))
    return internal(error, spec);
  return ffi::Error::Success();
}

}  // namespace
}  // namespace jaxgemm

XLA_FFI_DEFINE_HANDLER_SYMBOL(JaxgemmGroupedExecute, jaxgemm::GroupedExecute,
                              ffi::Ffi::Bind()
                                  .Ctx<ffi::PlatformStream<CUstream>>()
                                  .Ctx<ffi::State<jaxgemm::KernelState>>()
                                  .RemainingArgs()
                                  .Ret<ffi::AnyBuffer>(),
                              {ffi::Traits::kCmdBufferCompatible});

XLA_FFI_DEFINE_HANDLER_SYMBOL(JaxgemmKGroupedExecute, jaxgemm::KGroupedExecute,
                              ffi::Ffi::Bind()
                                  .Ctx<ffi::PlatformStream<CUstream>>()
                                  .Ctx<ffi::State<jaxgemm::KernelState>>()
                                  .RemainingArgs()
                                  .Ret<ffi::AnyBuffer>(),
                              {ffi::Traits::kCmdBufferCompatible});

XLA_FFI_DEFINE_HANDLER_SYMBOL(JaxgemmKGroupedPackExecute, jaxgemm::KGroupedPackExecute,
                              ffi::Ffi::Bind()
                                  .Ctx<ffi::PlatformStream<CUstream>>()
                                  .Ctx<ffi::State<jaxgemm::KernelState>>()
                                  .Arg<ffi::AnyBuffer>()
                                  .Arg<ffi::AnyBuffer>()
                                  .Ret<ffi::AnyBuffer>(),
                              {ffi::Traits::kCmdBufferCompatible});
