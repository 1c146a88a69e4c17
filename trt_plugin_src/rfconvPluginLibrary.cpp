/*
 * Entry points and registration of the plugin shared library.
 *
 * Dynamic registration, as IPluginRegistry::loadLibrary(), trtexec --dynamicPlugins and plans that embed
 * the library (IBuilderConfig::setPluginsToSerialize) use it:
 *   getCreators(nbCreators)  - the IPluginCreatorV3One objects this library provides; the caller registers them;
 *   setLoggerFinder(finder)  - how the plugin finds TensorRT's logger to report errors.
 *
 * Static registration, for loaders that only dlopen the file (Triton's --backend-config=tensorrt,plugins=,
 * LD_PRELOAD, trtexec --staticPlugins, ctypes.CDLL): a static initializer registers the creator with the
 * registry getPluginRegistry() returns, as REGISTER_TENSORRT_PLUGIN does. The library is not linked against
 * libnvinfer (one build serves the full, lean and dispatch runtimes, and embedded copies must not drag
 * libnvinfer in), so getPluginRegistry() is looked up when the library is loaded:
 *   1. in the global scope (dlsym(RTLD_DEFAULT)): the program or a library loaded RTLD_GLOBAL exports it;
 *   2. in a TensorRT runtime library already loaded into a local scope (dlopen(soname, RTLD_NOLOAD)), e.g.
 *      libnvinfer.so.N pulled in by Triton's TensorRT backend or by the tensorrt Python module;
 *   3. only when this library is listed in LD_PRELOAD (the program has not loaded TensorRT yet, but is
 *      about to): by loading libnvinfer.so.N, which the program's own load then reuses.
 * Only a library of the headers' major version is used (getInferLibVersion()): IPluginRegistry's layout
 * differs between major versions. Otherwise nothing is registered and a note says so on stderr.
 *
 * The two paths meet when a library that registered itself on load is then handed to loadLibrary (say,
 * plugins.load_library() after LD_PRELOAD): loadLibrary fails if a creator it is given is already
 * registered. So getCreators() first withdraws the static registration, and the caller's registration
 * replaces it: the creator is registered once, by whoever loaded the library last. The static initializer
 * also registers nothing when a creator of the same name, version and namespace is already there (another
 * copy of this library, e.g. the one an engine embeds), so the registry reports no duplicate.
 */
#include "rfconvRectifyPlugin.h"

#include "NvInferVersion.h"

#include <dlfcn.h>

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <mutex>
#include <string>

#define RFCONV_EXPORT __attribute__((visibility("default")))
#define RFCONV_STRINGIFY2(x) #x
#define RFCONV_STRINGIFY(x) RFCONV_STRINGIFY2(x)

using namespace nvinfer1;

