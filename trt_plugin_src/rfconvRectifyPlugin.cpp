/*
 * RFConvRectify plugin and creator (see rfconvRectifyPlugin.h and README.md).
 */
#include "rfconvRectifyPlugin.h"

#include <cuda_runtime_api.h>

#include <cstring>
#include <exception>
#include <limits>
#include <sstream>
#include <string_view>

using namespace nvinfer1;

namespace rfconv
{
namespace plugin
{
namespace
{

constexpr int32_t kINPUT_CONV_OUTPUT = 0;
constexpr int32_t kINPUT_CONV_INPUT = 1;
constexpr int32_t kINPUT_BIAS = 2;

char const* countModeName(CountMode mode)
{
    return mode == CountMode::kEXACT ? "exact" : "rfconv";
}

char const* activationName(bool relu)
{
    return relu ? "relu" : "none";
}

char const* describe(GeometryStatus status)
{
    switch (status)
    {
    case GeometryStatus::kOK: return "ok";
    case GeometryStatus::kBAD_ARGUMENT:
        return "the conv output size does not match kernel/stride/padding/dilation for this conv input size";
    case GeometryStatus::kEMPTY_OUTPUT: return "the conv input is too small for the kernel: the output would be empty";
    case GeometryStatus::kPADDING_ONLY:
        return "an output position sees only padding (factor would divide by zero); use padding <= "
               "dilation*(kernel-1)";
    case GeometryStatus::kRFCONV_EMPTY_WINDOW:
        return "count_mode 'rfconv' leaves an output position with no input pixel; use count_mode 'exact'";
    }
    return "unknown geometry error";
}

//! Reads an int attribute given as 1 value (both axes) or 2 values (height, width).
bool readPair(PluginField const& field, int32_t (&value)[2], std::string& error)
{
    if (field.type != PluginFieldType::kINT32 || (field.length != 1 && field.length != 2) || field.data == nullptr)
    {
        error = std::string{"attribute '"} + field.name + "' must be 1 or 2 int32 values (an ONNX ints attribute)";
        return false;
    }
    auto const* data = static_cast<int32_t const*>(field.data);
    value[0] = data[0];
    value[1] = field.length == 2 ? data[1] : data[0];
    return true;
}

bool readString(PluginField const& field, std::string_view& value, std::string& error)
{
    if (field.type != PluginFieldType::kCHAR || field.data == nullptr || field.length < 1)
    {
        error = std::string{"attribute '"} + field.name + "' must be a string";
        return false;
    }
    auto const* text = static_cast<char const*>(field.data);
    value = std::string_view{text, strnlen(text, static_cast<size_t>(field.length))};
    return true;
}

//! Fills `attributes` from plugin fields; false with a message naming the attribute on bad input.
bool parseAttributes(PluginFieldCollection const* fc, RectifyAttributes& attributes, std::string& error)
{
    if (fc == nullptr)
    {
        error = "no attributes given; 'kernel' is required";
        return false;
    }
    bool haveKernel = false;
    for (int32_t i = 0; i < fc->nbFields; ++i)
    {
        PluginField const& field = fc->fields[i];
        std::string_view const name{field.name == nullptr ? "" : field.name};
        bool ok = true;
        if (name == "kernel")
        {
            ok = readPair(field, attributes.kernel, error);
            haveKernel = ok;
        }
        else if (name == "stride")
        {
            ok = readPair(field, attributes.stride, error);
        }
        else if (name == "padding")
        {
            ok = readPair(field, attributes.padding, error);
        }
        else if (name == "dilation")
        {
            ok = readPair(field, attributes.dilation, error);
        }
        else if (name == "average_mode")
        {
            ok = field.type == PluginFieldType::kINT32 && field.length == 1 && field.data != nullptr;
            if (ok)
            {
                attributes.averageMode = *static_cast<int32_t const*>(field.data);
                ok = attributes.averageMode == 0 || attributes.averageMode == 1;
            }
            if (!ok)
            {
                error = "attribute 'average_mode' must be one int32, 0 (sum mode) or 1 (average mode)";
            }
        }
        else if (name == "count_mode")
        {
            std::string_view mode;
            ok = readString(field, mode, error);
            if (ok && (mode == "exact" || mode == "rfconv"))
            {
                attributes.countMode = mode == "exact" ? CountMode::kEXACT : CountMode::kRFCONV;
            }
            else if (ok)
            {
                ok = false;
                error = "attribute 'count_mode' is '" + std::string{mode} + "'; use 'exact' or 'rfconv'";
            }
        }
        else if (name == kHAS_BIAS_FIELD)
        {
            // Written by getFieldsToSerialize(); 0 or 1.
            ok = field.type == PluginFieldType::kINT32 && field.length == 1 && field.data != nullptr;
            if (ok)
            {
                attributes.hasBias = *static_cast<int32_t const*>(field.data);
                ok = attributes.hasBias == 0 || attributes.hasBias == 1;
            }
            if (!ok)
            {
                error = "serialized field 'has_bias' must be one int32, 0 or 1";
            }
        }
        else if (name == "activation")
        {
            std::string_view activation;
            ok = readString(field, activation, error);
            if (ok && (activation == "none" || activation == "relu"))
            {
                attributes.relu = activation == "relu";
            }
            else if (ok)
            {
                ok = false;
                error = "attribute 'activation' is '" + std::string{activation} + "'; use 'none' or 'relu'";
            }
        }
        else
        {
            ok = false;
            error = "unknown attribute '" + std::string{name}
                + "'; expected kernel, stride, padding, dilation, average_mode, count_mode, activation";
        }
        if (!ok)
        {
            return false;
        }
    }
    if (!haveKernel)
    {
        error = "attribute 'kernel' is required";
        return false;
    }
    for (int32_t axis = 0; axis < 2; ++axis)
    {
        if (attributes.kernel[axis] < 1 || attributes.stride[axis] < 1 || attributes.dilation[axis] < 1
            || attributes.padding[axis] < 0)
        {
            error = "kernel, stride and dilation must be >= 1 and padding >= 0";
            return false;
        }
    }
    return true;
}

//! A dimension as int32, or -1 when it does not fit.
int32_t toInt32(int64_t value)
{
    return value >= 0 && value <= std::numeric_limits<int32_t>::max() ? static_cast<int32_t>(value) : -1;
}

int64_t volume(Dims const& dims)
{
    int64_t v = 1;
    for (int32_t i = 0; i < dims.nbDims; ++i)
    {
        v *= dims.d[i];
    }
    return v;
}

} // namespace

RectifyGeometry RectifyAttributes::geometry() const noexcept
{
    return RectifyGeometry{AxisGeometry{kernel[0], stride[0], padding[0], dilation[0]},
        AxisGeometry{kernel[1], stride[1], padding[1], dilation[1]}, averageMode != 0, countMode};
}

// ---------------------------------------------------------------------------------------------
// RFConvRectifyPlugin
// ---------------------------------------------------------------------------------------------

RFConvRectifyPlugin::RFConvRectifyPlugin(RectifyAttributes const& attributes)
    : mAttributes(attributes)
    , mHasBias(attributes.hasBias)
{
    std::ostringstream text;
    text << "kernel=" << attributes.kernel[0] << "x" << attributes.kernel[1] << " stride=" << attributes.stride[0]
         << "x" << attributes.stride[1] << " padding=" << attributes.padding[0] << "x" << attributes.padding[1]
         << " dilation=" << attributes.dilation[0] << "x" << attributes.dilation[1]
         << " average_mode=" << attributes.averageMode << " count_mode=" << countModeName(attributes.countMode)
         << " activation=" << activationName(attributes.relu);
    mMetadata = text.str();
}

RFConvRectifyPlugin::RFConvRectifyPlugin(RFConvRectifyPlugin const& other)
    : IPluginV3(other)
    , IPluginV3OneCore(other)
    , IPluginV3OneBuildV2(other)
    , IPluginV3OneRuntime(other)
    , mAttributes(other.mAttributes)
    , mHasBias(other.mHasBias)
    , mMetadata(other.mMetadata)
{
    // mFieldsToSerialize points into the object that owns it: rebuilt on demand, never copied.
    setErrorRecorder(other.mErrorRecorder);
}

RFConvRectifyPlugin::~RFConvRectifyPlugin()
{
    setErrorRecorder(nullptr);
}

void RFConvRectifyPlugin::setErrorRecorder(IErrorRecorder* recorder) noexcept
{
    // IErrorRecorder is reference counted: hold one for as long as this plugin may report to it, even if
    // the execution context is given another recorder meanwhile.
    if (recorder != nullptr)
    {
        recorder->incRefCount();
    }
    if (mErrorRecorder != nullptr)
    {
        mErrorRecorder->decRefCount();
    }
    mErrorRecorder = recorder;
}

void RFConvRectifyPlugin::reportRuntimeError(ErrorCode code, char const* message) const noexcept
{
    reportError(mErrorRecorder, code, message);
}

bool RFConvRectifyPlugin::checkBiasInput(int32_t nbInputs) noexcept
{
    int32_t const hasBias = nbInputs == 3 ? 1 : 0;
    int32_t const serialized = mAttributes.hasBias;
    if (serialized >= 0 && serialized != hasBias)
    {
        std::ostringstream message;
        message << "RFConvRectify (" << mMetadata << "): the layer was serialized "
                << (serialized ? "with" : "without") << " a bias input (has_bias=" << serialized << ") but has "
                << nbInputs << " inputs";
        reportRuntimeError(ErrorCode::kINVALID_ARGUMENT, message.str().c_str());
        return false;
    }
    mHasBias = hasBias;
    return true;
}

IPluginCapability* RFConvRectifyPlugin::getCapabilityInterface(PluginCapabilityType type) noexcept
{
    switch (type)
    {
    case PluginCapabilityType::kCORE: return static_cast<IPluginV3OneCore*>(this);
    case PluginCapabilityType::kBUILD: return static_cast<IPluginV3OneBuildV2*>(this);
    case PluginCapabilityType::kRUNTIME: return static_cast<IPluginV3OneRuntime*>(this);
    }
    return nullptr;
}

IPluginV3* RFConvRectifyPlugin::clone() noexcept
{
    try
    {
        return new RFConvRectifyPlugin(*this);
    }
    catch (std::exception const& e)
    {
        logError("RFConvRectify: clone failed:");
        logError(e.what());
    }
    return nullptr;
}

char const* RFConvRectifyPlugin::getPluginName() const noexcept
{
    return kPLUGIN_NAME;
}

char const* RFConvRectifyPlugin::getPluginVersion() const noexcept
{
    return kPLUGIN_VERSION;
}

char const* RFConvRectifyPlugin::getPluginNamespace() const noexcept
{
    return kPLUGIN_NAMESPACE;
}

int32_t RFConvRectifyPlugin::getNbOutputs() const noexcept
{
    return 1;
}

int32_t RFConvRectifyPlugin::configurePlugin(
    DynamicPluginTensorDesc const* in, int32_t nbInputs, DynamicPluginTensorDesc const* out, int32_t nbOutputs) noexcept
{
    if ((nbInputs != 2 && nbInputs != 3) || nbOutputs != 1 || in == nullptr || out == nullptr)
    {
        logError("RFConvRectify: expects inputs (conv output, conv input[, bias]) and one output");
        return -1;
    }
    if (in[kINPUT_CONV_OUTPUT].desc.dims.nbDims != 4 || in[kINPUT_CONV_INPUT].desc.dims.nbDims != 4)
    {
        logError("RFConvRectify: the conv output and the conv input must be 4-D NCHW tensors");
        return -1;
    }
    if (!checkBiasInput(nbInputs))
    {
        return -1;
    }
    if (mHasBias == 1)
    {
        int64_t const channels = in[kINPUT_CONV_OUTPUT].desc.dims.d[1];
        Dims const& bias = in[kINPUT_BIAS].desc.dims;
        bool const known = channels >= 0 && volume(bias) >= 0;
        if (known && volume(bias) != channels)
        {
            logError("RFConvRectify: the bias must hold one value per channel of the conv output");
            return -1;
        }
    }
    return 0;
}

bool RFConvRectifyPlugin::supportsFormatCombination(
    int32_t pos, DynamicPluginTensorDesc const* inOut, int32_t nbInputs, int32_t nbOutputs) noexcept
{
    if (inOut == nullptr || pos < 0 || pos >= nbInputs + nbOutputs)
    {
        return false;
    }
    PluginTensorDesc const& desc = inOut[pos].desc;
    if (pos == kINPUT_CONV_INPUT)
    {
        return true; // only its shape is used: any type and format, so TensorRT inserts no reformat
    }
    if (desc.format != TensorFormat::kLINEAR)
    {
        return false;
    }
    if (pos == kINPUT_CONV_OUTPUT)
    {
        return desc.type == DataType::kFLOAT || desc.type == DataType::kHALF;
    }
    return desc.type == inOut[kINPUT_CONV_OUTPUT].desc.type; // bias and output
}

int32_t RFConvRectifyPlugin::getOutputDataTypes(
    DataType* outputTypes, int32_t nbOutputs, DataType const* inputTypes, int32_t nbInputs) const noexcept
{
    if (outputTypes == nullptr || inputTypes == nullptr || nbOutputs != 1 || nbInputs < 2)
    {
        return -1;
    }
    outputTypes[0] = inputTypes[kINPUT_CONV_OUTPUT];
    return 0;
}

int32_t RFConvRectifyPlugin::getOutputShapes(DimsExprs const* inputs, int32_t nbInputs,
    DimsExprs const* /*shapeInputs*/, int32_t /*nbShapeInputs*/, DimsExprs* outputs, int32_t nbOutputs,
    IExprBuilder& /*exprBuilder*/) noexcept
{
    if (inputs == nullptr || outputs == nullptr || (nbInputs != 2 && nbInputs != 3) || nbOutputs != 1
        || inputs[kINPUT_CONV_OUTPUT].nbDims != 4)
    {
        logError("RFConvRectify: expects a 4-D conv output, the conv input[, a bias] and one output");
        return -1;
    }
    outputs[0] = inputs[kINPUT_CONV_OUTPUT]; // rectification keeps the conv output's shape, whatever it is
    return 0;
}

int32_t RFConvRectifyPlugin::getAliasedInput(int32_t outputIndex) noexcept
{
    // With PreviewFeature::kALIASED_PLUGIN_IO_10_03 the output may share the conv output's memory;
    // the kernel then touches only border positions when there is nothing else to fuse.
    return outputIndex == 0 ? kINPUT_CONV_OUTPUT : -1;
}

char const* RFConvRectifyPlugin::getMetadataString() noexcept
{
    return mMetadata.c_str();
}

bool RFConvRectifyPlugin::problemFor(
    PluginTensorDesc const* in, int32_t nbInputs, RectifyProblem& problem) const noexcept
{
    Dims const& y = in[kINPUT_CONV_OUTPUT].dims;
    Dims const& x = in[kINPUT_CONV_INPUT].dims;
    if (y.nbDims != 4 || x.nbDims != 4 || y.d[0] != x.d[0])
    {
        reportRuntimeError(ErrorCode::kINVALID_ARGUMENT,
            "RFConvRectify: the conv output and conv input must be 4-D NCHW with the same batch size");
        return false;
    }
    problem.batch = y.d[0];
    problem.channels = y.d[1];
    problem.outH = toInt32(y.d[2]);
    problem.outW = toInt32(y.d[3]);
    problem.inH = toInt32(x.d[2]);
    problem.inW = toInt32(x.d[3]);
    problem.geometry = mAttributes.geometry();
    problem.relu = mAttributes.relu;
    if (nbInputs == 3 && volume(in[kINPUT_BIAS].dims) != problem.channels)
    {
        reportRuntimeError(
            ErrorCode::kINVALID_ARGUMENT, "RFConvRectify: the bias must hold one value per channel of the conv output");
        return false;
    }
    return true;
}

int32_t RFConvRectifyPlugin::onShapeChange(
    PluginTensorDesc const* in, int32_t nbInputs, PluginTensorDesc const* out, int32_t nbOutputs) noexcept
{
    try
    {
        if (in == nullptr || out == nullptr || (nbInputs != 2 && nbInputs != 3) || nbOutputs != 1)
        {
            reportRuntimeError(ErrorCode::kINVALID_ARGUMENT,
                "RFConvRectify: expects inputs (conv output, conv input[, bias]) and one output");
            return -1;
        }
        if (!checkBiasInput(nbInputs))
        {
            return -1;
        }
        RectifyProblem problem{};
        if (!problemFor(in, nbInputs, problem))
        {
            return -1;
        }
        GeometryStatus const status = checkProblem(problem);
        if (status != GeometryStatus::kOK)
        {
            std::ostringstream message;
            message << "RFConvRectify (" << mMetadata << "): conv input " << problem.inH << "x" << problem.inW
                    << ", conv output " << problem.outH << "x" << problem.outW << ": " << describe(status);
            reportRuntimeError(ErrorCode::kINVALID_ARGUMENT, message.str().c_str());
            return -1;
        }
        return 0;
    }
    catch (std::exception const& e)
    {
        reportRuntimeError(
            ErrorCode::kINTERNAL_ERROR, (std::string{"RFConvRectify: onShapeChange failed: "} + e.what()).c_str());
    }
    return -1;
}

std::string RFConvRectifyPlugin::launchFailure(cudaError_t status) const
{
    std::ostringstream message;
    message << "RFConvRectify (" << mMetadata << "): the kernel launch failed with " << cudaGetErrorName(status)
            << " (" << cudaGetErrorString(status) << ")";
    int device = -1;
    int major = 0;
    int minor = 0;
    cudaDeviceProp properties{};
    bool const known = cudaGetDevice(&device) == cudaSuccess
        && cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, device) == cudaSuccess
        && cudaDeviceGetAttribute(&minor, cudaDevAttrComputeCapabilityMinor, device) == cudaSuccess;
    if (known)
    {
        message << " on GPU " << device;
        if (cudaGetDeviceProperties(&properties, device) == cudaSuccess)
        {
            message << " (" << properties.name << ")";
        }
        message << " of compute capability " << major << "." << minor;
    }
    else
    {
        message << " (the GPU and its compute capability could not be queried)";
    }
    message << "; this plugin library holds kernels for " << RFCONV_CUDA_TARGETS;
    if (status == cudaErrorNoKernelImageForDevice || status == cudaErrorInvalidDeviceFunction)
    {
        message << ": none runs on this GPU; rebuild trt_plugin_src with -DCMAKE_CUDA_ARCHITECTURES=";
        if (known)
        {
            message << major << minor;
        }
        else
        {
            message << "<compute capability, e.g. 75>";
        }
        message << " (or a list that includes it)";
    }
    // A failed query above is recorded as CUDA's last error: clear it, it is not TensorRT's to find. (The
    // launch error itself was taken by launchRectify; a sticky error stays, as it must.)
    cudaGetLastError();
    return message.str();
}

int32_t RFConvRectifyPlugin::enqueue(PluginTensorDesc const* inputDesc, PluginTensorDesc const* /*outputDesc*/,
    void const* const* inputs, void* const* outputs, void* /*workspace*/, cudaStream_t stream) noexcept
{
    try
    {
        if (inputDesc == nullptr || inputs == nullptr || outputs == nullptr)
        {
            reportRuntimeError(ErrorCode::kINVALID_ARGUMENT, "RFConvRectify: enqueue was given no tensors");
            return -1;
        }
        if (mHasBias < 0)
        {
            reportRuntimeError(ErrorCode::kINVALID_STATE,
                "RFConvRectify: enqueue before onShapeChange: the number of inputs (bias or not) is unknown");
            return -1;
        }
        RectifyProblem problem{};
        if (!problemFor(inputDesc, mHasBias == 1 ? 3 : 2, problem))
        {
            return -1;
        }
        DataType const type = inputDesc[kINPUT_CONV_OUTPUT].type;
        if (type != DataType::kFLOAT && type != DataType::kHALF)
        {
            reportRuntimeError(
                ErrorCode::kINVALID_ARGUMENT, "RFConvRectify: supports float32 and float16 tensors only");
            return -1;
        }
        ElementType const element = type == DataType::kFLOAT ? ElementType::kFLOAT32 : ElementType::kFLOAT16;
        void const* bias = mHasBias == 1 ? inputs[kINPUT_BIAS] : nullptr;
        cudaError_t const status
            = launchRectify(problem, element, inputs[kINPUT_CONV_OUTPUT], outputs[0], bias, stream);
        if (status != cudaSuccess)
        {
            // Say why rather than only returning non-zero: TensorRT's own message names neither the CUDA
            // error nor the GPU, and "no kernel image" means this library was built for other GPUs.
            reportRuntimeError(ErrorCode::kFAILED_EXECUTION, launchFailure(status).c_str());
            return -1;
        }
        return 0;
    }
    catch (std::exception const& e)
    {
        reportRuntimeError(
            ErrorCode::kINTERNAL_ERROR, (std::string{"RFConvRectify: enqueue failed: "} + e.what()).c_str());
    }
    return -1;
}

IPluginV3* RFConvRectifyPlugin::attachToContext(IPluginResourceContext* context) noexcept
{
    try
    {
        auto* plugin = new RFConvRectifyPlugin(*this);
        // Runtime errors (onShapeChange, enqueue) go to the execution context's error recorder, if any.
        plugin->setErrorRecorder(context != nullptr ? context->getErrorRecorder() : nullptr);
        return plugin;
    }
    catch (std::exception const& e)
    {
        logError((std::string{"RFConvRectify: attachToContext failed: "} + e.what()).c_str());
    }
    return nullptr;
}

PluginFieldCollection const* RFConvRectifyPlugin::getFieldsToSerialize() noexcept
{
    try
    {
        char const* const countMode = countModeName(mAttributes.countMode);
        char const* const activation = activationName(mAttributes.relu);
        mFieldsToSerialize.clear();
        mFieldsToSerialize.emplace_back("kernel", mAttributes.kernel, PluginFieldType::kINT32, 2);
        mFieldsToSerialize.emplace_back("stride", mAttributes.stride, PluginFieldType::kINT32, 2);
        mFieldsToSerialize.emplace_back("padding", mAttributes.padding, PluginFieldType::kINT32, 2);
        mFieldsToSerialize.emplace_back("dilation", mAttributes.dilation, PluginFieldType::kINT32, 2);
        mFieldsToSerialize.emplace_back("average_mode", &mAttributes.averageMode, PluginFieldType::kINT32, 1);
        mFieldsToSerialize.emplace_back(
            "count_mode", countMode, PluginFieldType::kCHAR, static_cast<int32_t>(std::strlen(countMode) + 1));
        mFieldsToSerialize.emplace_back(
            "activation", activation, PluginFieldType::kCHAR, static_cast<int32_t>(std::strlen(activation) + 1));
        if (mHasBias >= 0)
        {
            // Known once configured: the deserialized plugin then checks the layer's inputs against it
            // instead of inferring the bias from whatever onShapeChange is given (README, Serialization).
            mFieldsToSerialize.emplace_back(kHAS_BIAS_FIELD, &mHasBias, PluginFieldType::kINT32, 1);
        }
        mFieldCollection.nbFields = static_cast<int32_t>(mFieldsToSerialize.size());
        mFieldCollection.fields = mFieldsToSerialize.data();
        return &mFieldCollection;
    }
    catch (std::exception const& e)
    {
        logError("RFConvRectify: serialization failed:");
        logError(e.what());
    }
    return nullptr;
}

// ---------------------------------------------------------------------------------------------
// RFConvRectifyPluginCreator
// ---------------------------------------------------------------------------------------------

RFConvRectifyPluginCreator::RFConvRectifyPluginCreator()
{
    mFieldNames.emplace_back("kernel", nullptr, PluginFieldType::kINT32, 2);
    mFieldNames.emplace_back("stride", nullptr, PluginFieldType::kINT32, 2);
    mFieldNames.emplace_back("padding", nullptr, PluginFieldType::kINT32, 2);
    mFieldNames.emplace_back("dilation", nullptr, PluginFieldType::kINT32, 2);
    mFieldNames.emplace_back("average_mode", nullptr, PluginFieldType::kINT32, 1);
    mFieldNames.emplace_back("count_mode", nullptr, PluginFieldType::kCHAR, 0);
    mFieldNames.emplace_back("activation", nullptr, PluginFieldType::kCHAR, 0);
    mFieldCollection.nbFields = static_cast<int32_t>(mFieldNames.size());
    mFieldCollection.fields = mFieldNames.data();
}

char const* RFConvRectifyPluginCreator::getPluginName() const noexcept
{
    return kPLUGIN_NAME;
}

char const* RFConvRectifyPluginCreator::getPluginVersion() const noexcept
{
    return kPLUGIN_VERSION;
}

char const* RFConvRectifyPluginCreator::getPluginNamespace() const noexcept
{
    return kPLUGIN_NAMESPACE;
}

PluginFieldCollection const* RFConvRectifyPluginCreator::getFieldNames() noexcept
{
    return &mFieldCollection;
}

IPluginV3* RFConvRectifyPluginCreator::createPlugin(
    char const* name, PluginFieldCollection const* fc, TensorRTPhase /*phase*/) noexcept
{
    try
    {
        RectifyAttributes attributes;
        std::string error;
        if (!parseAttributes(fc, attributes, error))
        {
            logError((std::string{"RFConvRectify layer '"} + (name == nullptr ? "" : name) + "': " + error).c_str());
            return nullptr;
        }
        return new RFConvRectifyPlugin(attributes);
    }
    catch (std::exception const& e)
    {
        logError("RFConvRectify: createPlugin failed:");
        logError(e.what());
    }
    return nullptr;
}

} // namespace plugin
} // namespace rfconv
