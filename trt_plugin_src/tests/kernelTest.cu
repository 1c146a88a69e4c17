/*
 * GPU test of launchRectify against a host loop over the same header arithmetic. Both paths do
 * the same correctly rounded float operations, so results must match bit for bit (fp32 and fp16).
 * Exit 0 on success, 1 on a mismatch, 77 (CTest's skip code) when no CUDA device is visible.
 */
#include "rfconvRectifyKernel.h"

#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstdio>
#include <cstring>
#include <random>
#include <vector>

using namespace rfconv;

namespace
{

constexpr int kSkip = 77;

struct Case
{
    const char* name;
    RectifyProblem problem;
    bool withBias;
    bool inPlace;
    int32_t elementOffset; //!< shifts the buffers off 16-byte alignment (exercises the scalar path)
};

RectifyProblem makeProblem(int64_t n, int64_t c, int32_t inH, int32_t inW, AxisGeometry h, AxisGeometry w,
    bool average, CountMode mode, bool relu)
{
    RectifyProblem p{};
    p.batch = n;
    p.channels = c;
    p.inH = inH;
    p.inW = inW;
    p.outH = outputSize(h, inH);
    p.outW = outputSize(w, inW);
    p.geometry = RectifyGeometry{h, w, average, mode};
    p.relu = relu;
    return p;
}

float toFloat(float v)
{
    return v;
}
float toFloat(__half v)
{
    return __half2float(v);
}
template <typename T>
T fromFloat(float v);
template <>
float fromFloat<float>(float v)
{
    return v;
}
template <>
__half fromFloat<__half>(float v)
{
    return __float2half_rn(v);
}

template <typename T>
bool runCase(Case const& c, ElementType type, std::mt19937& rng)
{
    RectifyProblem const& p = c.problem;
    size_t const count = static_cast<size_t>(p.batch * p.channels) * p.outH * p.outW;
    std::normal_distribution<float> normal(0.0F, 2.0F);
    std::vector<T> input(count);
    std::vector<T> bias(static_cast<size_t>(p.channels));
    for (auto& v : input)
    {
        v = fromFloat<T>(normal(rng));
    }
    for (auto& v : bias)
    {
        v = fromFloat<T>(normal(rng));
    }

    std::vector<T> expected(count);
    for (size_t i = 0; i < count; ++i)
    {
        int32_t const ow = static_cast<int32_t>(i % p.outW);
        int32_t const oh = static_cast<int32_t>((i / p.outW) % p.outH);
        size_t const channel = (i / (static_cast<size_t>(p.outW) * p.outH)) % p.channels;
        float const f = factorAt(p.geometry, p.inH, p.inW, oh, ow);
        float v = toFloat(input[i]) * f;
        if (c.withBias)
        {
            v = v + toFloat(bias[channel]);
        }
        if (p.relu)
        {
            v = v < 0.0F ? 0.0F : v;
        }
        expected[i] = fromFloat<T>(v);
    }

    size_t const bytes = (count + c.elementOffset) * sizeof(T);
    T* dIn = nullptr;
    T* dOut = nullptr;
    T* dBias = nullptr;
    cudaMalloc(&dIn, bytes);
    cudaMalloc(&dOut, bytes);
    cudaMalloc(&dBias, bias.size() * sizeof(T));
    T* in = dIn + c.elementOffset;
    T* out = c.inPlace ? in : dOut + c.elementOffset;
    cudaMemcpy(in, input.data(), count * sizeof(T), cudaMemcpyHostToDevice);
    cudaMemcpy(dBias, bias.data(), bias.size() * sizeof(T), cudaMemcpyHostToDevice);
    cudaError_t status = launchRectify(p, type, in, out, c.withBias ? dBias : nullptr, nullptr);
    if (status == cudaSuccess)
    {
        status = cudaDeviceSynchronize();
    }
    std::vector<T> actual(count);
    cudaMemcpy(actual.data(), out, count * sizeof(T), cudaMemcpyDeviceToHost);
    cudaFree(dIn);
    cudaFree(dOut);
    cudaFree(dBias);
    if (status != cudaSuccess)
    {
        std::printf("FAIL %s: %s\n", c.name, cudaGetErrorString(status));
        return false;
    }
    for (size_t i = 0; i < count; ++i)
    {
        if (std::memcmp(&actual[i], &expected[i], sizeof(T)) != 0)
        {
            std::printf("FAIL %s (%s): element %zu is %g, expected %g\n", c.name,
                type == ElementType::kFLOAT32 ? "fp32" : "fp16", i, static_cast<double>(toFloat(actual[i])),
                static_cast<double>(toFloat(expected[i])));
            return false;
        }
    }
    std::printf("ok   %s (%s)\n", c.name, type == ElementType::kFLOAT32 ? "fp32" : "fp16");
    return true;
}

} // namespace

