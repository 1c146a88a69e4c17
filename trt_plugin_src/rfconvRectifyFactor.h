/*
 * Rectification factor arithmetic shared by the CUDA kernel, the TensorRT plugin and the host test.
 *
 * For a conv output position (h, w) the factor is num / (validH[h] * validW[w]) where
 * num = tapsH * tapsW (sum mode) or 1 (average mode) and valid*[] counts the kernel taps, with
 * stride and dilation, that land inside the un-padded input along one axis. Everything here is
 * integer arithmetic plus one correctly rounded float division, so host and device agree bit for
 * bit with exporter.model.scale.rectify_scale(..., dtype=torch.float32).
 *
 * Two counting rules (CountMode), as in exporter/scale.py:
 *   kEXACT  - counts taps exactly for any kernel size and dilation (paper, eq. 5).
 *   kRFCONV - the official rfconv CUDA op: the kernel is an extent of k + 2*(d-1) pixels,
 *             taps = (extent-1)/d + 1 and valid = (len-1)/d + 1, len = window clipped to the input.
 */
#ifndef RFCONV_RECTIFY_FACTOR_H
#define RFCONV_RECTIFY_FACTOR_H

#include <cstdint>

#if defined(__CUDACC__)
#define RFCONV_HD __host__ __device__ __forceinline__
#else
#define RFCONV_HD inline
#endif

