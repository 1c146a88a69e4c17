/*
 * RFConvRectify: TensorRT IPluginV3 plugin applying the rectified-convolution factor to a conv output,
 * optionally fused with a per-channel bias add and ReLU. Name "RFConvRectify", version "1", namespace
 * "rfconv". See README.md for inputs, outputs and attributes.
 */
#ifndef RFCONV_RECTIFY_PLUGIN_H
#define RFCONV_RECTIFY_PLUGIN_H

#include "rfconvRectifyKernel.h"

#include "NvInferRuntime.h"

#include <string>
#include <vector>

namespace rfconv
{
namespace plugin
{

constexpr char const* kPLUGIN_NAME{"RFConvRectify"};
constexpr char const* kPLUGIN_VERSION{"1"};
constexpr char const* kPLUGIN_NAMESPACE{"rfconv"};

//! Writes an error through the logger TensorRT handed to setLoggerFinder(), else TensorRT's global logger
//! (getLogger() of the runtime found when the library was loaded), else stderr.
void logError(char const* message) noexcept;

//! Reports an error to `recorder` when there is one, else through logError(), as TensorRT does.
void reportError(nvinfer1::IErrorRecorder* recorder, nvinfer1::ErrorCode code, char const* message) noexcept;

//! Serialized field "has_bias": whether the layer has the bias input. Not an ONNX attribute (it is not in
//! the creator's field names); plans serialized before it existed do not carry it.
constexpr char const* kHAS_BIAS_FIELD{"has_bias"};

//! The plugin's creation state: what the attributes (plugin fields) hold.
struct RectifyAttributes
{
    int32_t kernel[2]{0, 0};
    int32_t stride[2]{1, 1};
    int32_t padding[2]{0, 0};
    int32_t dilation[2]{1, 1};
    int32_t averageMode{0};
    CountMode countMode{CountMode::kEXACT};
    bool relu{false};
    //! 1 or 0 from the serialized field "has_bias"; -1 when not given (ONNX attributes, older plans): the
    //! plugin then learns it from the number of inputs in configurePlugin / onShapeChange.
    int32_t hasBias{-1};

    RectifyGeometry geometry() const noexcept;
};

class RFConvRectifyPlugin : public nvinfer1::IPluginV3,
                            public nvinfer1::IPluginV3OneCore,
                            public nvinfer1::IPluginV3OneBuildV2,
                            public nvinfer1::IPluginV3OneRuntime
{
public:
    explicit RFConvRectifyPlugin(RectifyAttributes const& attributes);
    RFConvRectifyPlugin(RFConvRectifyPlugin const& other);
    RFConvRectifyPlugin& operator=(RFConvRectifyPlugin const&) = delete;
    ~RFConvRectifyPlugin() override;

    // IPluginV3
    nvinfer1::IPluginCapability* getCapabilityInterface(nvinfer1::PluginCapabilityType type) noexcept override;
    nvinfer1::IPluginV3* clone() noexcept override;

    // IPluginV3OneCore
    char const* getPluginName() const noexcept override;
    char const* getPluginVersion() const noexcept override;
    char const* getPluginNamespace() const noexcept override;

    // IPluginV3OneBuild(V2)
    int32_t getNbOutputs() const noexcept override;
    int32_t configurePlugin(nvinfer1::DynamicPluginTensorDesc const* in, int32_t nbInputs,
        nvinfer1::DynamicPluginTensorDesc const* out, int32_t nbOutputs) noexcept override;
    bool supportsFormatCombination(int32_t pos, nvinfer1::DynamicPluginTensorDesc const* inOut, int32_t nbInputs,
        int32_t nbOutputs) noexcept override;
    int32_t getOutputDataTypes(nvinfer1::DataType* outputTypes, int32_t nbOutputs,
        nvinfer1::DataType const* inputTypes, int32_t nbInputs) const noexcept override;
    int32_t getOutputShapes(nvinfer1::DimsExprs const* inputs, int32_t nbInputs,
        nvinfer1::DimsExprs const* shapeInputs, int32_t nbShapeInputs, nvinfer1::DimsExprs* outputs,
        int32_t nbOutputs, nvinfer1::IExprBuilder& exprBuilder) noexcept override;
    int32_t getAliasedInput(int32_t outputIndex) noexcept override;
    char const* getMetadataString() noexcept override;

    // IPluginV3OneRuntime
    int32_t onShapeChange(nvinfer1::PluginTensorDesc const* in, int32_t nbInputs,
        nvinfer1::PluginTensorDesc const* out, int32_t nbOutputs) noexcept override;
    int32_t enqueue(nvinfer1::PluginTensorDesc const* inputDesc, nvinfer1::PluginTensorDesc const* outputDesc,
        void const* const* inputs, void* const* outputs, void* workspace, cudaStream_t stream) noexcept override;
    nvinfer1::IPluginV3* attachToContext(nvinfer1::IPluginResourceContext* context) noexcept override;
    nvinfer1::PluginFieldCollection const* getFieldsToSerialize() noexcept override;

private:
    //! The rectification problem for these runtime shapes; false (with a reported reason) when invalid.
    bool problemFor(nvinfer1::PluginTensorDesc const* in, int32_t nbInputs, RectifyProblem& problem) const noexcept;
    //! Takes the bias presence from the input count, after checking it against a serialized "has_bias".
    bool checkBiasInput(int32_t nbInputs) noexcept;
    //! Error for a failed kernel launch: CUDA's error, the GPU and its compute capability, the built targets.
    std::string launchFailure(cudaError_t status) const;
    //! Holds a reference to `recorder` (the execution context's, from attachToContext) for runtime errors.
    void setErrorRecorder(nvinfer1::IErrorRecorder* recorder) noexcept;
    void reportRuntimeError(nvinfer1::ErrorCode code, char const* message) const noexcept;

    RectifyAttributes mAttributes;
    int32_t mHasBias{-1}; //!< 1/0 once known (serialized, or from the input count); -1 before; serialized
    nvinfer1::IErrorRecorder* mErrorRecorder{nullptr};
    std::string mMetadata;
    std::vector<nvinfer1::PluginField> mFieldsToSerialize;
    nvinfer1::PluginFieldCollection mFieldCollection{};
};

class RFConvRectifyPluginCreator : public nvinfer1::IPluginCreatorV3One
{
public:
    RFConvRectifyPluginCreator();
    ~RFConvRectifyPluginCreator() override = default;

    char const* getPluginName() const noexcept override;
    char const* getPluginVersion() const noexcept override;
    char const* getPluginNamespace() const noexcept override;
    nvinfer1::PluginFieldCollection const* getFieldNames() noexcept override;
    nvinfer1::IPluginV3* createPlugin(
        char const* name, nvinfer1::PluginFieldCollection const* fc, nvinfer1::TensorRTPhase phase) noexcept override;

private:
    std::vector<nvinfer1::PluginField> mFieldNames;
    nvinfer1::PluginFieldCollection mFieldCollection{};
};

} // namespace plugin
} // namespace rfconv

#endif // RFCONV_RECTIFY_PLUGIN_H
