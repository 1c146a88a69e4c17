/*
 * Host test of how the plugin libraries register RFConvRectify: librfconv_trt_plugin.so through getCreators()
 * only (IPluginRegistry::loadLibrary, trtexec --dynamicPlugins), doing nothing when it is loaded, and
 * librfconv_trt_plugin_autoreg.so on load (plain dlopen: Triton's plugins=, LD_PRELOAD, trtexec
 * --staticPlugins), and both in one process without a duplicate registration.
 *
 * No TensorRT library is needed: this program takes libnvinfer's place for the libraries. It exports
 * getPluginRegistry(), getLogger() and getInferLibVersion() as NvInferRuntime.h declares them (the program
 * is linked with -rdynamic, so they are in the global scope where the library looks first), backed by a
 * registry that keeps IPluginRegistry's documented contract - registerCreator() fails for a creator of a
 * type already registered, deregisterCreator() for one that is not, loadLibrary() registers what
 * getCreators() returns and fails if any of it is registered already - and counts every call, in particular
 * calls made while loadLibrary() runs: TensorRT's registry may hold its lock there, and getAllCreators() is
 * not thread-safe, so a library loaded by loadLibrary must not call the registry. It is not a TensorRT
 * stand-in beyond that contract; how TensorRT's own registry behaves is only checked on a machine with
 * TensorRT (README, Loading).
 *
 * Usage: rfconv_registration_host_test <librfconv_trt_plugin.so> [<librfconv_trt_plugin_autoreg.so>].
 * Exit 0 on success.
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
    mutable int32_t calls{0};              //!< registry calls made by anyone but loadLibrary() itself
    mutable int32_t callsWhileLoading{0};  //!< ...of which while loadLibrary() was running (would re-enter TensorRT's)
    std::string lastNamespace;     //!< pluginNamespace argument of the last registerCreator()
    std::vector<IPluginCreatorInterface*> creators;

    bool registerCreator(IPluginCreatorInterface& creator, AsciiChar const* const pluginNamespace) noexcept override
    {
        count();
        return add(creator, pluginNamespace);
    }

    //! registerCreator() without counting the call: loadLibrary()'s own registration.
    bool add(IPluginCreatorInterface& creator, AsciiChar const* const pluginNamespace) noexcept
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
        count();
        return remove(creator);
    }

    bool remove(IPluginCreatorInterface const& creator) noexcept
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
        count();
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
        count();
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
    //! and fail (returning null, the library unloaded again) if any of them is registered already. Registry
    //! calls from the library meanwhile (its static initializers included) are counted in callsWhileLoading.
    PluginLibraryHandle loadLibrary(AsciiChar const* pluginPath) noexcept override
    {
        mLoading = true;
        void* handle = dlopen(pluginPath, RTLD_LAZY | RTLD_LOCAL);
        auto* setLoggerFinder = handle != nullptr
            ? reinterpret_cast<void (*)(ILoggerFinder*)>(dlsym(handle, "setLoggerFinder"))
            : nullptr;
        auto* getCreators = handle != nullptr
            ? reinterpret_cast<IPluginCreatorInterface* const* (*) (int32_t&)>(dlsym(handle, "getCreators"))
            : nullptr;
        bool ok = setLoggerFinder != nullptr && getCreators != nullptr;
        std::vector<IPluginCreatorInterface*> added;
        if (ok)
        {
            setLoggerFinder(&mFinder);
            int32_t count = 0;
            IPluginCreatorInterface* const* list = getCreators(count);
            for (int32_t i = 0; ok && i < count; ++i)
            {
                ok = add(*list[i], "rfconv");
                if (ok)
                {
                    added.push_back(list[i]);
                }
            }
        }
        mLoading = false;
        if (!ok)
        {
            for (IPluginCreatorInterface* c : added)
            {
                remove(*c);
            }
            if (handle != nullptr)
            {
                dlclose(handle);
            }
            return nullptr;
        }
        mLibraryCreators = added;
        return handle;
    }

    void deregisterLibrary(PluginLibraryHandle handle) noexcept override
    {
        for (IPluginCreatorInterface* c : mLibraryCreators)
        {
            remove(*c);
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

    void count() const noexcept
    {
        ++calls;
        callsWhileLoading += mLoading ? 1 : 0;
    }

    Finder mFinder;
    bool mLoading{false};
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
    gRegistry.calls = gRegistry.callsWhileLoading = 0;
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

//! Whether the RFConvRectify creator registered last rejects an empty field list with an error in gLogger:
//! the plugin library reaches the logger the registration handed it.
bool errorsReachLogger()
{
    gLogger.errors.clear();
    for (IPluginCreatorInterface* c : gRegistry.creators)
    {
        if (isRectify(c))
        {
            PluginFieldCollection empty{0, nullptr};
            bool const rejected
                = static_cast<IPluginCreatorV3One*>(c)->createPlugin("layer", &empty, TensorRTPhase::kBUILD) == nullptr;
            return rejected && gLogger.errors.find("'kernel' is required") != std::string::npos;
        }
    }
    return false;
}

int main(int argc, char** argv)
{
    if (argc != 2 && argc != 3)
    {
        std::printf("usage: %s <librfconv_trt_plugin.so> [<librfconv_trt_plugin_autoreg.so>]\n", argv[0]);
        return 2;
    }
    char const* const library = argv[1];
    char const* const autoreg = argc == 3 ? argv[2] : nullptr;

    // 1. The plugin library does nothing when it is loaded: no registry call, no registration.
    resetCounters();
    void* handle = dlopen(library, RTLD_NOW | RTLD_LOCAL);
    check(handle != nullptr, "dlopen the plugin library");
    if (handle == nullptr)
    {
        std::printf("dlopen: %s\n", dlerror());
        return 1;
    }
    check(gRegistry.calls == 0, "plain dlopen of the plugin library calls no registry method");
    check(rectifyCount() == 0, "plain dlopen of the plugin library registers nothing");
    dlclose(handle);
    check(unloaded(library), "dlclose unloads the plugin library");

    // 2. loadLibrary alone: succeeds, the library calls no registry method while it is being loaded (TensorRT's
    //    registry may hold its lock; getAllCreators is not thread-safe), errors reach the logger finder.
    resetCounters();
    void* loaded = gRegistry.loadLibrary(library);
    check(loaded != nullptr, "loadLibrary succeeds");
    check(gRegistry.callsWhileLoading == 0, "loadLibrary: the library calls no registry method while it loads");
    check(rectifyCount() == 1, "loadLibrary: registered once");
    check(errorsReachLogger(), "loadLibrary: errors reach the logger handed over through setLoggerFinder");
    checkNoRejectedCalls("loadLibrary");
    if (loaded != nullptr)
    {
        gRegistry.deregisterLibrary(loaded);
    }
    check(rectifyCount() == 0 && unloaded(library), "deregisterLibrary: deregistered and unloaded");
    checkNoRejectedCalls("deregisterLibrary");

    if (autoreg == nullptr)
    {
        std::printf("registration host test (no autoregistration library given): %d failures\n", gFailures);
        return gFailures == 0 ? 0 : 1;
    }

    // 3. The autoregistration library, plain dlopen (Triton's plugins=, trtexec --staticPlugins): registered
    //    once, on load, under its namespace; errors go to TensorRT's global logger (no ILoggerFinder was handed
    //    over); dlclose deregisters it and unloads both libraries.
    resetCounters();
    handle = dlopen(autoreg, RTLD_NOW | RTLD_LOCAL);
    check(handle != nullptr, "dlopen the autoregistration library");
    if (handle == nullptr)
    {
        std::printf("dlopen: %s\n", dlerror());
        return 1;
    }
    check(rectifyCount() == 1 && gRegistry.registered == 1, "autoregistration: the creator registered once");
    check(gRegistry.lastNamespace == "rfconv", "autoregistration: registered under namespace rfconv");
    check(errorsReachLogger(), "autoregistration: errors reach TensorRT's global logger (getLogger)");
    dlclose(handle);
    check(unloaded(autoreg) && unloaded(library), "dlclose unloads the autoregistration and plugin libraries");
    check(rectifyCount() == 0 && gRegistry.deregistered == 1, "unloading deregisters the creator");
    checkNoRejectedCalls("autoregistration");

    // 4. loadLibrary first, the autoregistration library next (plugins.load_library(), then Triton's plugins=):
    //    the creator stays registered once, and unloading the autoregistration library leaves it registered.
    resetCounters();
    loaded = gRegistry.loadLibrary(library);
    check(loaded != nullptr, "loadLibrary before autoregistration succeeds");
    int32_t const registeredByLoadLibrary = gRegistry.registered;
    handle = dlopen(autoreg, RTLD_NOW | RTLD_LOCAL);
    check(rectifyCount() == 1 && gRegistry.registered == registeredByLoadLibrary,
        "autoregistration after loadLibrary registers nothing");
    dlclose(handle);
    check(rectifyCount() == 1, "unloading the autoregistration library leaves loadLibrary's registration");
    check(gLogger.errors.empty(), "loadLibrary then autoregistration: no error logged");
    checkNoRejectedCalls("loadLibrary then autoregistration");
    if (loaded != nullptr)
    {
        gRegistry.deregisterLibrary(loaded);
    }
    check(rectifyCount() == 0 && unloaded(library) && unloaded(autoreg), "loadLibrary then autoregistration: released");

    // 5. The autoregistration library first, loadLibrary next: loadLibrary refuses, as its contract says
    //    (the type is registered), without the library calling the registry while it loads; the creator stays
    //    registered once. (plugins.load_library() checks the registry first and does not call loadLibrary.)
    resetCounters();
    handle = dlopen(autoreg, RTLD_NOW | RTLD_LOCAL);
    loaded = gRegistry.loadLibrary(library);
    check(loaded == nullptr, "loadLibrary after autoregistration is refused by the registry's contract");
    check(gRegistry.callsWhileLoading == 0, "autoregistration then loadLibrary: no registry call while loading");
    check(rectifyCount() == 1, "autoregistration then loadLibrary: registered once");
    dlclose(handle);
    check(rectifyCount() == 0 && unloaded(library) && unloaded(autoreg), "autoregistration then loadLibrary: released");

    // 6. Another copy registered the type already: loading the autoregistration library registers nothing, and
    //    unloading it leaves the other copy's creator alone.
    resetCounters();
    OtherCopyCreator other;
    gRegistry.registerCreator(other, "rfconv");
    resetCounters();
    handle = dlopen(autoreg, RTLD_NOW | RTLD_LOCAL);
    check(gRegistry.registered == 0 && rectifyCount() == 1, "a registered type is not registered again on load");
    dlclose(handle);
    check(rectifyCount() == 1 && gRegistry.creators.back() == &other, "unloading leaves the other copy's creator");
    check(gLogger.errors.empty(), "no error logged when another copy is registered");
    checkNoRejectedCalls("another copy registered");
    gRegistry.deregisterCreator(other);

    // 7. A TensorRT runtime of another major version: its registry is not called (its layout differs).
    resetCounters();
    gLibraryVersion = (NV_TENSORRT_MAJOR + 1) * 10000;
    handle = dlopen(autoreg, RTLD_NOW | RTLD_LOCAL);
    check(gRegistry.calls == 0 && rectifyCount() == 0, "a registry of another major version is not used");
    dlclose(handle);
    gLibraryVersion = NV_TENSORRT_VERSION;
    checkNoRejectedCalls("other major version");

    std::printf("registration host test: %d failures\n", gFailures);
    return gFailures == 0 ? 0 : 1;
}