namespace rfconv
{

enum class CountMode : int32_t
{
    kEXACT = 0,
    kRFCONV = 1,
};

//! Why a geometry cannot be rectified (mirrors the ValueErrors of exporter.model.scale).
enum class GeometryStatus : int32_t
{
    kOK = 0,
    kBAD_ARGUMENT = 1,         //!< kernel, stride or dilation < 1, padding < 0 or input size < 1
    kEMPTY_OUTPUT = 2,         //!< the conv output along this axis would be empty
    kPADDING_ONLY = 3,         //!< an output position sees only padding (its factor would divide by zero)
    kRFCONV_EMPTY_WINDOW = 4,  //!< count_mode rfconv leaves an output position with no input pixel
};

//! Conv geometry along one spatial axis, in pixels.
struct AxisGeometry
{
    int32_t kernel;
    int32_t stride;
    int32_t padding;
    int32_t dilation;
};

//! Floor division for b > 0 (C++ '/' truncates toward zero).
RFCONV_HD int32_t floorDiv(int32_t a, int32_t b)
{
    int32_t const q = a / b;
    return (a % b != 0 && a < 0) ? q - 1 : q;
}

RFCONV_HD int32_t minInt(int32_t a, int32_t b)
{
    return a < b ? a : b;
}

RFCONV_HD int32_t maxInt(int32_t a, int32_t b)
{
    return a > b ? a : b;
}

//! Number of conv output positions for an input of `size` pixels (may be < 1 for invalid geometry).
RFCONV_HD int32_t outputSize(AxisGeometry g, int32_t size)
{
    return floorDiv(size + 2 * g.padding - g.dilation * (g.kernel - 1) - 1, g.stride) + 1;
}

//! Kernel taps along the axis as the counting rule sees them.
RFCONV_HD int32_t taps(AxisGeometry g, CountMode mode)
{
    if (mode == CountMode::kEXACT)
    {
        return g.kernel;
    }
    int32_t const extent = g.kernel + 2 * (g.dilation - 1);
    return (extent - 1) / g.dilation + 1;
}

//! Taps of output position `pos` that land inside [0, size); can be < 1 for invalid geometry.
RFCONV_HD int32_t validCount(AxisGeometry g, int32_t size, int32_t pos, CountMode mode)
{
    int32_t const start = pos * g.stride - g.padding;
    if (mode == CountMode::kEXACT)
    {
        // taps i in [0, k) with 0 <= start + i*d <= size - 1
        int32_t const first = maxInt(floorDiv(-start + g.dilation - 1, g.dilation), 0);
        int32_t const last = minInt(floorDiv(size - 1 - start, g.dilation), g.kernel - 1);
        return last - first + 1;
    }
    int32_t const extent = g.kernel + 2 * (g.dilation - 1);
    int32_t const clipped = minInt(start + extent, size) - maxInt(start, 0);
    // the official op uses C integer division (truncation toward zero)
    return (clipped - 1) / g.dilation + 1;
}

//! Numerator of the factor along one axis: the taps (sum mode) or 1 (average mode).
RFCONV_HD int32_t numerator(AxisGeometry g, bool averageMode, CountMode mode)
{
    return averageMode ? 1 : taps(g, mode);
}

//! Correctly rounded float quotient (no fast-math reciprocal on the device).
RFCONV_HD float divideRn(float a, float b)
{
#if defined(__CUDA_ARCH__)
    return __fdiv_rn(a, b);
#else
    return a / b;
#endif
}

//! Factor num / den as float, exactly 1 when num == den. num and den are below 2^24, so the
//! quotient is the correctly rounded value of the exact rational (what rectify_scale gives in fp32).
RFCONV_HD float factorFromCounts(int32_t num, int32_t den)
{
    return num == den ? 1.0F : divideRn(static_cast<float>(num), static_cast<float>(den));
}

//! Full geometry of one rectified conv.
struct RectifyGeometry
{
    AxisGeometry h;
    AxisGeometry w;
    bool averageMode;
    CountMode countMode;
};

//! Factor at output position (oh, ow) for an input of inH x inW pixels.
RFCONV_HD float factorAt(RectifyGeometry const& g, int32_t inH, int32_t inW, int32_t oh, int32_t ow)
{
    int32_t const num = numerator(g.h, g.averageMode, g.countMode) * numerator(g.w, g.averageMode, g.countMode);
    int32_t const den = validCount(g.h, inH, oh, g.countMode) * validCount(g.w, inW, ow, g.countMode);
    return factorFromCounts(num, den);
}

//! Checks one axis the way exporter.model.scale._axis_valid does (same order of checks). O(output size).
inline GeometryStatus checkAxis(AxisGeometry g, int32_t size, CountMode mode)
{
    if (g.kernel < 1 || g.stride < 1 || g.dilation < 1 || g.padding < 0 || size < 1)
    {
        return GeometryStatus::kBAD_ARGUMENT;
    }
    int32_t const out = outputSize(g, size);
    if (out < 1)
    {
        return GeometryStatus::kEMPTY_OUTPUT;
    }
    for (int32_t pos = 0; pos < out; ++pos)
    {
        if (validCount(g, size, pos, CountMode::kEXACT) < 1)
        {
            return GeometryStatus::kPADDING_ONLY;
        }
    }
    if (mode == CountMode::kRFCONV)
    {
        for (int32_t pos = 0; pos < out; ++pos)
        {
            if (validCount(g, size, pos, CountMode::kRFCONV) < 1)
            {
                return GeometryStatus::kRFCONV_EMPTY_WINDOW;
            }
        }
    }
    return GeometryStatus::kOK;
}

//! Output positions [first, last] along one axis whose count equals the taps (factor 1 in sum
//! mode). The set is an interval because the clipped window length is concave in the position;
//! it is empty (first > last) when no position sees the whole kernel. O(output size).
struct AxisInterior
{
    int32_t first;
    int32_t last;
};

inline AxisInterior interiorOf(AxisGeometry g, int32_t size, CountMode mode)
{
    int32_t const out = outputSize(g, size);
    int32_t const full = taps(g, mode);
    AxisInterior interior{out, -1};
    for (int32_t pos = 0; pos < out; ++pos)
    {
        if (validCount(g, size, pos, mode) == full)
        {
            interior.first = minInt(interior.first, pos);
            interior.last = pos;
        }
    }
    return interior;
}

//! Unsigned division by a run-time constant with a multiply and a shift (valid for n < 2^31).
struct FastDivmod
{
    uint32_t divisor{1};
    uint32_t multiplier{0};
    uint32_t shift{0};

    static FastDivmod make(uint32_t d)
    {
        FastDivmod f;
        f.divisor = d;
        if (d > 1)
        {
            uint32_t log2Ceil = 0;
            while ((uint64_t{1} << log2Ceil) < d)
            {
                ++log2Ceil;
            }
            uint32_t const p = 31 + log2Ceil;
            f.multiplier = static_cast<uint32_t>(((uint64_t{1} << p) + d - 1) / d);
            f.shift = p - 32;
        }
        return f;
    }

    RFCONV_HD uint32_t div(uint32_t n) const
    {
        if (divisor == 1)
        {
            return n;
        }
#if defined(__CUDA_ARCH__)
        return __umulhi(n, multiplier) >> shift;
#else
        return static_cast<uint32_t>((static_cast<uint64_t>(n) * multiplier) >> 32) >> shift;
#endif
    }

    RFCONV_HD void divmod(uint32_t n, uint32_t& quotient, uint32_t& remainder) const
    {
        quotient = div(n);
        remainder = n - quotient * divisor;
    }
};

} // namespace rfconv

#endif // RFCONV_RECTIFY_FACTOR_H
