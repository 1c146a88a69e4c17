/*
 * Entry points of the plugin shared library, the ones NVIDIA's embeddable plugin library exports
 * (TensorRT OSS plugin/vc/vfcCommon.cpp):
 *   getCreators(nbCreators)  - the IPluginCreatorV3One objects this library provides; the caller registers them;
 *   setLoggerFinder(finder)  - how the plugin finds TensorRT's logger to report errors.
 * IPluginRegistry::loadLibrary(), trtexec --dynamicPlugins and plans that embed the library
 * (IBuilderConfig::setPluginsToSerialize) call them.
 *
 * Loading this library does nothing: no static initializer looks for TensorRT or touches a plugin registry.
 * loadLibrary() dlopens the library while it runs, and a registry call from a static initializer at that
 * point would re-enter the registry (its getAllCreators() is not thread-safe, and loadLibrary "will fail and
 * return nullptr if any of the plugins are already registered", NvInferRuntimeCommon.h). Loaders that only
 * dlopen a file (Triton's plugins=, LD_PRELOAD, trtexec --staticPlugins) load the small companion library
 * librfconv_trt_plugin_autoreg.so instead (rfconvPluginAutoRegister.cpp), which registers what getCreators()
 * returns; it is never handed to loadLibrary.
 */
#include "rfconvRectifyPlugin.h"

#include <atomic>
#include <cstdio>

#define RFCONV_EXPORT __attribute__((visibility("default")))

using namespace nvinfer1;

namespace rfconv
{
namespace plugin
{
namespace
{

std::atomic<ILoggerFinder*> gLoggerFinder{nullptr};

//! The one creator object: what getCreators() returns.
RFConvRectifyPluginCreator& theCreator()
{
    static RFConvRectifyPluginCreator sCreator;
    return sCreator;
}

} // namespace

void logError(char const* message) noexcept
{
    ILoggerFinder* const finder = gLoggerFinder.load();
    ILogger* const logger = finder != nullptr ? finder->findLogger() : nullptr;
    if (logger != nullptr)
    {
        logger->log(ILogger::Severity::kERROR, message);
    }
    else
    {
        std::fprintf(stderr, "[rfconv plugin] ERROR: %s\n", message);
    }
}

void reportError(IErrorRecorder* recorder, ErrorCode code, char const* message) noexcept
{
    // As TensorRT does: errors go to the error recorder when there is one, else to the logger.
    if (recorder != nullptr)
    {
        recorder->reportError(code, message);
    }
    else
    {
        logError(message);
    }
}

} // namespace plugin
} // namespace rfconv

//! The first non-null finder handed over is kept (as NVIDIA's plugin/vc does): TensorRT hands one to every
//! library it loads, and the autoregistration library hands one that reaches TensorRT's global logger.
extern "C" RFCONV_EXPORT void setLoggerFinder(nvinfer1::ILoggerFinder* finder)
{
    nvinfer1::ILoggerFinder* expected = nullptr;
    rfconv::plugin::gLoggerFinder.compare_exchange_strong(expected, finder);
}

//! Forgets `finder` if it is the one kept, so that a finder about to be destroyed (the autoregistration
//! library's, when it is unloaded) is not called afterwards. Not a TensorRT entry point.
extern "C" RFCONV_EXPORT void rfconvReleaseLoggerFinder(nvinfer1::ILoggerFinder* finder)
{
    nvinfer1::ILoggerFinder* expected = finder;
    rfconv::plugin::gLoggerFinder.compare_exchange_strong(expected, nullptr);
}

//! The creators of this library, built on first call (not when the library is loaded); the caller registers
//! them. No registry is touched here: this runs inside IPluginRegistry::loadLibrary.
extern "C" RFCONV_EXPORT nvinfer1::IPluginCreatorInterface* const* getCreators(int32_t& nbCreators)
{
    static nvinfer1::IPluginCreatorInterface* const kCreators[] = {&rfconv::plugin::theCreator()};
    nbCreators = 1;
    return kCreators;
}