int main()
{
    int devices = 0;
    if (cudaGetDeviceCount(&devices) != cudaSuccess || devices == 0)
    {
        std::printf("skipped: no CUDA device\n");
        return kSkip;
    }
    AxisGeometry const k3{3, 1, 1, 1};
    AxisGeometry const k3s2{3, 2, 1, 1};
    AxisGeometry const k7s2{7, 2, 3, 1};
    AxisGeometry const k5d2{5, 1, 4, 2};
    AxisGeometry const k2d2{2, 1, 2, 2};
    Case const cases[] = {
        {"3x3 in place border-only", makeProblem(2, 16, 56, 56, k3, k3, false, CountMode::kEXACT, false), false, true, 0},
        {"3x3 out of place", makeProblem(2, 16, 56, 56, k3, k3, false, CountMode::kEXACT, false), false, false, 0},
        {"3x3 bias relu in place", makeProblem(2, 64, 14, 14, k3, k3, false, CountMode::kEXACT, true), true, true, 0},
        {"7x7/2 stem bias relu", makeProblem(1, 8, 224, 224, k7s2, k7s2, false, CountMode::kEXACT, true), true, false, 0},
        {"3x3/2 odd size unaligned", makeProblem(3, 5, 15, 9, k3s2, k3s2, false, CountMode::kEXACT, false), true, false, 1},
        {"7x7 planes unaligned in place", makeProblem(1, 33, 7, 7, k3, k3, false, CountMode::kEXACT, true), true, true, 3},
        {"average mode", makeProblem(2, 4, 17, 23, k3, k3s2, true, CountMode::kEXACT, false), false, true, 0},
        {"5x5 dilation 2 rfconv", makeProblem(2, 4, 20, 19, k5d2, k5d2, false, CountMode::kRFCONV, false), false, true, 0},
        {"5x5 dilation 2 exact", makeProblem(2, 4, 20, 19, k5d2, k5d2, false, CountMode::kEXACT, false), false, true, 0},
        {"2x2 dilation 2 rfconv avg", makeProblem(1, 3, 6, 5, k2d2, k3, true, CountMode::kRFCONV, true), true, false, 0},
        {"no interior (tiny input)", makeProblem(2, 3, 2, 2, k3, k3, false, CountMode::kEXACT, false), false, true, 0},
    };
    std::mt19937 rng(7);
    bool ok = true;
    for (Case const& c : cases)
    {
        ok = runCase<float>(c, ElementType::kFLOAT32, rng) && ok;
        ok = runCase<__half>(c, ElementType::kFLOAT16, rng) && ok;
    }
    RectifyProblem bad = makeProblem(1, 1, 8, 8, k3, k3, false, CountMode::kEXACT, false);
    bad.outH += 1;
    float* dummy = nullptr;
    cudaMalloc(&dummy, 100 * sizeof(float));
    if (launchRectify(bad, ElementType::kFLOAT32, dummy, dummy, nullptr, nullptr) != cudaErrorInvalidValue)
    {
        std::printf("FAIL: a conv output size that does not match the geometry was accepted\n");
        ok = false;
    }
    cudaFree(dummy);
    std::printf(ok ? "all kernel cases passed\n" : "kernel test FAILED\n");
    return ok ? 0 : 1;
}
