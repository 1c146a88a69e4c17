/*
 * librfconv_trt_plugin_autoreg.so: registers the creators of librfconv_trt_plugin.so when it is loaded, for
 * loaders that only dlopen a file and call nothing in it: Triton's --backend-config=tensorrt,plugins=,
 * LD_PRELOAD, trtexec --staticPlugins, ctypes.CDLL. It is what REGISTER_TENSORRT_PLUGIN does, kept out of the
 * plugin library itself so that the plugin library does nothing when it is loaded and can always be handed to
 * IPluginRegistry::loadLibrary (see rfconvPluginLibrary.cpp). Never hand this file to loadLibrary,
 * trtexec --dynamicPlugins or setPluginsToSerialize: it exports no getCreators, and its static initializer
 * calls the registry.
 *
 * It needs librfconv_trt_plugin.so (DT_NEEDED, found next to it through RUNPATH $ORIGIN) and, like the plugin,
 * no libnvinfer at link time (one build serves the full, lean and dispatch runtimes). getPluginRegistry() is
 * looked up when it is loaded:
 *   1. in the global scope (dlsym(RTLD_DEFAULT)): the program or a library loaded RTLD_GLOBAL exports it;
 *   2. in a TensorRT runtime library already loaded into a local scope (dlopen(soname, RTLD_NOLOAD)), e.g.
 *      libnvinfer.so.N pulled in by Triton's TensorRT backend or by the tensorrt Python module;
 *   3. only when this library is listed in LD_PRELOAD (the program has not loaded TensorRT yet, but is
 *      about to): by loading libnvinfer.so.N, which the program's own load then reuses.
 * Only a runtime of the headers' major version is used (getInferLibVersion()): IPluginRegistry's layout
 * differs between major versions. Otherwise nothing is registered and a note says so on stderr.
 *
 * A creator whose name, version and namespace are registered already (by loadLibrary of the plugin library,
 * or another copy of it, e.g. one an engine embeds) is not registered again, so the registry reports no
 * duplicate; the ones this library registered are deregistered when it is unloaded.
 */
#include "NvInferRuntime.h"
#include "NvInferVersion.h"

#include <dlfcn.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <string>
#include <vector>

#define RFCONV_STRINGIFY2(x) #x
#define RFCONV_STRINGIFY(x) RFCONV_STRINGIFY2(x)

using namespace nvinfer1;

// The plugin library's entry points (rfconvPluginLibrary.cpp), resolved through DT_NEEDED.
extern "C" IPluginCreatorInterface* const* getCreators(int32_t& nbCreators);
extern "C" void setLoggerFinder(ILoggerFinder* finder);
extern "C" void rfconvReleaseLoggerFinder(ILoggerFinder* finder);

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

//! "namespace::name/version" of a V3 creator, else its interface kind (never equal to a V3 type).
std::string typeOf(IPluginCreatorInterface* creator) noexcept
{
    try
    {
        if (creator == nullptr)
        {
            return "";
        }
        if (std::strcmp(creator->getInterfaceInfo().kind, "PLUGIN CREATOR_V3ONE") != 0)
        {
            return creator->getInterfaceInfo().kind;
        }
        auto* v3 = static_cast<IPluginCreatorV3One*>(creator);
        char const* name = v3->getPluginName();
        char const* version = v3->getPluginVersion();
        char const* pluginNamespace = v3->getPluginNamespace();
        if (name == nullptr || version == nullptr || pluginNamespace == nullptr)
        {
            return "";
        }
        return std::string{pluginNamespace} + "::" + name + "/" + version;
    }
    catch (...)
    {
        return "";
    }
}

