/*
 * Host test of the plugin library through its exported entry points and TensorRT's public plugin
 * interfaces, the way TensorRT and its ONNX parser drive it: creator lookup, attribute parsing
 * (fields as the ONNX parser builds them), serialization round trip (has_bias included), format
 * combinations, output types, shape checks and error messages. It needs TensorRT's headers only, not its
 * libraries, and no GPU. Without a GPU it also checks what a failed kernel launch reports; with one,
 * nothing is enqueued. Exit 0 on success.
 */
#include "hostTestUtil.h"
#include "NvInferRuntime.h"

#include <cuda_runtime_api.h>

#include <cstdio>
#include <cstring>
#include <initializer_list>
#include <string>
#include <vector>

using namespace nvinfer1;

extern "C" IPluginCreatorInterface* const* getCreators(int32_t& nbCreators);
extern "C" void setLoggerFinder(ILoggerFinder* finder);

namespace
{

using rfconv_test::CapturingLogger;
using rfconv_test::check;
using rfconv_test::gFailures;

class Finder : public ILoggerFinder
{
public:
    ILogger* findLogger() override
    {
        return &logger;
    }
    CapturingLogger logger;
};

//! Plugin fields as TensorRT's ONNX parser builds them from node attributes.
struct OnnxAttributes
{
    std::vector<int32_t> kernel{3, 3};
    std::vector<int32_t> stride{1, 1};
    std::vector<int32_t> padding{1, 1};
    std::vector<int32_t> dilation{1, 1};
    int32_t averageMode{0};
    std::string countMode{"exact"};
    std::string activation{"relu"};
    std::string extraName; //!< an attribute the plugin does not know, when set

    std::vector<PluginField> fields() const
    {
        std::vector<PluginField> f;
        f.emplace_back("kernel", kernel.data(), PluginFieldType::kINT32, static_cast<int32_t>(kernel.size()));
        f.emplace_back("stride", stride.data(), PluginFieldType::kINT32, static_cast<int32_t>(stride.size()));
        f.emplace_back("padding", padding.data(), PluginFieldType::kINT32, static_cast<int32_t>(padding.size()));
        f.emplace_back("dilation", dilation.data(), PluginFieldType::kINT32, static_cast<int32_t>(dilation.size()));
        f.emplace_back("average_mode", &averageMode, PluginFieldType::kINT32, 1);
        // the parser copies strings with their terminating NUL and counts it in the length
        f.emplace_back("count_mode", countMode.c_str(), PluginFieldType::kCHAR, static_cast<int32_t>(countMode.size() + 1));
        f.emplace_back("activation", activation.c_str(), PluginFieldType::kCHAR, static_cast<int32_t>(activation.size() + 1));
        if (!extraName.empty())
        {
            f.emplace_back(extraName.c_str(), &averageMode, PluginFieldType::kINT32, 1);
        }
        return f;
    }
};

IPluginV3* create(IPluginCreatorV3One* creator, std::vector<PluginField> const& fields, TensorRTPhase phase)
{
    PluginFieldCollection fc{static_cast<int32_t>(fields.size()), fields.data()};
    return creator->createPlugin("rectify_layer", &fc, phase);
}

std::string serialized(IPluginV3* plugin)
{
    auto* runtime = static_cast<IPluginV3OneRuntime*>(plugin->getCapabilityInterface(PluginCapabilityType::kRUNTIME));
    PluginFieldCollection const* fc = runtime->getFieldsToSerialize();
    std::string text;
    for (int32_t i = 0; i < fc->nbFields; ++i)
    {
        PluginField const& f = fc->fields[i];
        text += std::string{f.name} + "=";
        if (f.type == PluginFieldType::kCHAR)
        {
            text += static_cast<char const*>(f.data);
        }
        for (int32_t j = 0; f.type == PluginFieldType::kINT32 && j < f.length; ++j)
        {
            text += std::to_string(static_cast<int32_t const*>(f.data)[j]) + ",";
        }
        text += ";";
    }
    return text;
}

PluginTensorDesc desc(std::initializer_list<int64_t> dims, DataType type = DataType::kFLOAT)
{
    PluginTensorDesc d{};
    d.dims.nbDims = static_cast<int32_t>(dims.size());
    int32_t i = 0;
    for (int64_t v : dims)
    {
        d.dims.d[i++] = v;
    }
    d.type = type;
    d.format = TensorFormat::kLINEAR;
    d.scale = -1.0F;
    return d;
}

bool contains(std::string const& text, char const* part)
{
    return text.find(part) != std::string::npos;
}

} // namespace