namespace rfconv
{
namespace plugin
{
namespace
{

//! libnvinfer's getPluginRegistry() and getLogger(), as NvInferRuntime.h declares them.
using GetPluginRegistryFn = IPluginRegistry* (*) () noexcept;
using GetLoggerFn = ILogger* (*) () noexcept;

//! The TensorRT runtime libraries of the major version these headers belong to, in lookup order.
constexpr char const* kTENSORRT_LIBRARIES[] = {
    "libnvinfer.so." RFCONV_STRINGIFY(NV_TENSORRT_MAJOR),
    "libnvinfer_lean.so." RFCONV_STRINGIFY(NV_TENSORRT_MAJOR),
    "libnvinfer_dispatch.so." RFCONV_STRINGIFY(NV_TENSORRT_MAJOR),
};

std::atomic<ILoggerFinder*> gLoggerFinder{nullptr};
//! getLogger() of the TensorRT library found on load: the logger when no ILoggerFinder was handed over.
std::atomic<GetLoggerFn> gGetLogger{nullptr};

//! The one creator object: what getCreators() returns and what static registration registers.
RFConvRectifyPluginCreator& theCreator()
{
    static RFConvRectifyPluginCreator sCreator;
    return sCreator;
}

//! Whether `creator` is an IPluginCreatorV3One for RFConvRectify / kPLUGIN_VERSION / kPLUGIN_NAMESPACE.
bool isRectifyCreator(IPluginCreatorInterface* creator) noexcept
{
    if (creator == nullptr || std::strcmp(creator->getInterfaceInfo().kind, "PLUGIN CREATOR_V3ONE") != 0)
    {
        return false;
    }
    auto* v3 = static_cast<IPluginCreatorV3One*>(creator);
    char const* name = v3->getPluginName();
    char const* version = v3->getPluginVersion();
    char const* pluginNamespace = v3->getPluginNamespace();
    return name != nullptr && version != nullptr && pluginNamespace != nullptr
        && std::strcmp(name, kPLUGIN_NAME) == 0 && std::strcmp(version, kPLUGIN_VERSION) == 0
        && std::strcmp(pluginNamespace, kPLUGIN_NAMESPACE) == 0;
}

//! Whether `registry` holds an RFConvRectify creator already. getAllCreators() rather than getCreator(),
//! which logs an error when it finds nothing.
bool alreadyRegistered(IPluginRegistry& registry) noexcept
{
    int32_t count = 0;
    IPluginCreatorInterface* const* creators = registry.getAllCreators(&count);
    for (int32_t i = 0; creators != nullptr && i < count; ++i)
    {
        if (isRectifyCreator(creators[i]))
        {
            return true;
        }
    }
    return false;
}

char const* baseName(char const* path) noexcept
{
    char const* slash = std::strrchr(path, '/');
    return slash != nullptr ? slash + 1 : path;
}

//! The file this library was loaded from, as the loader recorded it.
char const* thisLibraryPath() noexcept
{
    Dl_info info{};
    if (dladdr(reinterpret_cast<void const*>(&thisLibraryPath), &info) != 0 && info.dli_fname != nullptr)
    {
        return info.dli_fname;
    }
    return "";
}

//! Whether LD_PRELOAD names this library (entries are separated by spaces or colons).
bool preloaded() noexcept
{
    char const* preload = std::getenv("LD_PRELOAD");
    char const* self = baseName(thisLibraryPath());
    if (preload == nullptr || *self == '\0')
    {
        return false;
    }
    for (char const* entry = preload + std::strspn(preload, " :"); *entry != '\0';)
    {
        size_t const length = std::strcspn(entry, " :");
        std::string const path{entry, length};
        if (std::strcmp(baseName(path.c_str()), self) == 0)
        {
            return true;
        }
        entry += length;
        entry += std::strspn(entry, " :");
    }
    return false;
}

//! A TensorRT library exporting getPluginRegistry(), held open (a reference, not a second copy) so that
//! the registry stays valid for as long as this library may call it.
struct TensorRTLibrary
{
    void* handle{nullptr};
    GetPluginRegistryFn getPluginRegistry{nullptr};
    GetLoggerFn getLogger{nullptr};
    int32_t otherVersion{0}; //!< getInferLibVersion() of a runtime passed over for its major version
};

//! `name` as defined by the same object as `anchor` (searched in `handle`, or the global scope), else null:
//! "getLogger" is a common name, and only TensorRT's own matches NvInferRuntime.h's declaration.
void* symbolBeside(void* anchor, void* handle, char const* name) noexcept
{
    void* symbol = dlsym(handle != nullptr ? handle : RTLD_DEFAULT, name);
    Dl_info anchorInfo{};
    Dl_info symbolInfo{};
    if (symbol == nullptr || dladdr(anchor, &anchorInfo) == 0 || dladdr(symbol, &symbolInfo) == 0
        || anchorInfo.dli_fbase != symbolInfo.dli_fbase)
    {
        return nullptr;
    }
    return symbol;
}

//! Takes getPluginRegistry (from `handle`, or the global scope when null) if it belongs to a TensorRT
//! runtime of the major version of these headers: IPluginRegistry's layout differs between major versions
//! (TensorRT 11 dropped the IPluginV2 methods), so a registry of another major version must not be called.
bool adopt(void* handle, TensorRTLibrary& found) noexcept
{
    void* registry = dlsym(handle != nullptr ? handle : RTLD_DEFAULT, "getPluginRegistry");
    void* versionSymbol = registry != nullptr ? symbolBeside(registry, handle, "getInferLibVersion") : nullptr;
    if (versionSymbol == nullptr)
    {
        return false;
    }
    int32_t const version = reinterpret_cast<int32_t (*)() noexcept>(versionSymbol)();
    if (version / 10000 != NV_TENSORRT_MAJOR)
    {
        found.otherVersion = version;
        return false;
    }
    found.getPluginRegistry = reinterpret_cast<GetPluginRegistryFn>(registry);
    found.getLogger = reinterpret_cast<GetLoggerFn>(symbolBeside(registry, handle, "getLogger"));
    found.handle = handle;
    if (handle == nullptr)
    {
        // Hold the defining object open (dlopen of a loaded object by its name takes a reference); this
        // fails, harmlessly, for the program itself, which is never unloaded.
        Dl_info info{};
        if (dladdr(registry, &info) != 0 && info.dli_fname != nullptr && *info.dli_fname != '\0')
        {
            found.handle = dlopen(info.dli_fname, RTLD_LAZY | RTLD_NOLOAD);
        }
    }
    return true;
}

TensorRTLibrary findTensorRT() noexcept
{
    TensorRTLibrary found;
    // 1. The global scope: the program links TensorRT, or loaded it RTLD_GLOBAL.
    if (adopt(nullptr, found))
    {
        return found;
    }
    // 2. Loaded into a local scope (Triton's TensorRT backend, the tensorrt Python module): RTLD_NOLOAD
    //    finds a loaded object by soname and loads nothing.
    for (char const* soname : kTENSORRT_LIBRARIES)
    {
        void* handle = dlopen(soname, RTLD_LAZY | RTLD_NOLOAD);
        if (handle != nullptr && adopt(handle, found))
        {
            return found;
        }
        if (handle != nullptr)
        {
            dlclose(handle);
        }
    }
    // 3. Preloaded: the program has not loaded TensorRT yet. Load the full runtime, which the program's
    //    own load (by the same soname) then shares; never a lean or dispatch runtime nobody asked for.
    if (preloaded())
    {
        void* handle = dlopen(kTENSORRT_LIBRARIES[0], RTLD_LAZY);
        if (handle != nullptr && adopt(handle, found))
        {
            return found;
        }
        if (handle != nullptr)
        {
            dlclose(handle);
        }
    }
    return found;
}

//! Registers the creator when the library is loaded and deregisters it when the library is unloaded,
//! unless getCreators() handed the registration over to TensorRT's loadLibrary first.
class StaticRegistration
{
public:
    StaticRegistration() noexcept
    {
        try
        {
            registerOnLoad();
        }
        catch (std::exception const& e)
        {
            std::fprintf(
                stderr, "[rfconv plugin] ERROR: registering the plugin creator on load failed: %s\n", e.what());
        }
    }

