/*
 * Host test of rfconvRectifyFactor.h, built with the host compiler only.
 *
 *   factorHostTest --self-check
 *       Sweeps small geometries and checks the header against brute-force loops: valid counts,
 *       geometry statuses, the interior interval, the factor's rounding, FastDivmod. Exit 0 on success.
 *   factorHostTest < geometries.txt
 *       One geometry per line: inH inW kH kW sH sW pH pW dH dW average(0|1) count_mode(exact|rfconv).
 *       Prints "ok Ho Wo" and then Ho*Wo float32 factors (row-major, C99 hex floats, one line), or
 *       "error <GeometryStatus>" - what the kernel would compute, for comparison with rectify_scale.
 */
#include "rfconvRectifyFactor.h"

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <iostream>
#include <random>
#include <sstream>
#include <string>

using namespace rfconv;

namespace
{

int gFailures = 0;

void fail(std::string const& what)
{
    if (++gFailures <= 20)
    {
        std::cerr << "FAIL: " << what << "\n";
    }
}

std::string describe(AxisGeometry g, int32_t size, CountMode mode)
{
    std::ostringstream s;
    s << "k=" << g.kernel << " s=" << g.stride << " p=" << g.padding << " d=" << g.dilation << " size=" << size
      << " mode=" << (mode == CountMode::kEXACT ? "exact" : "rfconv");
    return s.str();
}

//! Taps i in [0, k) whose pixel start + i*d lies in [0, size), counted one by one.
int32_t bruteExactCount(AxisGeometry g, int32_t size, int32_t pos)
{
    int32_t const start = pos * g.stride - g.padding;
    int32_t count = 0;
    for (int32_t i = 0; i < g.kernel; ++i)
    {
        int32_t const pixel = start + i * g.dilation;
        count += (pixel >= 0 && pixel < size) ? 1 : 0;
    }
    return count;
}

//! Pixels of the official op's window [start, start + extent) that lie inside the input.
int32_t bruteRfconvLength(AxisGeometry g, int32_t size, int32_t pos)
{
    int32_t const start = pos * g.stride - g.padding;
    int32_t const extent = g.kernel + 2 * (g.dilation - 1);
    int32_t len = 0;
    for (int32_t pixel = start; pixel < start + extent; ++pixel)
    {
        len += (pixel >= 0 && pixel < size) ? 1 : 0;
    }
    return len;
}

//! The official op's count for a window that overlaps the input: (len - 1) / d + 1.
int32_t bruteRfconvCount(AxisGeometry g, int32_t size, int32_t pos)
{
    return (bruteRfconvLength(g, size, pos) - 1) / g.dilation + 1;
}

int32_t bruteOutputSize(AxisGeometry g, int32_t size)
{
    // positions whose first tap start = pos*s - p satisfies start + d*(k-1) <= size - 1 + p
    int32_t count = 0;
    while (count * g.stride - g.padding + g.dilation * (g.kernel - 1) <= size - 1 + g.padding)
    {
        ++count;
    }
    return count;
}

void checkAxisSweep(AxisGeometry g, int32_t size, CountMode mode)
{
    std::string const where = describe(g, size, mode);
    int32_t const out = outputSize(g, size);
    if ((out < 0 ? 0 : out) != bruteOutputSize(g, size)) // the formula goes negative where the output is empty
    {
        fail("outputSize " + where);
        return;
    }
    GeometryStatus expected = GeometryStatus::kOK;
    if (out < 1)
    {
        expected = GeometryStatus::kEMPTY_OUTPUT;
    }
    else
    {
        for (int32_t pos = 0; pos < out && expected == GeometryStatus::kOK; ++pos)
        {
            if (bruteExactCount(g, size, pos) < 1)
            {
                expected = GeometryStatus::kPADDING_ONLY;
            }
        }
        // Where the official window misses the input its arithmetic runs on a negative length (C
        // truncation included, as exporter.model.scale models it); there the formula is the definition.
        for (int32_t pos = 0; pos < out && expected == GeometryStatus::kOK && mode == CountMode::kRFCONV; ++pos)
        {
            if (validCount(g, size, pos, CountMode::kRFCONV) < 1)
            {
                expected = GeometryStatus::kRFCONV_EMPTY_WINDOW;
            }
        }
    }
    if (checkAxis(g, size, mode) != expected)
    {
        fail("checkAxis " + where);
        return;
    }
    if (expected != GeometryStatus::kOK)
    {
        return;
    }
    int32_t const full = taps(g, mode);
    int32_t const bruteFull = mode == CountMode::kEXACT ? g.kernel : bruteRfconvCount(g, 1 << 20, 1 << 10);
    if (full != bruteFull)
    {
        fail("taps " + where);
    }
    AxisInterior const interior = interiorOf(g, size, mode);
    for (int32_t pos = 0; pos < out; ++pos)
    {
        int32_t const count = validCount(g, size, pos, mode);
        bool const comparable = mode == CountMode::kEXACT || bruteRfconvLength(g, size, pos) >= 1;
        int32_t const brute
            = mode == CountMode::kEXACT ? bruteExactCount(g, size, pos) : bruteRfconvCount(g, size, pos);
        if (comparable && count != brute)
        {
            fail("validCount pos=" + std::to_string(pos) + " " + where);
        }
        bool const inInterior = pos >= interior.first && pos <= interior.last;
        if (inInterior != (count == full))
        {
            fail("interior interval pos=" + std::to_string(pos) + " " + where);
        }
    }
}

void checkRounding()
{
    // factorFromCounts must be the float nearest to num/den (ties to even), as rectify_scale gives
    // after computing in float64 and casting.
    for (int32_t num = 1; num <= 400; ++num)
    {
        for (int32_t den = 1; den <= 400; ++den)
        {
            float const f = factorFromCounts(num, den);
            float const reference = static_cast<float>(static_cast<double>(num) / static_cast<double>(den));
            if (std::memcmp(&f, &reference, sizeof(float)) != 0)
            {
                fail("factorFromCounts " + std::to_string(num) + "/" + std::to_string(den));
            }
        }
    }
}

void checkFastDivmod()
{
    std::mt19937 rng(1234);
    std::uniform_int_distribution<uint32_t> dividend(0, (1U << 31) - 1);
    uint32_t const divisors[] = {1, 2, 3, 5, 7, 14, 28, 49, 56, 64, 112, 3136, 12544, 65535, 1000003, (1U << 30) + 1};
    for (uint32_t d : divisors)
    {
        FastDivmod const f = FastDivmod::make(d);
        for (int32_t i = 0; i < 20000; ++i)
        {
            uint32_t const n = i < 10 ? (1U << 31) - 1 - static_cast<uint32_t>(i) : dividend(rng);
            uint32_t q;
            uint32_t r;
            f.divmod(n, q, r);
            if (q != n / d || r != n % d)
            {
                fail("FastDivmod " + std::to_string(n) + "/" + std::to_string(d));
                break;
            }
        }
    }
}

int selfCheck()
{
    int32_t axes = 0;
    for (int32_t k = 1; k <= 7; ++k)
        for (int32_t s = 1; s <= 3; ++s)
            for (int32_t d = 1; d <= 3; ++d)
                for (int32_t p = 0; p <= 2 * d * k; ++p)
                    for (int32_t size = 1; size <= 24; ++size)
                        for (CountMode mode : {CountMode::kEXACT, CountMode::kRFCONV})
                        {
                            checkAxisSweep(AxisGeometry{k, s, p, d}, size, mode);
                            ++axes;
                        }
    checkRounding();
    checkFastDivmod();
    std::cout << "self-check: " << axes << " axis geometries, " << gFailures << " failures\n";
    return gFailures == 0 ? 0 : 1;
}

int factorsFromStdin()
{
    std::string line;
    while (std::getline(std::cin, line))
    {
        std::istringstream fields(line);
        int32_t inH, inW, kH, kW, sH, sW, pH, pW, dH, dW, average;
        std::string mode;
        if (!(fields >> inH >> inW >> kH >> kW >> sH >> sW >> pH >> pW >> dH >> dW >> average >> mode)
            || (mode != "exact" && mode != "rfconv"))
        {
            std::cerr << "bad geometry line: " << line << "\n";
            return 2;
        }
        RectifyGeometry const g{AxisGeometry{kH, sH, pH, dH}, AxisGeometry{kW, sW, pW, dW}, average != 0,
            mode == "exact" ? CountMode::kEXACT : CountMode::kRFCONV};
        GeometryStatus status = checkAxis(g.h, inH, g.countMode);
        if (status == GeometryStatus::kOK)
        {
            status = checkAxis(g.w, inW, g.countMode);
        }
        if (status != GeometryStatus::kOK)
        {
            std::cout << "error " << static_cast<int32_t>(status) << "\n";
            continue;
        }
        int32_t const outH = outputSize(g.h, inH);
        int32_t const outW = outputSize(g.w, inW);
        std::cout << "ok " << outH << " " << outW << "\n";
        for (int32_t oh = 0; oh < outH; ++oh)
        {
            for (int32_t ow = 0; ow < outW; ++ow)
            {
                std::printf("%s%a", (oh == 0 && ow == 0) ? "" : " ", static_cast<double>(factorAt(g, inH, inW, oh, ow)));
            }
        }
        std::printf("\n");
        std::fflush(stdout);
    }
    return 0;
}

} // namespace

int main(int argc, char** argv)
{
    if (argc == 2 && std::strcmp(argv[1], "--self-check") == 0)
    {
        return selfCheck();
    }
    if (argc != 1)
    {
        std::cerr << "usage: " << argv[0] << " [--self-check] < geometries\n";
        return 2;
    }
    return factorsFromStdin();
}