//! Whether `registry` holds a creator of the type of `creator` already. getAllCreators() rather than
//! getCreator(), which logs an error when it finds nothing.
bool alreadyRegistered(IPluginRegistry& registry, IPluginCreatorInterface* creator) noexcept
{
    std::string const wanted = typeOf(creator);
    int32_t count = 0;
    IPluginCreatorInterface* const* creators = registry.getAllCreators(&count);
    for (int32_t i = 0; creators != nullptr && i < count; ++i)
    {
        if (typeOf(creators[i]) == wanted)
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
//! runtime of the major version of these headers.
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

//! Hands the plugin library TensorRT's global logger (no loader hands it an ILoggerFinder here).
class GlobalLoggerFinder : public ILoggerFinder
{
public:
    explicit GlobalLoggerFinder(GetLoggerFn getLogger)
        : mGetLogger(getLogger)
    {
    }
    ILogger* findLogger() override
    {
        return mGetLogger != nullptr ? mGetLogger() : nullptr;
    }

private:
    GetLoggerFn mGetLogger;
};

//! Registers the plugin library's creators when this library is loaded and deregisters them when it is
//! unloaded.
class AutoRegistration
{
public:
    AutoRegistration() noexcept
    {
        try
        {
            registerOnLoad();
        }
        catch (std::exception const& e)
        {
            std::fprintf(stderr, "[rfconv plugin] ERROR: registering the plugin creators on load failed: %s\n",
                e.what());
        }
    }

    AutoRegistration(AutoRegistration const&) = delete;
    AutoRegistration& operator=(AutoRegistration const&) = delete;

    //! Runs when the library is unloaded (dlclose) or the process exits, before the plugin library (a
    //! dependency) is finalized. The registry belongs to a library held open since the constructor.
    ~AutoRegistration()
    {
        for (IPluginCreatorInterface* creator : mRegistered)
        {
            mRegistry->deregisterCreator(*creator);
        }
        rfconvReleaseLoggerFinder(&mFinder);
        if (mLibrary != nullptr)
        {
            dlclose(mLibrary);
        }
    }

private:
    void registerOnLoad()
    {
        TensorRTLibrary const tensorrt = findTensorRT();
        mLibrary = tensorrt.handle;
        mFinder = GlobalLoggerFinder{tensorrt.getLogger};
        IPluginRegistry* registry = tensorrt.getPluginRegistry != nullptr ? tensorrt.getPluginRegistry() : nullptr;
        if (registry == nullptr)
        {
            char other[96] = "";
            if (tensorrt.otherVersion != 0)
            {
                std::snprintf(other, sizeof(other),
                    "; the TensorRT %d.%d runtime loaded is of another major version", tensorrt.otherVersion / 10000,
                    tensorrt.otherVersion / 100 % 100);
            }
            std::fprintf(stderr,
                "[rfconv plugin] note: RFConvRectify was not registered when %s was loaded: no TensorRT %d runtime "
                "(%s, or its lean or dispatch runtime) is loaded in this process%s. Load TensorRT %d before this "
                "library, or hand librfconv_trt_plugin.so to IPluginRegistry::loadLibrary instead.\n",
                baseName(thisLibraryPath()), NV_TENSORRT_MAJOR, kTENSORRT_LIBRARIES[0], other, NV_TENSORRT_MAJOR);
            return;
        }
        mRegistry = registry;
        setLoggerFinder(&mFinder);
        int32_t count = 0;
        IPluginCreatorInterface* const* creators = getCreators(count);
        for (int32_t i = 0; creators != nullptr && i < count; ++i)
        {
            if (alreadyRegistered(*registry, creators[i]))
            {
                continue; // loadLibrary of the plugin library, or another copy of it, registered it already
            }
            // The creator's own namespace, so that the registry files it under rfconv::RFConvRectify whether it
            // keys on this argument or on getPluginNamespace() (REGISTER_TENSORRT_PLUGIN passes "").
            auto* v3 = static_cast<IPluginCreatorV3One*>(creators[i]);
            if (registry->registerCreator(*creators[i], v3->getPluginNamespace()))
            {
                mRegistered.push_back(creators[i]);
            }
            else
            {
                ILogger* logger = mFinder.findLogger();
                std::string const message = "RFConvRectify: registering " + typeOf(creators[i]) + " failed";
                if (logger != nullptr)
                {
                    logger->log(ILogger::Severity::kERROR, message.c_str());
                }
                else
                {
                    std::fprintf(stderr, "[rfconv plugin] ERROR: %s\n", message.c_str());
                }
            }
        }
    }

    GlobalLoggerFinder mFinder{nullptr};
    IPluginRegistry* mRegistry{nullptr};
    std::vector<IPluginCreatorInterface*> mRegistered;
    void* mLibrary{nullptr};
};

// Constructed when this library is loaded (from its .init_array), after the plugin library it needs.
AutoRegistration gAutoRegistration;

} // namespace
