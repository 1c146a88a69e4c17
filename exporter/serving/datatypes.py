"""Tensor type names of the three vocabularies the serving code speaks, and their numpy dtypes.

KServe v2 (the HTTP protocol) names types ``FP32``, ``INT64``...; ONNX Runtime reports
``tensor(float)``, ``tensor(int64)``...; Triton's model config uses ``TYPE_FP32``, ``TYPE_INT64``...
``BYTES`` (strings) and ``BF16`` have no plain numpy dtype and are not served.
"""

from __future__ import annotations

import numpy as np

KSERVE_TO_NUMPY: dict[str, np.dtype] = {
    "BOOL": np.dtype(np.bool_),
    "UINT8": np.dtype(np.uint8),
    "UINT16": np.dtype(np.uint16),
    "UINT32": np.dtype(np.uint32),
    "UINT64": np.dtype(np.uint64),
    "INT8": np.dtype(np.int8),
    "INT16": np.dtype(np.int16),
    "INT32": np.dtype(np.int32),
    "INT64": np.dtype(np.int64),
    "FP16": np.dtype(np.float16),
    "FP32": np.dtype(np.float32),
    "FP64": np.dtype(np.float64),
}
NUMPY_TO_KSERVE = {dtype: name for name, dtype in KSERVE_TO_NUMPY.items()}

ORT_TO_KSERVE = {
    "tensor(bool)": "BOOL",
    "tensor(uint8)": "UINT8",
    "tensor(uint16)": "UINT16",
    "tensor(uint32)": "UINT32",
    "tensor(uint64)": "UINT64",
    "tensor(int8)": "INT8",
    "tensor(int16)": "INT16",
    "tensor(int32)": "INT32",
    "tensor(int64)": "INT64",
    "tensor(float16)": "FP16",
    "tensor(float)": "FP32",
    "tensor(double)": "FP64",
}

FLOAT_TYPES = frozenset({"FP16", "FP32", "FP64"})


def numpy_dtype(datatype: str) -> np.dtype:
    """The numpy dtype of a KServe datatype name; ValueError names the supported ones."""
    try:
        return KSERVE_TO_NUMPY[datatype]
    except (KeyError, TypeError) as err:
        raise ValueError(
            f"datatype {datatype!r} is not supported; use one of {', '.join(KSERVE_TO_NUMPY)}"
        ) from err


def kserve_datatype(dtype) -> str:
    """The KServe datatype name of a numpy dtype (ValueError for dtypes KServe cannot carry)."""
    try:
        return NUMPY_TO_KSERVE[np.dtype(dtype)]
    except KeyError as err:
        raise ValueError(f"numpy dtype {np.dtype(dtype)} has no KServe v2 datatype") from err


def kserve_from_ort(ort_type: str) -> str:
    """KServe datatype of an ONNX Runtime type string such as ``tensor(float)``."""
    try:
        return ORT_TO_KSERVE[ort_type]
    except KeyError as err:
        raise ValueError(f"ONNX Runtime type {ort_type} cannot be served over KServe v2") from err


def kserve_from_onnx(elem_type: int) -> str:
    """KServe datatype of an ONNX ``TensorProto`` element type (an int such as ``TensorProto.FLOAT``)."""
    import onnx

    try:
        return kserve_datatype(onnx.helper.tensor_dtype_to_np_dtype(elem_type))
    except (KeyError, ValueError) as err:
        names = dict(onnx.TensorProto.DataType.items())
        name = next((n for n, v in names.items() if v == elem_type), str(elem_type))
        raise ValueError(f"ONNX element type {name} cannot be served over KServe v2") from err


def triton_type(datatype: str) -> str:
    """Triton model-config ``DataType`` enum name (``TYPE_FP32``) for a KServe datatype (``FP32``)."""
    numpy_dtype(datatype)
    return f"TYPE_{datatype}"
