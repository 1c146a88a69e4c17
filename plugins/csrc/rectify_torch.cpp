// PyTorch binding of the RFConvRectify kernel (trt_plugin_src/rfconvRectifyKernel.cu), for testing
// and benchmarking the kernel against exporter.rectify_scale and PyTorch's own ops on a GPU.
#include "rfconvRectifyKernel.h"

#include <c10/cuda/CUDAStream.h>
#include <c10/cuda/CUDAGuard.h>
#include <torch/extension.h>

#include <optional>
#include <string>
#include <vector>

namespace
{

rfconv::AxisGeometry axisOf(std::vector<int64_t> const& kernel, std::vector<int64_t> const& stride,
    std::vector<int64_t> const& padding, std::vector<int64_t> const& dilation, size_t axis)
{
    return rfconv::AxisGeometry{static_cast<int32_t>(kernel[axis]), static_cast<int32_t>(stride[axis]),
        static_cast<int32_t>(padding[axis]), static_cast<int32_t>(dilation[axis])};
}

char const* describe(rfconv::GeometryStatus status)
{
    switch (status)
    {
    case rfconv::GeometryStatus::kOK: return "ok";
    case rfconv::GeometryStatus::kBAD_ARGUMENT:
        return "bad geometry or a conv output size that does not match it for this input size";
    case rfconv::GeometryStatus::kEMPTY_OUTPUT: return "the conv output would be empty";
    case rfconv::GeometryStatus::kPADDING_ONLY: return "an output position sees only padding";
    case rfconv::GeometryStatus::kRFCONV_EMPTY_WINDOW: return "count_mode 'rfconv' leaves a position with no pixel";
    }
    return "unknown";
}

//! out = act(y * factor + bias) for a conv output y [N, C, Ho, Wo] of a conv whose input is in_hw.
//! `out` may be y itself (in place) or None (a new tensor).
torch::Tensor rectify(torch::Tensor y, std::vector<int64_t> inHw, std::vector<int64_t> kernel,
    std::vector<int64_t> stride, std::vector<int64_t> padding, std::vector<int64_t> dilation, bool averageMode,
    std::string const& countMode, std::optional<torch::Tensor> bias, bool relu, std::optional<torch::Tensor> out)
{
    TORCH_CHECK(y.is_cuda(), "rectify: y must be a CUDA tensor");
    TORCH_CHECK(y.dim() == 4 && y.is_contiguous(), "rectify: y must be a contiguous NCHW tensor");
    TORCH_CHECK(y.scalar_type() == at::kFloat || y.scalar_type() == at::kHalf, "rectify: y must be float32 or float16");
    for (auto const* pair : {&inHw, &kernel, &stride, &padding, &dilation})
    {
        TORCH_CHECK(pair->size() == 2, "rectify: in_hw, kernel, stride, padding and dilation must be pairs");
    }
    TORCH_CHECK(countMode == "exact" || countMode == "rfconv", "rectify: count_mode must be 'exact' or 'rfconv'");
    if (bias)
    {
        TORCH_CHECK(bias->device() == y.device() && bias->scalar_type() == y.scalar_type() && bias->is_contiguous()
                && bias->numel() == y.size(1),
            "rectify: bias must be a contiguous tensor of C values with y's dtype and device");
    }
    torch::Tensor result = out ? *out : torch::empty_like(y);
    TORCH_CHECK(result.sizes() == y.sizes() && result.scalar_type() == y.scalar_type()
            && result.device() == y.device() && result.is_contiguous(),
        "rectify: out must be a contiguous tensor like y");

    rfconv::RectifyProblem problem{};
    problem.batch = y.size(0);
    problem.channels = y.size(1);
    problem.outH = static_cast<int32_t>(y.size(2));
    problem.outW = static_cast<int32_t>(y.size(3));
    problem.inH = static_cast<int32_t>(inHw[0]);
    problem.inW = static_cast<int32_t>(inHw[1]);
    problem.geometry = rfconv::RectifyGeometry{axisOf(kernel, stride, padding, dilation, 0),
        axisOf(kernel, stride, padding, dilation, 1), averageMode,
        countMode == "exact" ? rfconv::CountMode::kEXACT : rfconv::CountMode::kRFCONV};
    problem.relu = relu;
    rfconv::GeometryStatus const status = rfconv::checkProblem(problem);
    TORCH_CHECK(status == rfconv::GeometryStatus::kOK, "rectify: ", describe(status));

    c10::cuda::CUDAGuard guard(y.device());
    rfconv::ElementType const type
        = y.scalar_type() == at::kFloat ? rfconv::ElementType::kFLOAT32 : rfconv::ElementType::kFLOAT16;
    cudaError_t const launched = rfconv::launchRectify(problem, type, y.data_ptr(), result.data_ptr(),
        bias ? bias->data_ptr() : nullptr, c10::cuda::getCurrentCUDAStream());
    TORCH_CHECK(launched == cudaSuccess, "rectify: ", cudaGetErrorString(launched));
    return result;
}

} // namespace

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m)
{
    m.def("rectify", &rectify, "act(y * factor + bias) with the RFConvRectify CUDA kernel", py::arg("y"),
        py::arg("in_hw"), py::arg("kernel"), py::arg("stride"), py::arg("padding"), py::arg("dilation"),
        py::arg("average_mode"), py::arg("count_mode"), py::arg("bias"), py::arg("relu"), py::arg("out"));
}
