"""Call the rfconv-deploy server (or Triton itself) with NVIDIA's ``tritonclient``: health, metadata, inference.

    python deploy_examples/client.py --url 127.0.0.1:8000 --model rf_resnet50 --batch 4

Reads the model's input shape from its metadata, sends a random batch as binary tensor data and
prints the output's shape and each row's top class.
"""

from __future__ import annotations

import argparse

import numpy as np
import tritonclient.http as triton_http

from exporter.serving.datatypes import numpy_dtype


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default="127.0.0.1:8000", help="host:port of the server")
    parser.add_argument("--model", default="rf_resnet50", help="model name")
    parser.add_argument("--batch", type=int, default=4, help="rows to send (for a dynamic batch dimension)")
    args = parser.parse_args()

    client = triton_http.InferenceServerClient(args.url)
    if not (client.is_server_live() and client.is_model_ready(args.model)):
        raise SystemExit(f"model '{args.model}' is not ready at {args.url}")
    metadata = client.get_model_metadata(args.model)
    (spec,) = metadata["inputs"]
    shape = [args.batch if d == -1 and i == 0 else d for i, d in enumerate(spec["shape"])]
    if -1 in shape:
        raise SystemExit(f"input '{spec['name']}' has dynamic dims {spec['shape']}; this example needs fixed H and W")
    data = np.random.default_rng(0).standard_normal(shape).astype(numpy_dtype(spec["datatype"]))
    tensor = triton_http.InferInput(spec["name"], shape, spec["datatype"])
    tensor.set_data_from_numpy(data)
    output = metadata["outputs"][0]["name"]
    result = client.infer(args.model, [tensor], outputs=[triton_http.InferRequestedOutput(output)])
    values = result.as_numpy(output)
    print(f"{args.model}: {spec['name']} {shape} -> {output} {list(values.shape)}")
    for row, scores in enumerate(values.reshape(len(values), -1)):
        print(f"  row {row}: top class {int(scores.argmax())} (score {float(scores.max()):.3f})")
    client.close()


if __name__ == "__main__":
    main()
