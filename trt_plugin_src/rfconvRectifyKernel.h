/*
 * Launcher for the fused rectification kernel: out = act(in * factor[h, w] + bias[c]).
 *
 * Tensors are NCHW, contiguous, float32 or float16. `in` and `out` may be the same buffer (in
 * place). In place, in sum mode, with no bias and no activation, only border positions (factor
 * != 1) are read and written.
 */
#ifndef RFCONV_RECTIFY_KERNEL_H
#define RFCONV_RECTIFY_KERNEL_H

#include "rfconvRectifyFactor.h"

#include <cuda_runtime_api.h>
#include <cstdint>

namespace rfconv
{

enum class ElementType : int32_t
{
    kFLOAT32 = 0,
    kFLOAT16 = 1,
};

//! One rectification problem. Sizes are in elements/pixels; the conv input size (inH, inW)
//! determines the factor, the conv output size (outH, outW) must match it.
struct RectifyProblem
{
    int64_t batch;
    int64_t channels;
    int32_t inH;
    int32_t inW;
    int32_t outH;
    int32_t outW;
    RectifyGeometry geometry;
    bool relu;
};

//! Checks the problem on the host: GeometryStatus::kOK, or why it cannot be rectified. A conv
//! output size that does not match the geometry is reported as kBAD_ARGUMENT.
GeometryStatus checkProblem(RectifyProblem const& problem);

//! Enqueues the kernel(s) on `stream`. `bias` is nullptr or `channels` values of the element type.
//! Returns cudaErrorInvalidValue for a problem that checkProblem() rejects or a null pointer,
//! otherwise the launch status. Does not synchronize.
cudaError_t launchRectify(RectifyProblem const& problem, ElementType type, void const* input, void* output,
    void const* bias, cudaStream_t stream);

} // namespace rfconv

#endif // RFCONV_RECTIFY_KERNEL_H
