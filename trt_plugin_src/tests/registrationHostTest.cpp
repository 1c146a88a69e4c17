/*
 * Host test of how the plugin library registers its creator: statically when it is only dlopen'ed (Triton's
 * plugins=, LD_PRELOAD, trtexec --staticPlugins), dynamically through getCreators() (loadLibrary), and both
 * in turn without a duplicate registration.
 *
 * No TensorRT library is needed: this program takes libnvinfer's place for the plugin library. It exports
 * getPluginRegistry(), getLogger() and getInferLibVersion() as NvInferRuntime.h declares them (the program
 * is linked with -rdynamic, so they are in the global scope where the library looks first), backed by a
 * registry that keeps IPluginRegistry's documented contract - registerCreator() fails for a creator of a
 * type already registered, deregisterCreator() for one that is not, loadLibrary() registers what
 * getCreators() returns and fails if any of it is registered already - and counts every call. It is not a
 * TensorRT stand-in beyond that contract; how TensorRT's own registry behaves is only checked on a machine
 * with TensorRT (README, Loading).
 *
 * Usage: rfconv_registration_host_test <path to librfconv_trt_plugin.so>. Exit 0 on success.
 */
#include "hostTestUtil.h"
#include "NvInferRuntime.h"

#include <dlfcn.h>

#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

using namespace nvinfer1;

namespace
{

using rfconv_test::CapturingLogger;
using rfconv_test::check;
using rfconv_test::gFailures;

CapturingLogger gLogger;
int32_t gLibraryVersion = NV_TENSORRT_VERSION;

bool isRectify(IPluginCreatorInterface const* creator)
{
    if (std::strcmp(creator->getInterfaceInfo().kind, "PLUGIN CREATOR_V3ONE") != 0)
    {
        return false;
    }
    auto const* v3 = static_cast<IPluginCreatorV3One const*>(creator);
    return std::strcmp(v3->getPluginName(), "RFConvRectify") == 0 && std::strcmp(v3->getPluginVersion(), "1") == 0
        && std::strcmp(v3->getPluginNamespace(), "rfconv") == 0;
}

std::string typeOf(IPluginCreatorInterface const& creator)
{
    if (std::strcmp(creator.getInterfaceInfo().kind, "PLUGIN CREATOR_V3ONE") != 0)
    {
        return creator.getInterfaceInfo().kind;
    }
    auto const& v3 = static_cast<IPluginCreatorV3One const&>(creator);
    return std::string{v3.getPluginNamespace()} + "::" + v3.getPluginName() + "/" + v3.getPluginVersion();
}

// TensorRT 10's IPluginRegistry still declares the IPluginV2 methods (deprecated); overriding them is required.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wdeprecated-declarations"
class CountingRegistry : public IPluginRegistry
{
public:
    // Counters the checks read.
    int32_t registered{0};         //!< successful registerCreator() calls
    int32_t rejectedRegister{0};   //!< registerCreator() refused: that type is registered already
    int32_t deregistered{0};       //!< successful deregisterCreator() calls
    int32_t rejectedDeregister{0}; //!< deregisterCreator() of a creator that is not registered
    std::string lastNamespace;     //!< pluginNamespace argument of the last registerCreator()
    std::vector<IPluginCreatorInterface*> creators;

    bool registerCreator(IPluginCreatorInterface& creator, AsciiChar const* const pluginNamespace) noexcept override
    {
        for (IPluginCreatorInterface* c : creators)
        {
            if (typeOf(*c) == typeOf(creator))
            {
                ++rejectedRegister;
                return false;
            }
        }
        creators.push_back(&creator);
        lastNamespace = pluginNamespace == nullptr ? "(null)" : pluginNamespace;
        ++registered;
        return true;
    }

    bool deregisterCreator(IPluginCreatorInterface const& creator) noexcept override
    {
        for (auto it = creators.begin(); it != creators.end(); ++it)
        {
            if (*it == &creator)
            {
                creators.erase(it);
                ++deregistered;
                return true;
            }
        }
        ++rejectedDeregister;
        return false;
    }

    IPluginCreatorInterface* const* getAllCreators(int32_t* const numCreators) const noexcept override
    {
        *numCreators = static_cast<int32_t>(creators.size());
        return creators.empty() ? nullptr : creators.data();
    }

#if NV_TENSORRT_VERSION >= NV_TENSORRT_VERSION_INT(10, 10, 0) // appended to IPluginRegistry in 10.10
    IPluginCreatorInterface* const* getAllCreatorsRecursive(int32_t* const numCreators) noexcept override
    {
        return getAllCreators(numCreators);
    }
#endif

    IPluginCreatorInterface* getCreator(AsciiChar const* const name, AsciiChar const* const version,
        AsciiChar const* const pluginNamespace) noexcept override
    {
        std::string const wanted = std::string{pluginNamespace} + "::" + name + "/" + version;
        for (IPluginCreatorInterface* c : creators)
        {
            if (typeOf(*c) == wanted)
            {
                return c;
            }
        }
        gLogger.log(ILogger::Severity::kERROR, ("getCreator could not find " + wanted).c_str());
        return nullptr;
    }

