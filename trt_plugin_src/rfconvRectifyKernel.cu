/*
 * Fused rectification kernels (see rfconvRectifyKernel.h).
 *
 * rectifyAllKernel touches every element: 16-byte vector loads and stores, the per-axis valid
 * counts cached in shared memory, positions decoded with multiply-shift division once per vector.
 * rectifyBorderKernel touches only the positions whose factor is not 1 (in place, sum mode, nothing
 * to fuse): the rows above and below the interior rectangle and the columns beside it.
 */
#include "rfconvRectifyKernel.h"

#include <cuda_fp16.h>

#include <algorithm>
#include <cstddef>
#include <cstdint>

namespace rfconv
{
namespace
{

constexpr int32_t kThreads = 256;
constexpr int32_t kBlocksPerSm = 8;
constexpr int32_t kVectorBytes = 16;
//! Elements handled by one launch, so that 32-bit indices (and FastDivmod, n < 2^31) suffice.
constexpr int64_t kMaxElementsPerLaunch = int64_t{1} << 30;
//! Shared memory for the per-axis counts (outH + outW ints) before falling back to recomputing them.
constexpr size_t kMaxCountsBytes = 48 * 1024;

struct KernelParams
{
    FastDivmod outW;
    FastDivmod outH;
    FastDivmod channels;
    uint32_t channelStart; //!< channel of the first plane of this launch
    int32_t inH;
    int32_t inW;
    AxisGeometry gh;
    AxisGeometry gw;
    CountMode mode;
    int32_t numerator; //!< numH * numW
    bool relu;
    bool countsInSmem;
};

//! Where the border positions of one plane lie: full rows above and below the interior rectangle,
//! and in between only the columns left and right of it.
struct BorderLayout
{
    uint32_t topRows;
    uint32_t midRows;
    uint32_t leftCols;
    uint32_t rightStart;
    uint32_t topCount; //!< topRows * outW
    uint32_t midCount; //!< midRows * sideCols
    FastDivmod sideCols;
    FastDivmod perPlane;
};

template <typename T>
struct Convert;

template <>
struct Convert<float>
{
    static __device__ __forceinline__ float toFloat(float v)
    {
        return v;
    }
    static __device__ __forceinline__ float fromFloat(float v)
    {
        return v;
    }
};

template <>
struct Convert<__half>
{
    static __device__ __forceinline__ float toFloat(__half v)
    {
        return __half2float(v);
    }
    static __device__ __forceinline__ __half fromFloat(float v)
    {
        return __float2half_rn(v);
    }
};

template <typename T, int32_t kVec>
struct alignas(sizeof(T) * kVec) Vector
{
    T v[kVec];
};

//! y * f (+ b) (relu), in float, as separate correctly rounded operations like PyTorch's ops.
__device__ __forceinline__ float applyOne(float y, float f, float b, bool hasBias, bool relu)
{
    float v = __fmul_rn(y, f);
    if (hasBias)
    {
        v = __fadd_rn(v, b);
    }
    if (relu)
    {
        v = v < 0.0F ? 0.0F : v; // keeps NaN, as torch.relu does
    }
    return v;
}

__device__ __forceinline__ int32_t countAlongH(KernelParams const& p, int32_t const* sCounts, uint32_t h)
{
    return p.countsInSmem ? sCounts[h] : validCount(p.gh, p.inH, static_cast<int32_t>(h), p.mode);
}

__device__ __forceinline__ int32_t countAlongW(KernelParams const& p, int32_t const* sCounts, uint32_t w)
{
    return p.countsInSmem ? sCounts[p.outH.divisor + w] : validCount(p.gw, p.inW, static_cast<int32_t>(w), p.mode);
}

template <typename T, int32_t kVec>
__global__ void __launch_bounds__(kThreads)
    rectifyAllKernel(T const* input, T* output, T const* bias, KernelParams p, uint32_t count)
{
    extern __shared__ int32_t sCounts[];
    uint32_t const outH = p.outH.divisor;
    uint32_t const outW = p.outW.divisor;
    if (p.countsInSmem)
    {
        for (uint32_t i = threadIdx.x; i < outH + outW; i += blockDim.x)
        {
            sCounts[i] = i < outH ? validCount(p.gh, p.inH, static_cast<int32_t>(i), p.mode)
                                  : validCount(p.gw, p.inW, static_cast<int32_t>(i - outH), p.mode);
        }
        __syncthreads();
    }
    bool const hasBias = bias != nullptr;
    uint32_t const vectors = (count + kVec - 1) / kVec;
    for (uint32_t v = blockIdx.x * blockDim.x + threadIdx.x; v < vectors; v += gridDim.x * blockDim.x)
    {
        uint32_t const first = v * kVec;
        uint32_t row;
        uint32_t w;
        uint32_t plane;
        uint32_t h;
        p.outW.divmod(first, row, w);
        p.outH.divmod(row, plane, h);
        uint32_t channel = 0;
        if (hasBias)
        {
            uint32_t unused;
            p.channels.divmod(plane + p.channelStart, unused, channel);
        }

        bool const whole = first + kVec <= count;
        Vector<T, kVec> x{};
        if (whole)
        {
            x = *reinterpret_cast<Vector<T, kVec> const*>(input + first);
        }
        else
        {
            for (uint32_t e = 0; first + e < count; ++e)
            {
                x.v[e] = input[first + e];
            }
        }
#pragma unroll
        for (int32_t e = 0; e < kVec; ++e)
        {
            float const f = factorFromCounts(p.numerator, countAlongH(p, sCounts, h) * countAlongW(p, sCounts, w));
            float const b = hasBias ? Convert<T>::toFloat(bias[channel]) : 0.0F;
            x.v[e] = Convert<T>::fromFloat(applyOne(Convert<T>::toFloat(x.v[e]), f, b, hasBias, p.relu));
            if (++w == outW)
            {
                w = 0;
                if (++h == outH)
                {
                    h = 0;
                    if (++channel == p.channels.divisor)
                    {
                        channel = 0;
                    }
                }
            }
        }
        if (whole)
        {
            *reinterpret_cast<Vector<T, kVec>*>(output + first) = x;
        }
        else
        {
            for (uint32_t e = 0; first + e < count; ++e)
            {
                output[first + e] = x.v[e];
            }
        }
    }
}

template <typename T>
__global__ void __launch_bounds__(kThreads)
    rectifyBorderKernel(T* data, KernelParams p, BorderLayout b, uint32_t count)
{
    uint32_t const i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= count)
    {
        return;
    }
    uint32_t plane;
    uint32_t k;
    b.perPlane.divmod(i, plane, k);
    uint32_t h;
    uint32_t w;
    if (k < b.topCount)
    {
        p.outW.divmod(k, h, w);
    }
    else if (k - b.topCount < b.midCount)
    {
        uint32_t side;
        b.sideCols.divmod(k - b.topCount, h, side);
        h += b.topRows;
        w = side < b.leftCols ? side : b.rightStart + (side - b.leftCols);
    }
    else
    {
        p.outW.divmod(k - b.topCount - b.midCount, h, w);
        h += b.topRows + b.midRows;
    }
    int32_t const den = validCount(p.gh, p.inH, static_cast<int32_t>(h), p.mode)
        * validCount(p.gw, p.inW, static_cast<int32_t>(w), p.mode);
    T* const at = data + static_cast<size_t>(plane) * p.outH.divisor * p.outW.divisor + h * p.outW.divisor + w;
    *at = Convert<T>::fromFloat(__fmul_rn(Convert<T>::toFloat(*at), factorFromCounts(p.numerator, den)));
}

bool aligned(void const* ptr)
{
    return reinterpret_cast<uintptr_t>(ptr) % kVectorBytes == 0;
}

cudaError_t multiprocessorCount(int32_t& count)
{
    int32_t device = 0;
    cudaError_t status = cudaGetDevice(&device);
    if (status != cudaSuccess)
    {
        return status;
    }
    return cudaDeviceGetAttribute(&count, cudaDevAttrMultiProcessorCount, device);
}

template <typename T>
cudaError_t launchAll(RectifyProblem const& problem, KernelParams params, T const* input, T* output,
    T const* bias, cudaStream_t stream)
{
    int32_t sms = 0;
    cudaError_t status = multiprocessorCount(sms);
    if (status != cudaSuccess)
    {
        return status;
    }
    constexpr int32_t kVec = kVectorBytes / sizeof(T);
    int64_t const planeSize = int64_t{problem.outH} * problem.outW;
    int64_t const planes = problem.batch * problem.channels;
    int64_t const planesPerLaunch = std::max<int64_t>(1, kMaxElementsPerLaunch / planeSize);
    size_t const countsBytes = sizeof(int32_t) * (static_cast<size_t>(problem.outH) + problem.outW);
    params.countsInSmem = countsBytes <= kMaxCountsBytes;
    size_t const smem = params.countsInSmem ? countsBytes : 0;
    for (int64_t firstPlane = 0; firstPlane < planes; firstPlane += planesPerLaunch)
    {
        int64_t const offset = firstPlane * planeSize;
        uint32_t const count = static_cast<uint32_t>(std::min(planesPerLaunch, planes - firstPlane) * planeSize);
        params.channelStart = static_cast<uint32_t>(firstPlane % problem.channels);
        T const* in = input + offset;
        T* out = output + offset;
        bool const vectorize = aligned(in) && aligned(out);
        int32_t const vec = vectorize ? kVec : 1;
        int64_t const threadsNeeded = (int64_t{count} + vec - 1) / vec;
        int32_t const blocks = static_cast<int32_t>(
            std::min<int64_t>((threadsNeeded + kThreads - 1) / kThreads, int64_t{sms} * kBlocksPerSm));
        if (vectorize)
        {
            rectifyAllKernel<T, kVec><<<blocks, kThreads, smem, stream>>>(in, out, bias, params, count);
        }
        else
        {
            rectifyAllKernel<T, 1><<<blocks, kThreads, smem, stream>>>(in, out, bias, params, count);
        }
        status = cudaGetLastError();
        if (status != cudaSuccess)
        {
            return status;
        }
    }
    return cudaSuccess;
}

template <typename T>
cudaError_t launchBorder(RectifyProblem const& problem, KernelParams const& params, AxisInterior ih,
    AxisInterior iw, T* data, cudaStream_t stream)
{
    uint32_t const outH = static_cast<uint32_t>(problem.outH);
    uint32_t const outW = static_cast<uint32_t>(problem.outW);
    uint32_t const interiorRows = static_cast<uint32_t>(ih.last - ih.first + 1);
    uint32_t const interiorCols = static_cast<uint32_t>(iw.last - iw.first + 1);
    BorderLayout layout{};
    layout.topRows = static_cast<uint32_t>(ih.first);
    layout.midRows = interiorRows;
    layout.leftCols = static_cast<uint32_t>(iw.first);
    layout.rightStart = static_cast<uint32_t>(iw.last + 1);
    uint32_t const sideCols = outW - interiorCols;
    layout.topCount = layout.topRows * outW;
    layout.midCount = layout.midRows * sideCols;
    layout.sideCols = FastDivmod::make(std::max<uint32_t>(sideCols, 1));
    uint32_t const perPlane = outH * outW - interiorRows * interiorCols;
    if (perPlane == 0)
    {
        return cudaSuccess; // every factor is 1
    }
    layout.perPlane = FastDivmod::make(perPlane);
    int64_t const planeSize = int64_t{problem.outH} * problem.outW;
    int64_t const planes = problem.batch * problem.channels;
    int64_t const planesPerLaunch = std::max<int64_t>(1, kMaxElementsPerLaunch / planeSize);
    for (int64_t firstPlane = 0; firstPlane < planes; firstPlane += planesPerLaunch)
    {
        uint32_t const count = static_cast<uint32_t>(std::min(planesPerLaunch, planes - firstPlane) * perPlane);
        int32_t const blocks = static_cast<int32_t>((int64_t{count} + kThreads - 1) / kThreads);
        rectifyBorderKernel<T><<<blocks, kThreads, 0, stream>>>(data + firstPlane * planeSize, params, layout, count);
        cudaError_t const status = cudaGetLastError();
        if (status != cudaSuccess)
        {
            return status;
        }
    }
    return cudaSuccess;
}

template <typename T>
cudaError_t launchTyped(RectifyProblem const& problem, T const* input, T* output, T const* bias, cudaStream_t stream)
{
    RectifyGeometry const& g = problem.geometry;
    KernelParams params{};
    params.outW = FastDivmod::make(static_cast<uint32_t>(problem.outW));
    params.outH = FastDivmod::make(static_cast<uint32_t>(problem.outH));
    params.channels = FastDivmod::make(static_cast<uint32_t>(problem.channels));
    params.inH = problem.inH;
    params.inW = problem.inW;
    params.gh = g.h;
    params.gw = g.w;
    params.mode = g.countMode;
    params.numerator = numerator(g.h, g.averageMode, g.countMode) * numerator(g.w, g.averageMode, g.countMode);
    params.relu = problem.relu;

    bool const nothingToFuse = !g.averageMode && bias == nullptr && !problem.relu;
    if (input == output && nothingToFuse)
    {
        AxisInterior const ih = interiorOf(g.h, problem.inH, g.countMode);
        AxisInterior const iw = interiorOf(g.w, problem.inW, g.countMode);
        if (ih.first <= ih.last && iw.first <= iw.last)
        {
            return launchBorder<T>(problem, params, ih, iw, output, stream);
        }
    }
    return launchAll<T>(problem, params, input, output, bias, stream);
}

} // namespace

