"""Step 3a: TensorRT engines from exported ONNX files (:mod:`.engine`, ``rfconv-deploy build``).

TensorRT is imported lazily, inside the functions that need it.
"""
