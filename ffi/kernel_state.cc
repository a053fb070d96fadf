// The stages every jaxgemm custom call shares, and the helpers of the
// execute handlers (dense_handlers.cc, grouped_handlers.cc).
//
//   instantiate: JIT-compile (or load from the cache) the kernel for the
//                static attributes, load it, keep it in the per-instance state.
//   initialize:  configure the kernel for the device (before any graph capture).
#include <algorithm>
#include <cstring>
#include <sstream>

#include "handler_common.h"
#include "handlers.h"
#include "kernel_state.h"
#include "layout.h"

namespace ffi = xla::ffi;

XLA_FFI_REGISTER_STRUCT_ATTR_DECODING(
    jaxgemm::GemmAttrs, ffi::StructMember<std::string_view>("kernel"),
    ffi::StructMember<int64_t>("m"), ffi::StructMember<int64_t>("n"),
    ffi::StructMember<int64_t>("k"),
    ffi::StructMember<int64_t>("block_m"), ffi::StructMember<int64_t>("block_n"),
    ffi::StructMember<int64_t>("stages"), ffi::StructMember<int64_t>("band_n"),
    ffi::StructMember<int64_t>("out_f32"), ffi::StructMember<int64_t>("accumulate"),
    ffi::StructMember<int64_t>("sb_per_row"), ffi::StructMember<int64_t>("cluster"),
    ffi::StructMember<int64_t>("masked"), ffi::StructMember<int64_t>("scales_tma"),
    ffi::StructMember<int64_t>("num_sms"),
    ffi::StructMember<int64_t>("smem_override"));

namespace jaxgemm {

xla::ffi::TypeId KernelState::id = {};

const XLA_FFI_TypeInfo* kernel_state_type_info() {
  static const XLA_FFI_TypeInfo info = ffi::MakeTypeInfo<KernelState>();
  return &info;
}

ffi::Error internal(const std::string& what, const GemmSpec& spec) {
  return ffi::Error::Internal("jaxgemm " + spec.kernel + ": " + what + " [" + spec.describe() + "]");
}

ffi::Error check_dims(const char* name, const ffi::AnyBuffer& buf, ffi::DataType dtype,
                      std::initializer_list<int64_t> dims, const GemmSpec& spec) {
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

ffi::Error scale_descriptors(const GemmSpec& spec, const ffi::AnyBuffer& sa,
                             const ffi::AnyBuffer& sb, int64_t rows, int64_t b_rows,
                             CUtensorMap* tm_sa, CUtensorMap* tm_sbb) {
  std::memset(tm_sa, 0, sizeof *tm_sa);
  std::memset(tm_sbb, 0, sizeof *tm_sbb);
  if (!spec.scales_tma) return ffi::Error::Success();
  const int64_t kb = layout::num_scale_blocks(spec.k);
  const int64_t a_cols = layout::tma_scale_a_cols(rows);
  const int64_t kb4 = layout::tma_scale_k_blocks(spec.k);
  const bool row_boxes = spec.scales_tma == 2;
  if (row_boxes) {
    if (auto e = check_dims("a.scale (K blocks padded to 4)", sa, ffi::DataType::F32, {rows, kb4},
                            spec);
        e.failure())
      return e;
  } else if (auto e = check_dims("a.scale (transposed)", sa, ffi::DataType::F32, {kb, a_cols},
                                 spec);
             e.failure()) {
    return e;
  }
  if (!spec.sb_per_row) {
    if (auto e = check_dims("b.scale (K blocks padded to 4)", sb, ffi::DataType::F32,
                            {b_rows, kb4}, spec);
        e.failure())
      return e;
  }
  if (rows <= 0) return ffi::Error::Success();  // nothing launches
  std::string error;
  const CudaDriver* drv = cuda_driver(&error);
  if (drv == nullptr) return internal(error, spec);
  // Row boxes: 4 K blocks x block_m rows of [rows, kb4]; else one K block's
  // block_m rows of the transposed [kb, a_cols].
  bool ok = row_boxes
                ? make_tma_2d(*drv, tm_sa, CU_TENSOR_MAP_DATA_TYPE_FLOAT32, sa.untyped_data(), kb4,
                              rows, kb4 * 4, layout::kTmaScaleAlign,
                              static_cast<uint32_t>(spec.block_m), CU_TENSOR_MAP_SWIZZLE_NONE,
                              &error)
                : make_tma_2d(*drv, tm_sa, CU_TENSOR_MAP_DATA_TYPE_FLOAT32, sa.untyped_data(),
                              a_cols, kb, a_cols * 4, static_cast<uint32_t>(spec.block_m), 1,
                              CU_TENSOR_MAP_SWIZZLE_NONE, &error);
  if (ok && !spec.sb_per_row)
    ok = make_tma_2d(*drv, tm_sbb, CU_TENSOR_MAP_DATA_TYPE_FLOAT32, sb.untyped_data(), kb4, b_rows,
                     kb4 * 4, layout::kTmaScaleAlign, 2, CU_TENSOR_MAP_SWIZZLE_NONE, &error);
  if (!ok) return internal(error, spec);
  return ffi::Error::Success();
}

bool persistent_grid(KernelState* state, int64_t units, unsigned* grid, std::string* error) {
  const GemmSpec& spec = state->spec;
  LoadedKernel::DeviceInfo dev;
  if (!state->kernel.prepare_current_device(&dev, error)) return false;
  int64_t cap = dev.max_active_clusters;
  if (spec.num_sms > 0)
    cap = std::min<int64_t>(cap, std::max<int64_t>(1, spec.num_sms / spec.cluster));
  *grid = static_cast<unsigned>(std::min(units, cap) * spec.cluster);
  return true;
}

namespace {

ffi::ErrorOr<std::unique_ptr<KernelState>> Instantiate(GemmAttrs attrs) {
  auto state = std::make_unique<KernelState>();
  state->spec = GemmSpec::from_attrs(attrs);
  const GemmSpec& spec = state->spec;
  std::string error;
  if (!spec.validate(&error)) return ffi::Unexpected(ffi::Error::InvalidArgument(error));
  KernelBinary bin;
  if (!jit_build(spec.request(), &bin, &error)) return ffi::Unexpected(internal(error, spec));
  if (!state->kernel.load(bin, spec.smem_bytes(), spec.threads(), spec.cluster, &error))
    return ffi::Unexpected(internal(error, spec));
  return state;
}

ffi::Error Initialize(KernelState* state) {
  LoadedKernel::DeviceInfo dev;
  std::string error;
  if (!state->kernel.prepare_current_device(&dev, &error)) return internal(error, state->spec);
  return ffi::Error::Success();
}

}  // namespace
}  // namespace jaxgemm

XLA_FFI_DEFINE_HANDLER_SYMBOL(JaxgemmInstantiate, jaxgemm::Instantiate,
                              ffi::Ffi::BindInstantiate().Attrs<jaxgemm::GemmAttrs>());

XLA_FFI_DEFINE_HANDLER_SYMBOL(JaxgemmInitialize, jaxgemm::Initialize,
                              ffi::Ffi::BindInitialize().Ctx<ffi::State<jaxgemm::KernelState>>(),
                              {ffi::Traits::kCmdBufferCompatible});