    StaticRegistration(StaticRegistration const&) = delete;
    StaticRegistration& operator=(StaticRegistration const&) = delete;

    //! Runs when the library is unloaded (dlclose) or the process exits. The registry belongs to a library
    //! held open since the constructor, and it was set up before this object, so it is destroyed after it.
    ~StaticRegistration()
    {
        withdraw();
        gGetLogger.store(nullptr);
        if (mLibrary != nullptr)
        {
            dlclose(mLibrary);
        }
    }

    //! Deregisters the creator if this object registered it (and it is still registered).
    void withdraw() noexcept
    {
        std::lock_guard<std::mutex> lock(mMutex);
        if (mRegistry != nullptr)
        {
            mRegistry->deregisterCreator(theCreator());
            mRegistry = nullptr;
        }
    }

private:
    void registerOnLoad()
    {
        theCreator(); // constructed first, so destroyed after this object (whose destructor may deregister it)
        TensorRTLibrary const tensorrt = findTensorRT();
        mLibrary = tensorrt.handle;
        gGetLogger.store(tensorrt.getLogger);
        IPluginRegistry* registry = tensorrt.getPluginRegistry != nullptr ? tensorrt.getPluginRegistry() : nullptr;
        if (registry == nullptr)
        {
            // Expected when TensorRT loads the library itself (loadLibrary, a plan that embeds it): it then
            // registers the creator through getCreators(). Said anyway, since for a plain dlopen it means
            // "could not find plugin RFConvRectify" later.
            char other[96] = "";
            if (tensorrt.otherVersion != 0)
            {
                std::snprintf(other, sizeof(other),
                    "; the TensorRT %d.%d runtime loaded is of another major version", tensorrt.otherVersion / 10000,
                    tensorrt.otherVersion / 100 % 100);
            }
            std::fprintf(stderr,
                "[rfconv plugin] note: %s v%s (namespace %s) was not registered when the library was loaded: no "
                "TensorRT %d runtime (%s, or its lean or dispatch runtime) is loaded in this process%s. Fine if "
                "TensorRT loads the library itself (IPluginRegistry::loadLibrary, an embedded plugin library); "
                "otherwise load TensorRT %d before this library.\n",
                kPLUGIN_NAME, kPLUGIN_VERSION, kPLUGIN_NAMESPACE, NV_TENSORRT_MAJOR, kTENSORRT_LIBRARIES[0], other,
                NV_TENSORRT_MAJOR);
            return;
        }
        if (alreadyRegistered(*registry))
        {
            return; // another copy of this library (or a loadLibrary of this one) registered it already
        }
        // The creator's own namespace, so that the registry files it under rfconv::RFConvRectify whether it
        // keys on this argument or on getPluginNamespace() (REGISTER_TENSORRT_PLUGIN passes "").
        if (registry->registerCreator(theCreator(), kPLUGIN_NAMESPACE))
        {
            mRegistry = registry;
        }
        else
        {
            logError("RFConvRectify: registering the plugin creator when the library was loaded failed");
        }
    }

