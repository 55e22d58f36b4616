// Registers the CUDA ops of dartsfast with the PyTorch dispatcher.
//
// Light headers on purpose: <torch/extension.h> (pybind11 + all of ATen) makes this
// translation unit take ~2 min to compile on a 2-core machine; these per-op headers
// keep it well under that.  No pybind11: the Python module is a bare PyInit__C, and
// importing it runs the static TORCH_LIBRARY registrations below.
#ifdef DARTSFAST_PYTHON_MODULE
#include <Python.h>  // first, as Python requires
#endif

#include <ATen/MemoryOverlap.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/library.h>

#include <vector>

#include "weighted_sum.cuh"

namespace {

int dtype_code(at::ScalarType t) {
  switch (t) {
    case at::kFloat: return dartsfast::kFloat32;
    case at::kHalf: return dartsfast::kFloat16;
    case at::kBFloat16: return dartsfast::kBFloat16;
    default: return -1;
  }
}

// out = sum_k weights[k] * inputs[k], written into `out` (fp32 accumulation, one rounding).
void weighted_sum_cuda(at::TensorList inputs, const at::Tensor& weights, const at::Tensor& out) {
  const int64_t K = static_cast<int64_t>(inputs.size());
  TORCH_CHECK(K >= 1, "weighted_sum_cuda: inputs is empty; need at least one input tensor");
  TORCH_CHECK(out.is_cuda(), "weighted_sum_cuda: out must be a CUDA tensor, got device ", out.device());
  const int code = dtype_code(out.scalar_type());
  TORCH_CHECK(code >= 0, "weighted_sum_cuda: out has dtype ", out.scalar_type(),
              "; supported: float32, float16, bfloat16");
  TORCH_CHECK(out.is_non_overlapping_and_dense(),
              "weighted_sum_cuda: out must be non-overlapping and dense (sizes ", out.sizes(),
              ", strides ", out.strides(), ")");
  for (int64_t k = 0; k < K; ++k) {
    const at::Tensor& x = inputs[k];
    TORCH_CHECK(x.device() == out.device(), "weighted_sum_cuda: inputs[", k, "] is on ",
                x.device(), " but out is on ", out.device());
    TORCH_CHECK(x.scalar_type() == out.scalar_type(), "weighted_sum_cuda: inputs[", k,
                "] has dtype ", x.scalar_type(), " but out has dtype ", out.scalar_type());
    TORCH_CHECK(x.sizes() == out.sizes(), "weighted_sum_cuda: inputs[", k, "] has sizes ",
                x.sizes(), " but out has sizes ", out.sizes());
    TORCH_CHECK(x.strides() == out.strides(), "weighted_sum_cuda: inputs[", k, "] has strides ",
                x.strides(), " but out has strides ", out.strides(),
                " (the kernel walks all buffers with one flat index)");
    TORCH_CHECK(x.is_non_overlapping_and_dense(), "weighted_sum_cuda: inputs[", k,
                "] must be non-overlapping and dense");
    // out == inputs[k] (in place) is fine: each element is read before it is written by
    // the same thread.  A shifted overlap is not.
    TORCH_CHECK(at::get_overlap_status(out, x) != at::MemOverlapStatus::Partial,
                "weighted_sum_cuda: out partially overlaps inputs[", k, "]");
  }
  TORCH_CHECK(weights.device() == out.device(), "weighted_sum_cuda: weights is on ",
              weights.device(), " but out is on ", out.device());
  TORCH_CHECK(weights.dim() == 1 && weights.size(0) == K,
              "weighted_sum_cuda: weights must be 1-D of length ", K, " (one per input), got sizes ",
              weights.sizes());
  TORCH_CHECK(weights.scalar_type() == at::kFloat, "weighted_sum_cuda: weights must be float32, got ",
              weights.scalar_type());
  TORCH_CHECK(weights.is_contiguous(), "weighted_sum_cuda: weights must be contiguous");
  TORCH_CHECK(at::get_overlap_status(out, weights) == at::MemOverlapStatus::No,
              "weighted_sum_cuda: out overlaps weights");

  const int64_t n = out.numel();
  if (n == 0) return;
  const c10::cuda::CUDAGuard guard(out.device());
  std::vector<const void*> ptrs(K);
  for (int64_t k = 0; k < K; ++k) ptrs[k] = inputs[k].const_data_ptr();
  // fp32 partial sums between chunks of 8 inputs; from the caching allocator, ordered on
  // the current stream like the kernels that use it.
  at::Tensor ws;
  const int64_t ws_numel = dartsfast_weighted_sum_workspace_numel(K, n);
  if (ws_numel > 0) ws = at::empty({ws_numel}, out.options().dtype(at::kFloat));
  const cudaError_t err = dartsfast_weighted_sum_fwd_launch(
      code, ptrs.data(), K, weights.const_data_ptr<float>(), out.mutable_data_ptr(),
      ws_numel > 0 ? ws.mutable_data_ptr<float>() : nullptr, n,
      c10::cuda::getCurrentCUDAStream(out.device().index()).stream());
  TORCH_CHECK(err == cudaSuccess, "weighted_sum_cuda: kernel launch failed: ", cudaGetErrorString(err));
}

}  // namespace

// FRAGMENT: the Python side registers more ops in the same `dartsfast` namespace.
TORCH_LIBRARY_FRAGMENT(dartsfast, m) {
  m.def("weighted_sum_cuda(Tensor[] inputs, Tensor weights, Tensor(a!) out) -> ()");
}

TORCH_LIBRARY_IMPL(dartsfast, CUDA, m) {
  m.impl("weighted_sum_cuda", &weighted_sum_cuda);
}

#ifdef DARTSFAST_PYTHON_MODULE
// `import dartsfast._C` loads this .so (running the registrations above); the module
// itself is empty.  Avoids pybind11 and its compile time.
static PyModuleDef dartsfast_c_module = {PyModuleDef_HEAD_INIT, "_C",
                                         "dartsfast CUDA ops, registered as torch.ops.dartsfast.*",
                                         -1, nullptr};
PyMODINIT_FUNC PyInit__C(void) { return PyModule_Create(&dartsfast_c_module); }
#endif