int main()
{
    Finder finder;
    setLoggerFinder(&finder);

    int32_t nbCreators = 0;
    IPluginCreatorInterface* const* creators = getCreators(nbCreators);
    check(nbCreators == 1 && creators != nullptr, "getCreators returns one creator");
    check(std::strcmp(creators[0]->getInterfaceInfo().kind, "PLUGIN CREATOR_V3ONE") == 0, "creator is IPluginCreatorV3One");
    auto* creator = static_cast<IPluginCreatorV3One*>(creators[0]);
    check(std::strcmp(creator->getPluginName(), "RFConvRectify") == 0, "plugin name");
    check(std::strcmp(creator->getPluginVersion(), "1") == 0, "plugin version");
    check(std::strcmp(creator->getPluginNamespace(), "rfconv") == 0, "plugin namespace");
    std::string names;
    for (int32_t i = 0; i < creator->getFieldNames()->nbFields; ++i)
    {
        names += std::string{creator->getFieldNames()->fields[i].name} + " ";
    }
    check(names == "kernel stride padding dilation average_mode count_mode activation ", "field names");

    // Build phase: the fields the ONNX parser passes.
    OnnxAttributes attributes;
    IPluginV3* plugin = create(creator, attributes.fields(), TensorRTPhase::kBUILD);
    check(plugin != nullptr, "createPlugin with parser-style fields");
    if (plugin == nullptr)
    {
        return 1;
    }
    auto* core = static_cast<IPluginV3OneCore*>(plugin->getCapabilityInterface(PluginCapabilityType::kCORE));
    auto* build = static_cast<IPluginV3OneBuildV2*>(plugin->getCapabilityInterface(PluginCapabilityType::kBUILD));
    auto* runtime = static_cast<IPluginV3OneRuntime*>(plugin->getCapabilityInterface(PluginCapabilityType::kRUNTIME));
    check(core != nullptr && build != nullptr && runtime != nullptr, "all three capabilities");
    check(std::strcmp(core->getPluginName(), "RFConvRectify") == 0, "core name");
    check(std::strcmp(build->getInterfaceInfo().kind, "PLUGIN_V3ONE_BUILD") == 0
            && build->getInterfaceInfo().major == 2,
        "build capability is IPluginV3OneBuildV2");
    check(build->getNbOutputs() == 1, "one output");
    check(build->getAliasedInput(0) == 0 && build->getAliasedInput(1) == -1, "output 0 aliases input 0");
    check(contains(build->getMetadataString(), "count_mode=exact activation=relu"), "metadata string");

    // Serialization round trip (runtime phase gets the serialized fields).
    std::string const fields = serialized(plugin);
    check(fields
            == "kernel=3,3,;stride=1,1,;padding=1,1,;dilation=1,1,;average_mode=0,;count_mode=exact;activation=relu;",
        "serialized fields");
    auto* serializedFc = runtime->getFieldsToSerialize();
    std::vector<PluginField> copy(serializedFc->fields, serializedFc->fields + serializedFc->nbFields);
    IPluginV3* restored = create(creator, copy, TensorRTPhase::kRUNTIME);
    check(restored != nullptr && serialized(restored) == fields, "deserialized plugin has the same fields");
    IPluginV3* cloned = plugin->clone();
    check(cloned != nullptr && serialized(cloned) == fields, "clone has the same fields");

    // Format combinations: inputs (conv output, conv input, bias), output.
    DynamicPluginTensorDesc io[4]{};
    io[0].desc = desc({2, 8, 56, 56}, DataType::kHALF);
    io[1].desc = desc({2, 8, 56, 56}, DataType::kHALF);
    io[1].desc.format = TensorFormat::kHWC8;
    io[2].desc = desc({1, 8, 1, 1}, DataType::kHALF);
    io[3].desc = desc({2, 8, 56, 56}, DataType::kHALF);
    check(build->supportsFormatCombination(0, io, 3, 1), "fp16 linear conv output");
    check(build->supportsFormatCombination(1, io, 3, 1), "conv input in any format (shape only)");
    check(build->supportsFormatCombination(2, io, 3, 1), "fp16 bias");
    check(build->supportsFormatCombination(3, io, 3, 1), "fp16 output");
    io[3].desc.type = DataType::kFLOAT;
    check(!build->supportsFormatCombination(3, io, 3, 1), "output type must match the conv output");
    io[0].desc.type = DataType::kINT8;
    check(!build->supportsFormatCombination(0, io, 3, 1), "int8 rejected");
    io[0].desc.type = DataType::kFLOAT;
    io[0].desc.format = TensorFormat::kCHW32;
    check(!build->supportsFormatCombination(0, io, 3, 1), "vectorized formats rejected");
    DataType outType{};
    DataType const inTypes[3] = {DataType::kHALF, DataType::kHALF, DataType::kHALF};
    check(build->getOutputDataTypes(&outType, 1, inTypes, 3) == 0 && outType == DataType::kHALF, "output type");

    // Runtime shape checks.
    PluginTensorDesc in[3] = {desc({2, 8, 56, 56}), desc({2, 3, 56, 56}), desc({1, 8, 1, 1})};
    PluginTensorDesc out[1] = {desc({2, 8, 56, 56})};
    check(runtime->onShapeChange(in, 3, out, 1) == 0, "valid shapes accepted");
    check(runtime->onShapeChange(in, 2, out, 1) == 0, "bias is optional");
    in[0] = desc({2, 8, 55, 56});
    finder.logger.errors.clear();
    check(runtime->onShapeChange(in, 3, out, 1) != 0, "conv output size that does not match is rejected");
    check(contains(finder.logger.errors, "does not match"), "mismatch message");
    in[0] = desc({2, 8, 56, 56});
    in[2] = desc({1, 7, 1, 1});
    finder.logger.errors.clear();
    check(runtime->onShapeChange(in, 3, out, 1) != 0, "bias of the wrong size is rejected");
    check(contains(finder.logger.errors, "one value per channel"), "bias message");

    // has_bias: not an ONNX attribute, so absent above; serialized once configurePlugin knows the inputs,
    // and checked against the inputs of the deserialized layer.
    in[2] = desc({1, 8, 1, 1});
    DynamicPluginTensorDesc configIn[3]{};
    configIn[0].desc = desc({-1, 8, -1, -1});
    configIn[1].desc = desc({-1, 3, -1, -1});
    configIn[2].desc = desc({1, 8, 1, 1});
    DynamicPluginTensorDesc configOut[1]{};
    configOut[0].desc = desc({-1, 8, -1, -1});
    IPluginV3* configured = create(creator, attributes.fields(), TensorRTPhase::kBUILD);
    auto* configuredBuild
        = static_cast<IPluginV3OneBuildV2*>(configured->getCapabilityInterface(PluginCapabilityType::kBUILD));
    check(configuredBuild->configurePlugin(configIn, 3, configOut, 1) == 0, "configurePlugin with a bias");
    std::string const withBias = serialized(configured);
    check(withBias == fields + "has_bias=1,;", "has_bias=1 serialized once configured with a bias");
    check(configuredBuild->configurePlugin(configIn, 2, configOut, 1) == 0
            && serialized(configured) == fields + "has_bias=0,;",
        "has_bias=0 serialized once configured without one");
    check(configuredBuild->configurePlugin(configIn, 3, configOut, 1) == 0, "configured with a bias again");
    PluginFieldCollection const* withBiasFc = static_cast<IPluginV3OneRuntime*>(
        configured->getCapabilityInterface(PluginCapabilityType::kRUNTIME))->getFieldsToSerialize();
    std::vector<PluginField> withBiasFields(withBiasFc->fields, withBiasFc->fields + withBiasFc->nbFields);
    IPluginV3* deserialized = create(creator, withBiasFields, TensorRTPhase::kRUNTIME);
    check(deserialized != nullptr && serialized(deserialized) == withBias, "has_bias survives the round trip");
    IPluginV3* deserializedClone = deserialized != nullptr ? deserialized->clone() : nullptr;
    check(deserializedClone != nullptr && serialized(deserializedClone) == withBias, "a clone keeps has_bias");
    if (deserialized != nullptr)
    {
        auto* deserializedRuntime
            = static_cast<IPluginV3OneRuntime*>(deserialized->getCapabilityInterface(PluginCapabilityType::kRUNTIME));
        finder.logger.errors.clear();
        check(deserializedRuntime->onShapeChange(in, 2, out, 1) != 0, "has_bias=1 plan given no bias is rejected");
        check(contains(finder.logger.errors, "serialized with a bias input (has_bias=1) but has 2 inputs"),
            "has_bias mismatch message");
        check(deserializedRuntime->onShapeChange(in, 3, out, 1) == 0, "has_bias=1 plan with a bias accepted");

        // A failed kernel launch says why: CUDA's error, the GPU (when it can be queried) and the kernels
        // built. Only without a GPU, where the launch fails for real and nothing runs.
        int deviceCount = 0;
        if (cudaGetDeviceCount(&deviceCount) != cudaSuccess || deviceCount == 0)
        {
            float dummy[4]{};
            void const* inputs[3] = {dummy, dummy, dummy};
            void* outputs[1] = {dummy};
            finder.logger.errors.clear();
            check(deserializedRuntime->enqueue(in, out, inputs, outputs, nullptr, nullptr) != 0,
                "enqueue without a GPU fails");
            check(contains(finder.logger.errors, "the kernel launch failed with cuda"),
                "launch failure names the CUDA error");
            check(contains(finder.logger.errors, "this plugin library holds kernels for sm_"),
                "launch failure names the kernels built");
            std::printf("no GPU: a failed launch reports: %s", finder.logger.errors.c_str());
        }
    }
    // A plan serialized before has_bias existed: the plugin learns it from the inputs, as it always did.
    IPluginV3* oldPlan = create(creator, copy, TensorRTPhase::kRUNTIME);
    auto* oldRuntime
        = static_cast<IPluginV3OneRuntime*>(oldPlan->getCapabilityInterface(PluginCapabilityType::kRUNTIME));
    check(oldRuntime->onShapeChange(in, 2, out, 1) == 0 && serialized(oldPlan) == fields + "has_bias=0,;",
        "a plan without has_bias learns it from onShapeChange");
    std::vector<PluginField> badBias = withBiasFields;
    int32_t const two = 2;
    badBias.back().data = &two;
    finder.logger.errors.clear();
    check(create(creator, badBias, TensorRTPhase::kRUNTIME) == nullptr
            && contains(finder.logger.errors, "'has_bias' must be one int32, 0 or 1"),
        "has_bias other than 0 or 1 rejected");

    OnnxAttributes tooMuchPadding;
    tooMuchPadding.padding = {3, 3};
    IPluginV3* padded = create(creator, tooMuchPadding.fields(), TensorRTPhase::kBUILD);
    auto* paddedRuntime
        = static_cast<IPluginV3OneRuntime*>(padded->getCapabilityInterface(PluginCapabilityType::kRUNTIME));
    PluginTensorDesc paddedIn[2] = {desc({1, 1, 10, 10}), desc({1, 1, 6, 6})};
    PluginTensorDesc paddedOut[1] = {desc({1, 1, 10, 10})};
    finder.logger.errors.clear();
    check(paddedRuntime->onShapeChange(paddedIn, 2, paddedOut, 1) != 0, "padding-only positions rejected");
    check(contains(finder.logger.errors, "sees only padding"), "padding message");

    // Bad attributes: nullptr and a message naming the attribute.
    struct BadCase
    {
        char const* what;
        OnnxAttributes attributes;
        char const* message;
    };
    std::vector<BadCase> bad(5);
    bad[0] = {"unknown count_mode", {}, "'count_mode' is 'fancy'"};
    bad[0].attributes.countMode = "fancy";
    bad[1] = {"unknown activation", {}, "'activation' is 'gelu'"};
    bad[1].attributes.activation = "gelu";
    bad[2] = {"three kernel values", {}, "'kernel' must be 1 or 2 int32 values"};
    bad[2].attributes.kernel = {3, 3, 3};
    bad[3] = {"unknown attribute", {}, "unknown attribute 'pads'"};
    bad[3].attributes.extraName = "pads";
    bad[4] = {"zero stride", {}, "must be >= 1"};
    bad[4].attributes.stride = {0, 1};
    for (BadCase const& c : bad)
    {
        finder.logger.errors.clear();
        IPluginV3* p = create(creator, c.attributes.fields(), TensorRTPhase::kBUILD);
        check(p == nullptr, c.what);
        check(contains(finder.logger.errors, c.message), c.message);
        delete p;
    }
    std::vector<PluginField> noKernel = OnnxAttributes{}.fields();
    noKernel.erase(noKernel.begin());
    finder.logger.errors.clear();
    check(create(creator, noKernel, TensorRTPhase::kBUILD) == nullptr, "kernel is required");
    check(contains(finder.logger.errors, "'kernel' is required"), "missing kernel message");

    delete configured;
    delete deserialized;
    delete deserializedClone;
    delete oldPlan;
    delete plugin;
    delete restored;
    delete cloned;
    delete padded;
    std::printf("plugin host test: %d failures\n", gFailures);
    return gFailures == 0 ? 0 : 1;
}
