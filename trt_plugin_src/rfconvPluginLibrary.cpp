/*
 * Entry points of the plugin shared library, as IPluginRegistry::loadLibrary(), trtexec
 * --dynamicPlugins and engines with serialized plugin libraries expect them:
 *   getCreators(nbCreators)  - the IPluginCreatorV3One objects this library provides;
 *   setLoggerFinder(finder)  - how the plugin finds TensorRT's logger to report errors.
 */
#include "rfconvRectifyPlugin.h"

#include <atomic>
#include <cstdio>

#define RFCONV_EXPORT __attribute__((visibility("default")))

namespace rfconv
{
namespace plugin
{
namespace
{
std::atomic<nvinfer1::ILoggerFinder*> gLoggerFinder{nullptr};
} // namespace

void logError(char const* message) noexcept
{
    nvinfer1::ILoggerFinder* const finder = gLoggerFinder.load();
    nvinfer1::ILogger* const logger = finder != nullptr ? finder->findLogger() : nullptr;
    if (logger != nullptr)
    {
        logger->log(nvinfer1::ILogger::Severity::kERROR, message);
    }
    else
    {
        std::fprintf(stderr, "[rfconv plugin] ERROR: %s\n", message);
    }
}

} // namespace plugin
} // namespace rfconv

extern "C" RFCONV_EXPORT void setLoggerFinder(nvinfer1::ILoggerFinder* finder)
{
    nvinfer1::ILoggerFinder* expected = nullptr;
    rfconv::plugin::gLoggerFinder.compare_exchange_strong(expected, finder);
}

extern "C" RFCONV_EXPORT nvinfer1::IPluginCreatorInterface* const* getCreators(int32_t& nbCreators)
{
    static rfconv::plugin::RFConvRectifyPluginCreator sRectifyCreator;
    static nvinfer1::IPluginCreatorInterface* const kCreators[] = {&sRectifyCreator};
    nbCreators = 1;
    return kCreators;
}
