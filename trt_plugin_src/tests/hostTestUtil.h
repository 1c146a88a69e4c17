/*
 * What the host-side C++ tests share: a failure counter with its check, and a logger that keeps the
 * errors TensorRT's interfaces report, so a test can assert on them.
 */
#pragma once

#include "NvInferRuntime.h"

#include <cstdio>
#include <string>

namespace rfconv_test
{

//! Failed checks so far; main() returns non-zero when any.
inline int gFailures = 0;

//! Count and print a failed condition, and go on (one run reports every failure).
inline void check(bool condition, char const* what)
{
    if (!condition)
    {
        ++gFailures;
        std::printf("FAIL: %s\n", what);
    }
}

//! An ILogger keeping every message of severity kERROR or worse, one per line.
class CapturingLogger : public nvinfer1::ILogger
{
public:
    void log(Severity severity, nvinfer1::AsciiChar const* msg) noexcept override
    {
        if (severity <= Severity::kERROR)
        {
            errors += msg;
            errors += "\n";
        }
    }
    std::string errors;
};

} // namespace rfconv_test