    std::mutex mMutex;
    IPluginRegistry* mRegistry{nullptr}; //!< where the creator was registered on load; null once withdrawn
    void* mLibrary{nullptr};
};

// Constructed when the library is loaded (from its .init_array), before anyone can call getCreators().
StaticRegistration gStaticRegistration;

} // namespace

void logError(char const* message) noexcept
{
    ILoggerFinder* const finder = gLoggerFinder.load();
    ILogger* logger = finder != nullptr ? finder->findLogger() : nullptr;
    if (logger == nullptr)
    {
        // Loaded with plain dlopen, TensorRT hands no ILoggerFinder: use its global logger, if it has one.
        GetLoggerFn const getLogger = gGetLogger.load();
        logger = getLogger != nullptr ? getLogger() : nullptr;
    }
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

extern "C" RFCONV_EXPORT void setLoggerFinder(nvinfer1::ILoggerFinder* finder)
{
    nvinfer1::ILoggerFinder* expected = nullptr;
    rfconv::plugin::gLoggerFinder.compare_exchange_strong(expected, finder);
}

extern "C" RFCONV_EXPORT nvinfer1::IPluginCreatorInterface* const* getCreators(int32_t& nbCreators)
{
    // The caller (loadLibrary, an engine with this library embedded) registers what it gets here, and
    // would fail on a creator that is registered already: hand it the static registration.
    rfconv::plugin::gStaticRegistration.withdraw();
    static nvinfer1::IPluginCreatorInterface* const kCreators[] = {&rfconv::plugin::theCreator()};
    nbCreators = 1;
    return kCreators;
}