    //! What loadLibrary documents: load, hand over a logger finder, register every creator of getCreators()
    //! and fail (returning null) if any of them is registered already.
    PluginLibraryHandle loadLibrary(AsciiChar const* pluginPath) noexcept override
    {
        void* handle = dlopen(pluginPath, RTLD_LAZY | RTLD_LOCAL);
        auto* setLoggerFinder = handle != nullptr
            ? reinterpret_cast<void (*)(ILoggerFinder*)>(dlsym(handle, "setLoggerFinder"))
            : nullptr;
        auto* getCreators = handle != nullptr
            ? reinterpret_cast<IPluginCreatorInterface* const* (*) (int32_t&)>(dlsym(handle, "getCreators"))
            : nullptr;
        if (setLoggerFinder == nullptr || getCreators == nullptr)
        {
            return nullptr;
        }
        setLoggerFinder(&mFinder);
        int32_t count = 0;
        IPluginCreatorInterface* const* list = getCreators(count);
        for (int32_t i = 0; i < count; ++i)
        {
            if (!registerCreator(*list[i], "rfconv"))
            {
                return nullptr;
            }
            mLibraryCreators.push_back(list[i]);
        }
        return handle;
    }

    void deregisterLibrary(PluginLibraryHandle handle) noexcept override
    {
        for (IPluginCreatorInterface* c : mLibraryCreators)
        {
            deregisterCreator(*c);
        }
        mLibraryCreators.clear();
        dlclose(handle);
    }

    void setErrorRecorder(IErrorRecorder* const recorder) noexcept override
    {
        mRecorder = recorder;
    }
    IErrorRecorder* getErrorRecorder() const noexcept override
    {
        return mRecorder;
    }
    bool isParentSearchEnabled() const override
    {
        return false;
    }
    void setParentSearchEnabled(bool const) override {}
    IPluginResource* acquirePluginResource(AsciiChar const*, IPluginResource*) noexcept override
    {
        return nullptr;
    }
    int32_t releasePluginResource(AsciiChar const*) noexcept override
    {
        return -1;
    }

#if NV_TENSORRT_MAJOR < 11
    bool registerCreator(IPluginCreator&, AsciiChar const* const) noexcept override
    {
        return false;
    }
    IPluginCreator* const* getPluginCreatorList(int32_t* const numCreators) const noexcept override
    {
        *numCreators = 0;
        return nullptr;
    }
    IPluginCreator* getPluginCreator(
        AsciiChar const* const, AsciiChar const* const, AsciiChar const* const) noexcept override
    {
        return nullptr;
    }
    bool deregisterCreator(IPluginCreator const&) noexcept override
    {
        return false;
    }
#endif

private:
    class Finder : public ILoggerFinder
    {
    public:
        ILogger* findLogger() override
        {
            return &gLogger;
        }
    };

    Finder mFinder;
    IErrorRecorder* mRecorder{nullptr};
    std::vector<IPluginCreatorInterface*> mLibraryCreators;
};
#pragma GCC diagnostic pop

CountingRegistry gRegistry;

//! Another creator of the same type, as another copy of the library (an engine's embedded one) would have.
class OtherCopyCreator : public IPluginCreatorV3One
{
public:
    AsciiChar const* getPluginName() const noexcept override
    {
        return "RFConvRectify";
    }
    AsciiChar const* getPluginVersion() const noexcept override
    {
        return "1";
    }
    AsciiChar const* getPluginNamespace() const noexcept override
    {
        return "rfconv";
    }
    PluginFieldCollection const* getFieldNames() noexcept override
    {
        return &mFields;
    }
    IPluginV3* createPlugin(AsciiChar const*, PluginFieldCollection const*, TensorRTPhase) noexcept override
    {
        return nullptr;
    }

private:
    PluginFieldCollection mFields{};
};

int32_t rectifyCount()
{
    int32_t n = 0;
    for (IPluginCreatorInterface* c : gRegistry.creators)
    {
        n += isRectify(c) ? 1 : 0;
    }
    return n;
}

bool unloaded(char const* path)
{
    void* handle = dlopen(path, RTLD_LAZY | RTLD_NOLOAD);
    if (handle != nullptr)
    {
        dlclose(handle);
    }
    return handle == nullptr;
}

void resetCounters()
{
    gRegistry.registered = gRegistry.rejectedRegister = gRegistry.deregistered = gRegistry.rejectedDeregister = 0;
    gLogger.errors.clear();
}

//! No registry call the library makes may fail: a failed registerCreator/deregisterCreator is an error
//! in TensorRT's log.
void checkNoRejectedCalls(char const* scenario)
{
    std::string const what = std::string{scenario} + ": no registry call was refused";
    check(gRegistry.rejectedRegister == 0 && gRegistry.rejectedDeregister == 0, what.c_str());
}

} // namespace

// What libnvinfer exports and the plugin library looks up when it is loaded. (TENSORRTAPI is empty outside
// TensorRT's own build, and the targets are compiled with hidden visibility: export them explicitly.)
#define EXPORTED __attribute__((visibility("default")))

