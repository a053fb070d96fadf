// XLA FFI handlers of the GEMM custom calls: jaxgemm_dense_gemm (fp8/bf16 NT)
// and jaxgemm_grouped_gemm (m-grouped FP8, contiguous or masked).
//
//   instantiate: JIT-compile (or load from the cache) the kernel for the
//                static attributes, load it, keep it in the per-instance state.
//   initialize:  configure the kernel for the device (before any graph capture).
//   execute:     encode the TMA descriptors for this call's buffers and launch
//                on XLA's stream; nothing else (command-buffer compatible).
#include "dense_handlers.h"

#include <algorithm>
#include <cstring>
#include <sstream>

#include "kernel_state.h"
#include "layout.h"
#include "smem_plan.h"
#include "tma_desc.h"

namespace ffi = xla::ffi;

XLA_FFI_REGISTER_STRUCT_ATTR_DECODING(
    jaxgemm::DenseGemmAttrs, ffi::StructMember<std::string_view>("kernel"),
    ffi::StructMember<int64_t>("m"), ffi::StructMember<int64_t>("n"),
    ffi::StructMember<int64_t>("k"),
    ffi::StructMember<int64_t>("block_m"), ffi::StructMember<int64_t>("block_n"),
    ffi::StructMember<int64_t>("stages"), ffi::StructMember<int64_t>("band_n"),
    ffi::StructMember<int64_t>("out_f32"), ffi::StructMember<int64_t>("accumulate"),
    ffi::StructMember<int64_t>("sb_per_row"), ffi::StructMember<int64_t>("cluster"),
    ffi::StructMember<int64_t>("masked"),
    ffi::StructMember<int64_t>("num_sms"),
    ffi::StructMember<int64_t>("smem_override"));

