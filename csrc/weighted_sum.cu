// CUDA kernel for the weighted-sum forward (see weighted_sum.cuh for the contract).
// Only CUDA headers here, so nvcc compiles this file in seconds (no torch/ATen).
#include "weighted_sum.cuh"

#include <atomic>
#include <cstring>
#include <cuda_bf16.h>
#include <cuda_fp16.h>

namespace dartsfast {
namespace {

constexpr int kThreads = 256;
// 2048 resident threads per SM on sm_80/sm_90 -> 8 blocks of 256 fill an SM; a grid of
// one such wave plus a grid-stride loop avoids the tail wave of a one-thread-per-vector
// grid while keeping 8 x 256 x 16 B = 32 KB of loads in flight per SM even at K = 1.
constexpr int kBlocksPerSm = 8;
constexpr int kMaxDevices = 64;

template <typename To, typename From>
__device__ __forceinline__ To bit_cast(const From& v) {
  static_assert(sizeof(To) == sizeof(From), "bit_cast size");
  To r;
  memcpy(&r, &v, sizeof(To));
  return r;
}

// Per dtype: scalar conversion and 16-byte pack/unpack to V = 16 / sizeof(T) floats.
template <typename T> struct Io;

template <> struct Io<float> {
  static constexpr int V = 4;
  __device__ static float to_f(float v) { return v; }
  __device__ static float from_f(float v) { return v; }
  __device__ static void unpack(const uint4& u, float* f) {
    f[0] = __uint_as_float(u.x); f[1] = __uint_as_float(u.y);
    f[2] = __uint_as_float(u.z); f[3] = __uint_as_float(u.w);
  }
  __device__ static uint4 pack(const float* f) {
    return make_uint4(__float_as_uint(f[0]), __float_as_uint(f[1]),
                      __float_as_uint(f[2]), __float_as_uint(f[3]));
  }
};

template <> struct Io<__half> {
  static constexpr int V = 8;
  __device__ static float to_f(__half v) { return __half2float(v); }
  __device__ static __half from_f(float v) { return __float2half_rn(v); }
  __device__ static void unpack2(uint32_t w, float* f) {
    const float2 p = __half22float2(bit_cast<__half2>(w));  // one cvt for two halves
    f[0] = p.x; f[1] = p.y;
  }
  __device__ static uint32_t pack2(const float* f) {
    return bit_cast<uint32_t>(__floats2half2_rn(f[0], f[1]));
  }
  __device__ static void unpack(const uint4& u, float* f) {
    unpack2(u.x, f); unpack2(u.y, f + 2); unpack2(u.z, f + 4); unpack2(u.w, f + 6);
  }
  __device__ static uint4 pack(const float* f) {
    return make_uint4(pack2(f), pack2(f + 2), pack2(f + 4), pack2(f + 6));
  }
};

template <> struct Io<__nv_bfloat16> {
  static constexpr int V = 8;
  __device__ static float to_f(__nv_bfloat16 v) { return __bfloat162float(v); }
  __device__ static __nv_bfloat16 from_f(float v) { return __float2bfloat16_rn(v); }
  // bf16 is the top half of an fp32: widening is a shift/mask, exact.
  __device__ static void unpack2(uint32_t w, float* f) {
    f[0] = __uint_as_float(w << 16);
    f[1] = __uint_as_float(w & 0xffff0000u);
  }
  __device__ static uint32_t pack2(const float* f) {
    return bit_cast<uint32_t>(__floats2bfloat162_rn(f[0], f[1]));
  }
  __device__ static void unpack(const uint4& u, float* f) {
    unpack2(u.x, f); unpack2(u.y, f + 2); unpack2(u.z, f + 4); unpack2(u.w, f + 6);
  }
  __device__ static uint4 pack(const float* f) {
    return make_uint4(pack2(f), pack2(f + 2), pack2(f + 4), pack2(f + 6));
  }
};

// One chunk of NK inputs.  kReadWs: start from the fp32 partial sums of earlier chunks.
// kWriteOut: last chunk, round once to T and write `out`; otherwise write the workspace.
// `vec`: every pointer is 16-byte aligned -> 16-byte loads/stores + scalar tail;
// otherwise the whole range runs through the scalar loop.
template <typename T, int NK, bool kReadWs, bool kWriteOut>
__global__ void __launch_bounds__(kThreads)
weighted_sum_fwd_kernel(InputPtrs in, const float* __restrict__ weights, T* __restrict__ out,
                        float* ws, int64_t n, bool vec) {
  using IO = Io<T>;
  constexpr int V = IO::V;
  float w[NK];
#pragma unroll
  for (int k = 0; k < NK; ++k) w[k] = __ldg(weights + k);

  const int64_t stride = static_cast<int64_t>(gridDim.x) * kThreads;
  const int64_t tid = static_cast<int64_t>(blockIdx.x) * kThreads + threadIdx.x;
  int64_t scalar_begin = 0;

  if (vec) {
    const int64_t nvec = n / V;
    for (int64_t v = tid; v < nvec; v += stride) {
      uint4 raw[NK];  // issue all NK loads before any math: NK x 16 B in flight
#pragma unroll
      for (int k = 0; k < NK; ++k) raw[k] = __ldg(static_cast<const uint4*>(in.p[k]) + v);
      float acc[V];
      if constexpr (kReadWs) {
#pragma unroll
        for (int j = 0; j < V; j += 4) {
          const float4 p = reinterpret_cast<const float4*>(ws + v * V)[j / 4];
          acc[j] = p.x; acc[j + 1] = p.y; acc[j + 2] = p.z; acc[j + 3] = p.w;
        }
      } else {
#pragma unroll
        for (int j = 0; j < V; ++j) acc[j] = 0.f;
      }
#pragma unroll
      for (int k = 0; k < NK; ++k) {
        float x[V];
        IO::unpack(raw[k], x);
#pragma unroll
        for (int j = 0; j < V; ++j) acc[j] = fmaf(w[k], x[j], acc[j]);
      }
      if constexpr (kWriteOut) {
        reinterpret_cast<uint4*>(out)[v] = IO::pack(acc);
      } else {
#pragma unroll
        for (int j = 0; j < V; j += 4)
          reinterpret_cast<float4*>(ws + v * V)[j / 4] =
              make_float4(acc[j], acc[j + 1], acc[j + 2], acc[j + 3]);
      }
    }
    scalar_begin = nvec * V;  // at most V - 1 tail elements left
  }

  for (int64_t i = scalar_begin + tid; i < n; i += stride) {
    float acc = kReadWs ? ws[i] : 0.f;
#pragma unroll
    for (int k = 0; k < NK; ++k) acc = fmaf(w[k], IO::to_f(static_cast<const T*>(in.p[k])[i]), acc);
    if constexpr (kWriteOut) out[i] = IO::from_f(acc);
    else ws[i] = acc;
  }
}

int sm_count(int device) {
  static std::atomic<int> cache[kMaxDevices];  // zero-initialised (static storage)
  if (device >= 0 && device < kMaxDevices) {
    const int c = cache[device].load(std::memory_order_relaxed);
    if (c > 0) return c;
  }
  int c = 0;
  if (cudaDeviceGetAttribute(&c, cudaDevAttrMultiProcessorCount, device) != cudaSuccess || c <= 0)
    c = 132;  // H100 SXM; only sizes the grid, never affects results
  if (device >= 0 && device < kMaxDevices) cache[device].store(c, std::memory_order_relaxed);
  return c;
}

template <typename T, bool kReadWs, bool kWriteOut>
void launch_chunk(int nk, const InputPtrs& in, const float* w, T* out, float* ws, int64_t n,
                  bool vec, unsigned grid, cudaStream_t s) {
#define DARTSFAST_CASE(NK)                                                              \
  case NK:                                                                             \
    weighted_sum_fwd_kernel<T, NK, kReadWs, kWriteOut><<<grid, kThreads, 0, s>>>(in, w, out, ws, n, vec); \
    break;
  if constexpr (kWriteOut) {
    switch (nk) {
      DARTSFAST_CASE(1) DARTSFAST_CASE(2) DARTSFAST_CASE(3) DARTSFAST_CASE(4)
      DARTSFAST_CASE(5) DARTSFAST_CASE(6) DARTSFAST_CASE(7) DARTSFAST_CASE(8)
      default: break;
    }
  } else {
    // Only the last chunk is partial: earlier chunks always hold kMaxInputs inputs,
    // which keeps the instantiations at 18 per dtype instead of 32.
    weighted_sum_fwd_kernel<T, kMaxInputs, kReadWs, false><<<grid, kThreads, 0, s>>>(in, w, out, ws, n, vec);
  }
#undef DARTSFAST_CASE
}

bool aligned16(const void* p) { return (reinterpret_cast<uintptr_t>(p) & 15u) == 0; }

template <typename T>
cudaError_t launch_all(const void* const* inputs, int64_t K, const float* weights, T* out,
                       float* ws, int64_t n, cudaStream_t stream) {
  constexpr int V = Io<T>::V;
  const int64_t nchunks = (K + kMaxInputs - 1) / kMaxInputs;
  bool vec = aligned16(out) && (nchunks == 1 || aligned16(ws));
  for (int64_t k = 0; k < K; ++k) vec = vec && aligned16(inputs[k]);

  int device = 0;
  cudaError_t err = cudaGetDevice(&device);
  if (err != cudaSuccess) return err;
  const int64_t work = vec ? (n + V - 1) / V : n;
  const int64_t cap = static_cast<int64_t>(sm_count(device)) * kBlocksPerSm;
  int64_t blocks = (work + kThreads - 1) / kThreads;
  const unsigned grid = static_cast<unsigned>(blocks < cap ? (blocks > 0 ? blocks : 1) : cap);

  for (int64_t c = 0; c < nchunks; ++c) {
    const int64_t k0 = c * kMaxInputs;
    const int nk = static_cast<int>(K - k0 < kMaxInputs ? K - k0 : kMaxInputs);
    InputPtrs in{};
    for (int j = 0; j < nk; ++j) in.p[j] = inputs[k0 + j];
    const bool first = c == 0, last = c == nchunks - 1;
    const float* w = weights + k0;
    if (first && last) launch_chunk<T, false, true>(nk, in, w, out, ws, n, vec, grid, stream);
    else if (first)    launch_chunk<T, false, false>(nk, in, w, out, ws, n, vec, grid, stream);
    else if (last)     launch_chunk<T, true, true>(nk, in, w, out, ws, n, vec, grid, stream);
    else               launch_chunk<T, true, false>(nk, in, w, out, ws, n, vec, grid, stream);
    err = cudaGetLastError();
    if (err != cudaSuccess) return err;
  }
  return cudaSuccess;
}

}  // namespace
}  // namespace dartsfast

cudaError_t dartsfast_weighted_sum_fwd_launch(int dtype_code, const void* const* inputs,
                                              int64_t K, const float* weights, void* out,
                                              float* workspace, int64_t n,
                                              cudaStream_t stream) {
  using namespace dartsfast;
  if (K < 1 || n < 0 || inputs == nullptr || weights == nullptr) return cudaErrorInvalidValue;
  if (n == 0) return cudaSuccess;
  if (out == nullptr || (K > kMaxInputs && workspace == nullptr)) return cudaErrorInvalidValue;
  for (int64_t k = 0; k < K; ++k)
    if (inputs[k] == nullptr) return cudaErrorInvalidValue;
  switch (dtype_code) {
    case kFloat32:
      return launch_all<float>(inputs, K, weights, static_cast<float*>(out), workspace, n, stream);
    case kFloat16:
      return launch_all<__half>(inputs, K, weights, static_cast<__half*>(out), workspace, n, stream);
    case kBFloat16:
      return launch_all<__nv_bfloat16>(inputs, K, weights, static_cast<__nv_bfloat16*>(out),
                                       workspace, n, stream);
    default:
      return cudaErrorInvalidValue;
  }
}
