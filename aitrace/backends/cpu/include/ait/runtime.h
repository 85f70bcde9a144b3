// aitrace: the C ABI every generated library exports, and the helpers its entry points use.
//   ait_create(&model, consts, n)          constants copied in, in graph order
//   ait_context_create(model, &ctx)        a workspace arena; one per concurrent caller
//   ait_run(ctx, inputs, n_in, outputs, n_out, stream)   DLTensors in and (preallocated) out
//   ait_context_destroy(ctx); ait_destroy(model); ait_last_error() (this thread's last failure)
#pragma once
#include <cstdarg>
#include <cstdio>
#include <cstdlib>
#include <new>
#include <string>
#include "common.h"

extern "C" {
// The DLPack tensor layout (dlpack.h, v0.8+): a standard ABI, declared here so the generated
// library needs no header from elsewhere.
typedef struct { int32_t device_type; int32_t device_id; } DLDevice;
typedef struct { uint8_t code; uint8_t bits; uint16_t lanes; } DLDataType;
typedef struct {
  void* data;
  DLDevice device;
  int32_t ndim;
  DLDataType dtype;
  int64_t* shape;
  int64_t* strides;
  uint64_t byte_offset;
} DLTensor;
}

namespace ait {

enum { kDLInt = 0, kDLUInt = 1, kDLFloat = 2, kDLBfloat = 4, kDLBool = 6, kDLCPU = 1 };

inline std::string& last_error() {
  static thread_local std::string msg;
  return msg;
}

// Records a printf-style message as this thread's last error; returns the failure code.
inline int fail(const char* fmt, ...) {
  char buf[1024];
  va_list ap;
  va_start(ap, fmt);
  std::vsnprintf(buf, sizeof buf, fmt, ap);
  va_end(ap);
  last_error() = buf;
  return 1;
}

inline int64_t floordiv(int64_t a, int64_t b) { return a / b - ((a % b != 0) && ((a < 0) != (b < 0))); }
inline int64_t ceildiv(int64_t a, int64_t b) { return -floordiv(-a, b); }

inline void* aligned_alloc_bytes(size_t n) {
  if (n == 0) n = 64;
  void* p = nullptr;
  if (posix_memalign(&p, 64, (n + 63) / 64 * 64) != 0) throw std::bad_alloc();
  return p;
}

// A growable, 64-byte aligned workspace: the arena of the memory plan.
struct Arena {
  char* data = nullptr;
  size_t size = 0;
  char* reserve(size_t n) {
    if (n > size) {
      std::free(data);
      data = static_cast<char*>(aligned_alloc_bytes(n));
      size = n;
    }
    return data;
  }
  ~Arena() { std::free(data); }
};

// Checks one DLTensor against the expected dtype, rank and contiguity; binds or compares dims.
inline int check_tensor(const DLTensor& t, const char* what, int index, uint8_t code, uint8_t bits,
                        int32_t ndim, const char* expected, int32_t device_type = kDLCPU) {
  if (t.device.device_type != device_type)
    return fail("%s %d: expected a %s array %s, got device type %d", what, index,
                device_type == kDLCPU ? "CPU" : "CUDA", expected, t.device.device_type);
  if (t.dtype.code != code || t.dtype.bits != bits || t.dtype.lanes != 1)
    return fail("%s %d: expected %s, got dtype code %d with %d bits", what, index, expected,
                t.dtype.code, t.dtype.bits);
  if (t.ndim != ndim) return fail("%s %d: expected %s, got rank %d", what, index, expected, t.ndim);
  if (t.strides) {
    int64_t s = 1;
    for (int d = ndim - 1; d >= 0; --d) {
      if (t.shape[d] != 1 && t.strides[d] != s)
        return fail("%s %d: expected a contiguous %s, got strides that are not row-major", what,
                    index, expected);
      s *= t.shape[d];
    }
  }
  if (!t.data && ndim > 0) {
    int64_t n = 1;
    for (int d = 0; d < ndim; ++d) n *= t.shape[d];
    if (n) return fail("%s %d: null data pointer", what, index);
  }
  return 0;
}

inline int check_dim(const DLTensor& t, const char* what, int index, int axis, int64_t expected,
                     const char* expected_str) {
  if (t.shape[axis] != expected)
    return fail("%s %d: expected %s, got size %lld on axis %d (expected %lld)", what, index,
                expected_str, (long long)t.shape[axis], axis, (long long)expected);
  return 0;
}

template <typename T>
inline T* tensor_data(const DLTensor& t) {
  return reinterpret_cast<T*>(static_cast<char*>(t.data) + t.byte_offset);
}

}  // namespace ait