extern "C" EXPORTED IPluginRegistry* getPluginRegistry() noexcept
{
    return &gRegistry;
}

extern "C" EXPORTED ILogger* getLogger() noexcept
{
    return &gLogger;
}

extern "C" EXPORTED int32_t getInferLibVersion() noexcept
{
    return gLibraryVersion;
}

int main(int argc, char** argv)
{
    if (argc != 2)
    {
        std::printf("usage: %s <librfconv_trt_plugin.so>\n", argv[0]);
        return 2;
    }
    char const* const library = argv[1];

    // 1. Plain dlopen (Triton's plugins=, trtexec --staticPlugins): registered once, on load, under its
    //    namespace; errors go to TensorRT's global logger (no ILoggerFinder was handed over); dlclose
    //    deregisters it, so the registry keeps no pointer into an unloaded library.
    resetCounters();
    void* handle = dlopen(library, RTLD_NOW | RTLD_LOCAL);
    check(handle != nullptr, "dlopen the plugin library");
    if (handle == nullptr)
    {
        std::printf("dlopen: %s\n", dlerror());
        return 1;
    }
    check(rectifyCount() == 1 && gRegistry.registered == 1, "plain dlopen registers the creator once");
    check(gRegistry.lastNamespace == "rfconv", "registered under namespace rfconv");
    if (rectifyCount() == 1)
    {
        auto* creator = static_cast<IPluginCreatorV3One*>(gRegistry.creators.back());
        PluginFieldCollection empty{0, nullptr};
        check(creator->createPlugin("layer", &empty, TensorRTPhase::kBUILD) == nullptr, "no kernel: rejected");
        check(gLogger.errors.find("'kernel' is required") != std::string::npos,
            "statically loaded, errors reach TensorRT's global logger (getLogger)");
    }
    dlclose(handle);
    check(unloaded(library), "dlclose unloads the library");
    check(rectifyCount() == 0 && gRegistry.deregistered == 1, "unloading deregisters the creator");
    checkNoRejectedCalls("plain dlopen");

    // 2. loadLibrary alone: the static registration is handed over to loadLibrary's, which succeeds.
    resetCounters();
    void* loaded = gRegistry.loadLibrary(library);
    check(loaded != nullptr, "loadLibrary succeeds");
    check(rectifyCount() == 1, "loadLibrary: registered once");
    checkNoRejectedCalls("loadLibrary");
    if (loaded != nullptr)
    {
        gRegistry.deregisterLibrary(loaded);
    }
    check(rectifyCount() == 0 && unloaded(library), "deregisterLibrary: deregistered and unloaded");
    checkNoRejectedCalls("deregisterLibrary");

    // 3. dlopen first, loadLibrary of the same library next (LD_PRELOAD, then plugins.load_library()):
    //    loadLibrary must not fail on the creator registered on load, and it stays registered once.
    resetCounters();
    handle = dlopen(library, RTLD_NOW | RTLD_LOCAL);
    check(rectifyCount() == 1, "dlopen then loadLibrary: registered on load");
    loaded = gRegistry.loadLibrary(library);
    check(loaded != nullptr, "loadLibrary after static registration succeeds");
    check(rectifyCount() == 1, "loadLibrary after static registration: registered once, not twice");
    checkNoRejectedCalls("dlopen then loadLibrary");
    if (loaded != nullptr)
    {
        gRegistry.deregisterLibrary(loaded);
    }
    dlclose(handle);
    check(rectifyCount() == 0 && unloaded(library), "dlopen then loadLibrary: all released");
    checkNoRejectedCalls("dlopen then loadLibrary, released");

    // 4. Another copy registered the type already: loading this one registers nothing, and unloading it
    //    leaves the other copy's creator alone.
    resetCounters();
    OtherCopyCreator other;
    gRegistry.registerCreator(other, "rfconv");
    resetCounters();
    handle = dlopen(library, RTLD_NOW | RTLD_LOCAL);
    check(gRegistry.registered == 0 && rectifyCount() == 1, "a registered type is not registered again on load");
    dlclose(handle);
    check(rectifyCount() == 1 && gRegistry.creators.back() == &other, "unloading leaves the other copy's creator");
    check(gLogger.errors.empty(), "no error logged when another copy is registered");
    checkNoRejectedCalls("another copy registered");
    gRegistry.deregisterCreator(other);

    // 5. A TensorRT runtime of another major version: its registry is not called (its layout differs).
    resetCounters();
    gLibraryVersion = (NV_TENSORRT_MAJOR + 1) * 10000;
    handle = dlopen(library, RTLD_NOW | RTLD_LOCAL);
    check(gRegistry.registered == 0 && rectifyCount() == 0, "a registry of another major version is not used");
    dlclose(handle);
    gLibraryVersion = NV_TENSORRT_VERSION;
    checkNoRejectedCalls("other major version");

    std::printf("registration host test: %d failures\n", gFailures);
    return gFailures == 0 ? 0 : 1;
}
