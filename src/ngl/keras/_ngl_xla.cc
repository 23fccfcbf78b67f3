// NGL's native CPU kernel (ngl/losses/_ngl_kernel.c) as an XLA custom call, for Keras on jax:
// per-sample values and logit gradients of rows (N, C) of float32 logits, with int32 labels (N)
// or float32 dense targets (N, C). Built on first use by ngl.keras._xla (jaxlib's FFI headers).
#include <cstdint>
#include <string>
#include <vector>

#include "xla/ffi/api/ffi.h"

extern "C" {
#include "_ngl_kernel.c"
}

namespace ffi = xla::ffi;

static ffi::Error Status(int status, int64_t bad, int64_t num_classes) {
  if (status == BAD_LABEL)
    return ffi::Error::InvalidArgument("ngl: class label " + std::to_string(bad) + " out of range [0, " +
                                       std::to_string(num_classes - 1) + "] for " +
                                       std::to_string(num_classes) + " classes");
  if (status != OK) return ffi::Error::Internal("ngl: native kernel failed with status " + std::to_string(status));
  return ffi::Error::Success();
}

static ffi::Error Labels(ffi::Buffer<ffi::F32> z, ffi::Buffer<ffi::S32> t, float alpha, ffi::Span<const float> coef,
                         ffi::ResultBuffer<ffi::F32> value, ffi::ResultBuffer<ffi::F32> grad) {
  const int64_t num_classes = z.dimensions().back(), rows = t.element_count();
  if (coef.size() != 4 * NC || rows * num_classes != (int64_t)z.element_count())
    return ffi::Error::InvalidArgument("ngl: bad shapes for the NGL custom call");
  std::vector<int64_t> labels(t.typed_data(), t.typed_data() + rows);
  int64_t info[2] = {0, 0};
  const int status = ngl_labels_f32(z.typed_data(), labels.data(), rows, num_classes, 1, coef.begin(), DEG, alpha,
                                    INT64_MIN, 0, value->typed_data(), grad->typed_data(), nullptr, info);
  return Status(status, info[1], num_classes);
}

static ffi::Error Dense(ffi::Buffer<ffi::F32> z, ffi::Buffer<ffi::F32> y, float alpha, ffi::Span<const float> coef,
                        ffi::ResultBuffer<ffi::F32> value, ffi::ResultBuffer<ffi::F32> grad) {
  const int64_t num_classes = z.dimensions().back(), rows = z.element_count() / num_classes;
  if (coef.size() != 4 * NC || y.element_count() != z.element_count())
    return ffi::Error::InvalidArgument("ngl: bad shapes for the NGL custom call");
  const int status = ngl_dense_f32(z.typed_data(), y.typed_data(), rows, num_classes, 1, coef.begin(), DEG, alpha,
                                   0, value->typed_data(), grad->typed_data(), nullptr);
  return Status(status, 0, num_classes);
}

XLA_FFI_DEFINE_HANDLER_SYMBOL(NglLabels, Labels,
                              ffi::Ffi::Bind()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Arg<ffi::Buffer<ffi::S32>>()
                                  .Attr<float>("alpha")
                                  .Attr<ffi::Span<const float>>("coef")
                                  .Ret<ffi::Buffer<ffi::F32>>()
                                  .Ret<ffi::Buffer<ffi::F32>>());

XLA_FFI_DEFINE_HANDLER_SYMBOL(NglDense, Dense,
                              ffi::Ffi::Bind()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Attr<float>("alpha")
                                  .Attr<ffi::Span<const float>>("coef")
                                  .Ret<ffi::Buffer<ffi::F32>>()
                                  .Ret<ffi::Buffer<ffi::F32>>());