namespace jaxgemm {

xla::ffi::TypeId KernelState::id = {};

const XLA_FFI_TypeInfo* kernel_state_type_info() {
  static const XLA_FFI_TypeInfo info = ffi::MakeTypeInfo<KernelState>();
  return &info;
}

namespace {

ffi::Error internal(const std::string& what, const DenseGemmSpec& spec) {
  return ffi::Error::Internal("jaxgemm " + spec.kernel + ": " + what + " [" + spec.describe() + "]");
}

ffi::ErrorOr<std::unique_ptr<KernelState>> DenseInstantiate(DenseGemmAttrs attrs) {
  auto state = std::make_unique<KernelState>();
  state->dense = DenseGemmSpec::from_attrs(attrs);
  const DenseGemmSpec& spec = state->dense;
  std::string error;
  if (!spec.validate(&error)) return ffi::Unexpected(ffi::Error::InvalidArgument(error));
  KernelBinary bin;
  if (!jit_build(spec.request(), &bin, &error)) return ffi::Unexpected(internal(error, spec));
  if (!state->kernel.load(bin, spec.smem_bytes(), spec.threads(), spec.cluster, &error))
    return ffi::Unexpected(internal(error, spec));
  return state;
}

ffi::Error DenseInitialize(KernelState* state) {
  LoadedKernel::DeviceInfo dev;
  std::string error;
  if (!state->kernel.prepare_current_device(&dev, &error)) return internal(error, state->dense);
  return ffi::Error::Success();
}

ffi::Error check_dims(const char* name, const ffi::AnyBuffer& buf, ffi::DataType dtype,
                      std::initializer_list<int64_t> dims, const DenseGemmSpec& spec) {
  auto d = buf.dimensions();
  bool ok = buf.element_type() == dtype && d.size() == dims.size();
  size_t i = 0;
  for (int64_t want : dims) ok = ok && d[i++] == want;
  if (ok) return ffi::Error::Success();
  std::ostringstream s;
  s << "jaxgemm " << spec.kernel << ": buffer " << name << " has shape [";
  for (size_t j = 0; j < d.size(); ++j) s << (j ? ", " : "") << d[j];
  s << "] and dtype " << static_cast<int>(buf.element_type()) << ", expected [";
  i = 0;
  for (int64_t want : dims) s << (i++ ? ", " : "") << want;
  s << "] and dtype " << static_cast<int>(dtype);
  return ffi::Error::InvalidArgument(s.str());
}

// Operands: fp8: a, sa, b, sb[, sbt][, c]; bf16: a, b[, c].  `c`, when
// present, is aliased to the result, so D already holds C.
ffi::Error DenseExecute(CUstream stream, KernelState* state, ffi::RemainingArgs args,
                        ffi::Result<ffi::AnyBuffer> d) {
  const DenseGemmSpec& spec = state->dense;
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
  if (m == 0) return ffi::Error::Success();

  LoadedKernel::DeviceInfo dev;
  if (!state->kernel.prepare_current_device(&dev, &error)) return internal(error, spec);
  // Persistent grid: one cluster per scheduling unit, at most as many
  // clusters as fit on the device at once (or on the SMs the caller allows).
  const int64_t units = layout::ceil_div(m, spec.block_m) *
                        layout::ceil_div(layout::ceil_div(spec.n, spec.block_n), spec.cluster);
  int64_t cap = dev.max_active_clusters;
  if (spec.num_sms > 0) cap = std::min<int64_t>(cap, std::max<int64_t>(1, spec.num_sms / spec.cluster));
  const unsigned grid = static_cast<unsigned>(std::min(units, cap) * spec.cluster);

  const auto in_dtype = fp8 ? CU_TENSOR_MAP_DATA_TYPE_UINT8 : CU_TENSOR_MAP_DATA_TYPE_BFLOAT16;
  const uint32_t box_k = static_cast<uint32_t>(128 / spec.in_bytes());  // one 128-byte row
  CUtensorMap tm_a, tm_b, tm_d, tm_sb;
  std::memset(&tm_sb, 0, sizeof tm_sb);
  const uint32_t slab_cols = jaxgemm_plan::store_slab_cols(spec.block_n, spec.out_bytes());
  bool ok =
      make_tma_2d(*drv, &tm_a, in_dtype, a.untyped_data(), spec.k, m, spec.k * spec.in_bytes(),
                  box_k, spec.block_m / spec.cluster, CU_TENSOR_MAP_SWIZZLE_128B, &error) &&
      make_tma_2d(*drv, &tm_b, in_dtype, b.untyped_data(), spec.k, spec.n,
                  spec.k * spec.in_bytes(), box_k, spec.block_n, CU_TENSOR_MAP_SWIZZLE_128B,
                  &error) &&
      make_tma_2d(*drv, &tm_d,
                  spec.out_f32 ? CU_TENSOR_MAP_DATA_TYPE_FLOAT32 : CU_TENSOR_MAP_DATA_TYPE_BFLOAT16,
                  d->untyped_data(), spec.n, m, spec.n * spec.out_bytes(), slab_cols, 64,
                  swizzle_for_row_bytes(slab_cols * spec.out_bytes()), &error);
  if (!ok) return internal(error, spec);

  uint32_t m32 = static_cast<uint32_t>(m);
  if (fp8) {
    auto sa = args.get<ffi::AnyBuffer>(1).value();
    auto sb = args.get<ffi::AnyBuffer>(3).value();
    const int64_t kb = layout::num_scale_blocks(spec.k);
    if (auto e = check_dims("a.scale", sa, ffi::DataType::F32, {m, kb}, spec); e.failure()) return e;
    if (spec.sb_per_row) {
      // Per-row B scales arrive transposed, [ceil(K/128), N], so that one TMA
      // box per stage brings a tile's column scales.
      if (auto e = check_dims("b.scale (transposed)", sb, ffi::DataType::F32, {kb, spec.n}, spec);
          e.failure())
        return e;
      if (!make_tma_2d(*drv, &tm_sb, CU_TENSOR_MAP_DATA_TYPE_FLOAT32, sb.untyped_data(), spec.n,
                       kb, spec.n * 4, spec.block_n, 1, CU_TENSOR_MAP_SWIZZLE_NONE, &error))
        return internal(error, spec);
    } else {
      if (auto e = check_dims("b.scale", sb, ffi::DataType::F32,
                              {layout::num_scale_blocks(spec.n), kb}, spec);
          e.failure())
        return e;
    }
    const float* sa_ptr = static_cast<const float*>(sa.untyped_data());
    const float* sb_ptr = static_cast<const float*>(sb.untyped_data());
    void* params[] = {&tm_a, &tm_b, &tm_d, &tm_sb, &sa_ptr, &sb_ptr, &m32};
    if (!state->kernel.launch(stream, grid, params, &error)) return internal(error, spec);
  } else {
    void* params[] = {&tm_a, &tm_b, &tm_d, &m32};
    if (!state->kernel.launch(stream, grid, params, &error)) return internal(error, spec);
  }
  return ffi::Error::Success();
}

// m-grouped FP8: a, sa, b, sb, sizes -> d.  A is [M, K] (contiguous) or
// [G, M_max, K] (masked); the kernel reads the group sizes on the device.
ffi::Error GroupedExecute(CUstream stream, KernelState* state, ffi::RemainingArgs args,
                          ffi::Result<ffi::AnyBuffer> d) {
  const DenseGemmSpec& spec = state->dense;
  std::string error;
  const CudaDriver* drv = cuda_driver(&error);
  if (drv == nullptr) return internal(error, spec);
  if (args.size() != 5) return internal("expected a, sa, b, sb, group sizes", spec);
  auto a = args.get<ffi::AnyBuffer>(0).value();
  auto sa = args.get<ffi::AnyBuffer>(1).value();
  auto b = args.get<ffi::AnyBuffer>(2).value();
  auto sb = args.get<ffi::AnyBuffer>(3).value();
  auto sizes = args.get<ffi::AnyBuffer>(4).value();
  const int64_t groups = b.dimensions().size() == 3 ? b.dimensions()[0] : -1;
  const auto ad = a.dimensions();
  const int64_t rows = spec.masked ? (ad.size() == 3 ? ad[0] * ad[1] : -1)
                                   : (ad.size() == 2 ? ad[0] : -1);
  const int64_t m = spec.masked ? (ad.size() == 3 ? ad[1] : -1) : rows;
  const int64_t kb = layout::num_scale_blocks(spec.k);
  const auto out_type = spec.out_f32 ? ffi::DataType::F32 : ffi::DataType::BF16;
  if (spec.masked) {
    if (auto e = check_dims("a", a, ffi::DataType::F8E4M3FN, {groups, m, spec.k}, spec); e.failure()) return e;
    if (auto e = check_dims("a.scale", sa, ffi::DataType::F32, {groups, m, kb}, spec); e.failure()) return e;
    if (auto e = check_dims("d", *d, out_type, {groups, m, spec.n}, spec); e.failure()) return e;
  } else {
    if (auto e = check_dims("a", a, ffi::DataType::F8E4M3FN, {rows, spec.k}, spec); e.failure()) return e;
    if (auto e = check_dims("a.scale", sa, ffi::DataType::F32, {rows, kb}, spec); e.failure()) return e;
    if (auto e = check_dims("d", *d, out_type, {rows, spec.n}, spec); e.failure()) return e;
  }
  if (auto e = check_dims("b", b, ffi::DataType::F8E4M3FN, {groups, spec.n, spec.k}, spec); e.failure()) return e;
  if (auto e = check_dims("b.scale", sb, ffi::DataType::F32,
                          {groups, layout::num_scale_blocks(spec.n), kb}, spec);
      e.failure())
    return e;
  if (auto e = check_dims("group sizes", sizes, ffi::DataType::S32, {groups}, spec); e.failure()) return e;
  if (rows <= 0) return ffi::Error::Success();

  LoadedKernel::DeviceInfo dev;
  if (!state->kernel.prepare_current_device(&dev, &error)) return internal(error, spec);
  // Units are only known on the device; bound them: every segment adds at
  // most one partial row tile.
  const int64_t segments = spec.masked ? 2 * groups : groups + 1;
  const int64_t units = (layout::ceil_div(rows, spec.block_m) + segments) *
                        layout::ceil_div(layout::ceil_div(spec.n, spec.block_n), spec.cluster);
  int64_t cap = dev.max_active_clusters;
  if (spec.num_sms > 0) cap = std::min<int64_t>(cap, std::max<int64_t>(1, spec.num_sms / spec.cluster));
  const unsigned grid = static_cast<unsigned>(std::min(units, cap) * spec.cluster);

  CUtensorMap tm_a, tm_b;
  bool ok = make_tma_2d(*drv, &tm_a, CU_TENSOR_MAP_DATA_TYPE_UINT8, a.untyped_data(), spec.k, rows,
                        spec.k, 128, spec.block_m / spec.cluster, CU_TENSOR_MAP_SWIZZLE_128B,
                        &error) &&
            make_tma_2d(*drv, &tm_b, CU_TENSOR_MAP_DATA_TYPE_UINT8, b.untyped_data(), spec.k,
                        groups * spec.n, spec.k, 128, spec.block_n, CU_TENSOR_MAP_SWIZZLE_128B,
                        &error);
  if (!ok) return internal(error, spec);
  const void* sa_ptr = sa.untyped_data();
  const void* sb_ptr = sb.untyped_data();
  const void* sizes_ptr = sizes.untyped_data();
  void* d_ptr = d->untyped_data();
  uint32_t m32 = static_cast<uint32_t>(m), g32 = static_cast<uint32_t>(groups);
  void* params[] = {&tm_a, &tm_b, &sa_ptr, &sb_ptr, &sizes_ptr, &d_ptr, &m32, &g32};
  if (!state->kernel.launch(stream, grid, params, &error)) return internal(error, spec);
  return ffi::Error::Success();
}

// k-grouped FP8: a [M, Kpad], sa [R, M], b [N, Kpad], sb [R, N], sizes [G]
// (clamped), optional c [G, M, N] aliased to d -> d [G, M, N] FP32.
ffi::Error KGroupedExecute(CUstream stream, KernelState* state, ffi::RemainingArgs args,
                           ffi::Result<ffi::AnyBuffer> d) {
  const DenseGemmSpec& spec = state->dense;
  std::string error;
  const CudaDriver* drv = cuda_driver(&error);
  if (drv == nullptr) return internal(error, spec);
  if (args.size() < 5) return internal("expected a, sa, b, sb, group sizes[, c]", spec);
  auto a = args.get<ffi::AnyBuffer>(0).value();
  auto sa = args.get<ffi::AnyBuffer>(1).value();
  auto b = args.get<ffi::AnyBuffer>(2).value();
  auto sb = args.get<ffi::AnyBuffer>(3).value();
  auto sizes = args.get<ffi::AnyBuffer>(4).value();
  const int64_t groups = sizes.dimensions().size() == 1 ? sizes.dimensions()[0] : -1;
  const int64_t rblocks = spec.k / 128;
  using DT = ffi::DataType;
  if (auto e = check_dims("a", a, DT::F8E4M3FN, {spec.m, spec.k}, spec); e.failure()) return e;
  if (auto e = check_dims("a.scale", sa, DT::F32, {rblocks, spec.m}, spec); e.failure()) return e;
  if (auto e = check_dims("b", b, DT::F8E4M3FN, {spec.n, spec.k}, spec); e.failure()) return e;
  if (auto e = check_dims("b.scale", sb, DT::F32, {rblocks, spec.n}, spec); e.failure()) return e;
  if (auto e = check_dims("group sizes", sizes, DT::S32, {groups}, spec); e.failure()) return e;
  if (auto e = check_dims("d", *d, DT::F32, {groups, spec.m, spec.n}, spec); e.failure()) return e;
  if (groups <= 0) return ffi::Error::Success();

  LoadedKernel::DeviceInfo dev;
  if (!state->kernel.prepare_current_device(&dev, &error)) return internal(error, spec);
  const int64_t units = groups * layout::ceil_div(spec.m, spec.block_m) *
                        layout::ceil_div(layout::ceil_div(spec.n, spec.block_n), spec.cluster);
  int64_t cap = dev.max_active_clusters;
  if (spec.num_sms > 0) cap = std::min<int64_t>(cap, std::max<int64_t>(1, spec.num_sms / spec.cluster));
  const unsigned grid = static_cast<unsigned>(std::min(units, cap) * spec.cluster);

  const uint32_t slab_cols = jaxgemm_plan::store_slab_cols(spec.block_n, 4);
  CUtensorMap tm_a, tm_b, tm_d, tm_sb;
  bool ok =
      make_tma_2d(*drv, &tm_a, CU_TENSOR_MAP_DATA_TYPE_UINT8, a.untyped_data(), spec.k, spec.m,
                  spec.k, 128, spec.block_m / spec.cluster, CU_TENSOR_MAP_SWIZZLE_128B, &error) &&
      make_tma_2d(*drv, &tm_b, CU_TENSOR_MAP_DATA_TYPE_UINT8, b.untyped_data(), spec.k, spec.n,
                  spec.k, 128, spec.block_n, CU_TENSOR_MAP_SWIZZLE_128B, &error) &&
      make_tma_2d(*drv, &tm_sb, CU_TENSOR_MAP_DATA_TYPE_FLOAT32, sb.untyped_data(), spec.n,
                  rblocks, spec.n * 4, spec.block_n, 1, CU_TENSOR_MAP_SWIZZLE_NONE, &error) &&
      make_tma_3d(*drv, &tm_d, CU_TENSOR_MAP_DATA_TYPE_FLOAT32, d->untyped_data(), spec.n, spec.m,
                  groups, spec.n * 4, slab_cols, 64, swizzle_for_row_bytes(slab_cols * 4), &error);
  if (!ok) return internal(error, spec);
  const void* sa_ptr = sa.untyped_data();
  const void* sizes_ptr = sizes.untyped_data();
  uint32_t g32 = static_cast<uint32_t>(groups);
  void* params[] = {&tm_a, &tm_b, &tm_d, &tm_sb, &sa_ptr, &sizes_ptr, &g32};
  if (!state->kernel.launch(stream, grid, params, &error)) return internal(error, spec);
  return ffi::Error::Success();
}

}  // namespace
}  // namespace jaxgemm

XLA_FFI_DEFINE_HANDLER_SYMBOL(JaxgemmDenseInstantiate, jaxgemm::DenseInstantiate,
                              ffi::Ffi::BindInstantiate().Attrs<jaxgemm::DenseGemmAttrs>());

XLA_FFI_DEFINE_HANDLER_SYMBOL(JaxgemmDenseInitialize, jaxgemm::DenseInitialize,
                              ffi::Ffi::BindInitialize().Ctx<ffi::State<jaxgemm::KernelState>>(),
                              {ffi::Traits::kCmdBufferCompatible});

XLA_FFI_DEFINE_HANDLER_SYMBOL(JaxgemmDenseExecute, jaxgemm::DenseExecute,
                              ffi::Ffi::Bind()
                                  .Ctx<ffi::PlatformStream<CUstream>>()
                                  .Ctx<ffi::State<jaxgemm::KernelState>>()
                                  .RemainingArgs()
                                  .Ret<ffi::AnyBuffer>(),
                              {ffi::Traits::kCmdBufferCompatible});

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
