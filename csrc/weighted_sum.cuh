// Fused forward of the DARTS mixed-op weighted sum:  out[i] = sum_k w[k] * x_k[i].
//
// Memory-bound: K reads + 1 write per element, versus ~5K element moves for eager
// `sum(w[k] * x[k])` (one temporary per product and per partial sum).  Accumulation is
// fp32 and there is exactly one rounding to the output dtype, even for K > kMaxInputs.
//
// Deliberately free of torch/ATen headers: this file and weighted_sum.cu compile in
// seconds with plain nvcc; bindings.cpp does the tensor checks and calls the launcher.
#pragma once

#include <cstdint>
#include <cuda_runtime.h>

namespace dartsfast {

// Input pointers travel by value in the kernel's parameter space (64 B for 8), so no
// pointer array is loaded from global memory.  8 covers classic DARTS (8 primitives)
// in one pass; larger K runs in chunks of 8 through an fp32 workspace.
constexpr int kMaxInputs = 8;

// dtype codes shared with bindings.cpp (input dtype == output dtype).
enum DtypeCode : int { kFloat32 = 0, kFloat16 = 1, kBFloat16 = 2 };

struct InputPtrs {
  const void* p[kMaxInputs];
};

}  // namespace dartsfast

// Host launcher, stream-ordered on `stream`.
//   inputs:    host array of K device pointers, each to n elements of the dtype, all with
//              the same layout as `out`.
//   weights:   device pointer to K float32 values (read by the kernel; never copied to host).
//   workspace: device fp32 buffer of n elements, needed only when K > kMaxInputs
//              (may be nullptr otherwise).
// Returns cudaSuccess, cudaErrorInvalidValue for bad arguments, or the launch error.
cudaError_t dartsfast_weighted_sum_fwd_launch(int dtype_code, const void* const* inputs,
                                              int64_t K, const float* weights, void* out,
                                              float* workspace, int64_t n,
                                              cudaStream_t stream);

// Workspace elements the launcher needs for (K, n): 0 when K fits one chunk.
inline int64_t dartsfast_weighted_sum_workspace_numel(int64_t K, int64_t n) {
  return K > dartsfast::kMaxInputs ? n : 0;
}