GeometryStatus checkProblem(RectifyProblem const& problem)
{
    if (problem.batch < 1 || problem.channels < 1 || problem.channels > (int64_t{1} << 30))
    {
        return GeometryStatus::kBAD_ARGUMENT;
    }
    RectifyGeometry const& g = problem.geometry;
    GeometryStatus status = checkAxis(g.h, problem.inH, g.countMode);
    if (status == GeometryStatus::kOK)
    {
        status = checkAxis(g.w, problem.inW, g.countMode);
    }
    if (status != GeometryStatus::kOK)
    {
        return status;
    }
    if (outputSize(g.h, problem.inH) != problem.outH || outputSize(g.w, problem.inW) != problem.outW
        || int64_t{problem.outH} * problem.outW > kMaxElementsPerLaunch)
    {
        return GeometryStatus::kBAD_ARGUMENT;
    }
    return GeometryStatus::kOK;
}

cudaError_t launchRectify(RectifyProblem const& problem, ElementType type, void const* input, void* output,
    void const* bias, cudaStream_t stream)
{
    if (input == nullptr || output == nullptr || checkProblem(problem) != GeometryStatus::kOK)
    {
        return cudaErrorInvalidValue;
    }
    switch (type)
    {
    case ElementType::kFLOAT32:
        return launchTyped<float>(problem, static_cast<float const*>(input), static_cast<float*>(output),
            static_cast<float const*>(bias), stream);
    case ElementType::kFLOAT16:
        return launchTyped<__half>(problem, static_cast<__half const*>(input), static_cast<__half*>(output),
            static_cast<__half const*>(bias), stream);
    }
    return cudaErrorInvalidValue;
}

} // namespace rfconv
