"""What ``rfconv-deploy triton`` can be asked for: :class:`TritonConfig` (light: standard library only).

The command line builds ``triton``'s options from these fields (:func:`exporter.cli.args.add_config_arguments`),
so each default and help text is written here once.
"""

from __future__ import annotations

from dataclasses import dataclass

from exporter.config import option

ACCELERATORS = ("tensorrt", "cuda", "cpu", "openvino")
CPU_ACCELERATORS = ("cpu", "openvino")
"""Accelerators of CPU instances (``KIND_CPU``): ONNX Runtime's CPU EP, or its OpenVINO EP."""
KSERVE_GROUP = "KServe (scale-out on Kubernetes with the Triton runtime)"


@dataclass(frozen=True)
class TritonConfig:
    """Options of one Triton repository write (``model`` into ``repo``), or of one check (``check``).

    Writing: model ``name`` (default: the file's stem); ``max_batch`` rows gathered for at most
    ``max_delay_us`` microseconds (a plan: at most its profile's largest batch); ``accelerator``
    ``tensorrt`` / ``cuda`` (GPU instances), ``cpu`` or ``openvino`` (CPU instances, ONNX only); a plan's
    ``plugin_lib`` and the ``onnx_path`` it was built from; ``min_shapes``/``opt_shapes``/``max_shapes``
    the TensorRT EP's profile (strings as for :func:`exporter.shapes.parse_shapes`).

    KServe (``kserve`` a ``.yaml`` path, with ``storage_uri``): ``kserve_name``, ``gpus`` per
    replica (default 1, or 0 for the CPU accelerators), ``min_replicas``..``max_replicas``,
    ``protocol``, ``runtime_version`` and ``startup_timeout_s`` (longest a replica may take to load
    its model before the startup probe gives up).

    Raises ``ValueError`` naming the field for a value out of range or options that do not go together.
    """

    model: str | None = None
    repo: str | None = option(None, metavar="DIR", help="model repository directory to write into")
    check: str | None = option(None, metavar="REPO", help="check the repository REPO the way Triton would load it, "
                                                         "without Triton, and write nothing")
    name: str | None = option(None, help="model name (default: the file's stem)")
    max_batch: int = option(8, help="max_batch_size for models with a dynamic batch dimension (0 = no batching; a "
                                    "plan: at most its profile's largest batch)")
    max_delay_us: int = option(2000, help="dynamic batching queue delay, microseconds")
    accelerator: str = option("tensorrt", choices=ACCELERATORS,
                              help="ONNX models: ONNX Runtime's TensorRT EP first, or only its CUDA EP (GPU "
                                   "instances), or cpu (CPU instances, no GPU), or openvino (CPU instances, ONNX "
                                   "Runtime's OpenVINO EP: Triton's OpenVINO CPU execution accelerator)")
    plugin_lib: str | None = option(None, metavar="PATH", help="plans: the TensorRT plugin library the engine needs")
    onnx_path: str | None = option(None, flag="--onnx", metavar="PATH",
                                   help="plans: the ONNX the plan was built from (default: MODEL.onnx beside it)")
    min_shapes: str | None = None
    opt_shapes: str | None = None
    max_shapes: str | None = None
    kserve: str | None = option(None, metavar="FILE.yaml", group=KSERVE_GROUP,
                                help="also write a KServe InferenceService (serving.kserve.io/v1beta1) for the "
                                     "repository")
    storage_uri: str | None = option(None, metavar="URI", group=KSERVE_GROUP,
                                     help="where the repository folder will be uploaded (gs://, s3://, pvc://...); "
                                          "needed by --kserve")
    kserve_name: str | None = option(None, group=KSERVE_GROUP,
                                     help="InferenceService name (default: the model name, lower case, '-' for '_')")
    gpus: int | None = option(None, parse=int, group=KSERVE_GROUP,
                              help="nvidia.com/gpu per replica (default: 1; with --accelerator cpu or openvino 0, "
                                   "the only value allowed)")
    min_replicas: int = option(1, group=KSERVE_GROUP, help="fewest replicas")
    max_replicas: int | None = option(None, parse=int, group=KSERVE_GROUP,
                                      help="most replicas, KServe scales between (default: --min-replicas)")
    protocol: str = option("v2", flag="--kserve-protocol", choices=("v2", "grpc-v2"), group=KSERVE_GROUP,
                           help="protocol the InferenceService exposes: v2 (HTTP) or grpc-v2")
    runtime_version: str | None = option(None, group=KSERVE_GROUP,
                                         help="Triton image tag of the runtime (e.g. 24.08-py3); for a plan, one "
                                              "with its TensorRT")
    startup_timeout_s: int = option(600, group=KSERVE_GROUP,
                                    help="seconds a replica may take to load its model (a TensorRT engine build, "
                                         "warm-up) before the startup probe restarts it")

    def __post_init__(self):
        if self.check is not None:
            given = [f for f in ("model", "repo", "kserve") if getattr(self, f) is not None]
            if given:
                raise ValueError(f"check reads a repository and writes nothing: drop {', '.join(given)}")
            return
        if self.model is None or self.repo is None:
            raise ValueError("give a model file and repo=DIR (the repository to write), or check=REPO")
        if self.max_batch < 0:
            raise ValueError(f"max_batch must be >= 0 (0 turns batching off), got {self.max_batch}")
        if self.max_delay_us < 0:
            raise ValueError(f"max_delay_us must be >= 0, got {self.max_delay_us}")
        if self.accelerator not in ACCELERATORS:
            raise ValueError(f"accelerator {self.accelerator!r} is not one of {', '.join(ACCELERATORS)}")
        if self.kserve is not None and not self.storage_uri:
            raise ValueError("the KServe manifest (kserve=FILE.yaml) needs storage_uri: where the repository will "
                             "be uploaded (gs://bucket/models)")
        if self.storage_uri and self.kserve is None:
            raise ValueError("storage_uri is for the KServe manifest: add kserve=FILE.yaml")
        if self.accelerator in CPU_ACCELERATORS and self.gpus not in (None, 0):
            raise ValueError(f"accelerator={self.accelerator!r} writes a CPU repository: its replicas need no GPU, "
                             f"got gpus={self.gpus}")
        if self.accelerator not in CPU_ACCELERATORS and self.gpus is not None and self.gpus < 1:
            raise ValueError(f"gpus must be at least 1 (the Triton config asks for GPU instances; accelerator='cpu' or "
                             f"'openvino' for none), got {self.gpus}")
        if self.startup_timeout_s < 1:
            raise ValueError(f"startup_timeout_s must be at least 1, got {self.startup_timeout_s}")

    @property
    def gpus_per_replica(self) -> int:
        """``gpus``, or its default: 0 on CPU, else 1."""
        if self.gpus is not None:
            return self.gpus
        return 0 if self.accelerator in CPU_ACCELERATORS else 1

    def writer_options(self) -> dict:
        """Keyword arguments of :func:`~.triton_repo.write_repository` (after ``model`` and ``repo``)."""
        return dict(name=self.name, max_batch=self.max_batch, max_delay_us=self.max_delay_us,
                    accelerator=self.accelerator, plugin_lib=self.plugin_lib, onnx_path=self.onnx_path,
                    min_shapes=self.min_shapes, opt_shapes=self.opt_shapes, max_shapes=self.max_shapes)

    def kserve_options(self) -> dict:
        """Keyword arguments of :func:`~.kserve.inference_service` / :func:`~.kserve.for_repository`."""
        return dict(name=self.kserve_name, gpus=self.gpus_per_replica, min_replicas=self.min_replicas,
                    max_replicas=self.max_replicas, protocol=self.protocol, runtime_version=self.runtime_version,
                    startup_timeout_s=self.startup_timeout_s)
