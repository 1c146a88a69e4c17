"""Feed dicts (input name -> numpy array) for accuracy comparisons.

Three sources, all returning a list with one ``OrderedDict`` per iteration:

* seeded random data from Polygraphy's ``DataLoader`` (uniform in ``RANDOM_RANGE``, about the
  range of ImageNet-normalised pixels);
* a folder of images, resized, centre-cropped and normalised like ImageNet evaluation;
* a Polygraphy input JSON (what ``polygraphy run --save-inputs`` or ``--save-inputs`` here writes).

Shapes come from the ONNX model's inputs, with dynamic dimensions resolved by
:func:`resolve_input_metadata`.
"""

from __future__ import annotations

from collections import OrderedDict
from pathlib import Path

import numpy as np
import onnx
from polygraphy import util
from polygraphy.backend.onnx import util as onnx_util
from polygraphy.common import TensorMetadata
from polygraphy.comparator import DataLoader
from polygraphy.datatype import DataType
from polygraphy.json import load_json, save_json

RANDOM_RANGE = (-2.0, 2.0)
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
IMAGENET_CROP_FRACTION = 0.875  # resize to 256 for a 224 crop
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff", ".ppm")


def _is_static(dim) -> bool:
    return isinstance(dim, int) and dim >= 0


def resolve_input_metadata(
    model: onnx.ModelProto,
    batch_size: int | None = None,
    input_shape: tuple[int, ...] | None = None,
) -> TensorMetadata:
    """The model's inputs with every dimension concrete.

    ``input_shape`` replaces the shape of the (single) input; otherwise a dynamic first dimension
    becomes ``batch_size`` (default 1) and any other dynamic dimension is an error that says how
    to fix it. Static dimensions must agree with ``input_shape``/``batch_size``.
    """
    declared = onnx_util.get_input_metadata(model.graph)
    if input_shape is not None and len(declared) != 1:
        raise ValueError(
            f"input_shape applies to single-input models; this one has {len(declared)} inputs "
            f"({', '.join(declared)}): give the inputs as a Polygraphy input JSON instead"
        )
    resolved = TensorMetadata()
    for name, (dtype, shape) in declared.items():
        shape = list(shape)
        if input_shape is not None:
            if len(input_shape) != len(shape):
                raise ValueError(
                    f"input_shape {','.join(map(str, input_shape))} has rank {len(input_shape)}, "
                    f"but input {name!r} has shape {shape}"
                )
            wanted = list(input_shape)
        else:
            wanted = [batch_size or 1 if i == 0 and not _is_static(d) else d for i, d in enumerate(shape)]
            dynamic = [i for i, d in enumerate(wanted) if not _is_static(d)]
            if dynamic:
                raise ValueError(
                    f"input {name!r} has dynamic dimensions {dynamic} (shape {shape}); pass "
                    "input_shape with concrete sizes, e.g. input_shape=(1, 3, 224, 224)"
                )
        for i, (have, want) in enumerate(zip(shape, wanted, strict=True)):
            if _is_static(have) and have != want:
                raise ValueError(
                    f"input {name!r} has static size {have} in dimension {i}, not {want}; "
                    "drop input_shape/batch_size or export with dynamic shapes"
                )
        resolved.add(name, dtype, wanted)
    return resolved


def random_feeds(metadata: TensorMetadata, iterations: int = 1, seed: int = 0) -> list[OrderedDict]:
    """``iterations`` feed dicts of seeded uniform random data (iteration ``i`` uses seed ``seed + i``)."""
    if iterations < 1:
        raise ValueError(f"iterations must be >= 1, got {iterations}")
    loader = DataLoader(seed=seed, iterations=iterations, input_metadata=metadata, val_range=RANDOM_RANGE)
    loader.input_metadata = metadata
    return [OrderedDict(feed) for feed in loader]


def _load_image(path: Path, height: int, width: int) -> np.ndarray:
    """One RGB image as float32 ``[3, height, width]``, ImageNet-normalised."""
    from PIL import Image, UnidentifiedImageError
    from torchvision.transforms import functional as F

    try:
        with Image.open(path) as img:
            rgb = img.convert("RGB")
    except (UnidentifiedImageError, OSError) as err:
        raise ValueError(f"cannot read image {path}: {err}") from err
    short = round(min(height, width) / IMAGENET_CROP_FRACTION)
    rgb = F.center_crop(F.resize(rgb, short), [height, width])
    tensor = F.normalize(F.to_tensor(rgb), IMAGENET_MEAN, IMAGENET_STD)
    return tensor.numpy()


def image_feeds(
    folder: str | Path, metadata: TensorMetadata, iterations: int | None = None
) -> list[OrderedDict]:
    """Feed dicts built from the images in ``folder`` (sorted by name), one batch per iteration.

    The model must have one ``[N, 3, H, W]`` input; images are resized so the short side is
    ``H / 0.875``, centre-cropped to ``H x W`` and normalised with the ImageNet mean/std. Images
    that do not fill a last batch are left out. ``iterations`` caps the number of batches.
    """
    folder = Path(folder)
    if len(metadata) != 1:
        raise ValueError(f"image inputs need a single-input model; this one has inputs {list(metadata)}")
    name, (dtype, shape) = next(iter(metadata.items()))
    if len(shape) != 4 or shape[1] != 3:
        raise ValueError(f"image inputs need an input of shape [N, 3, H, W]; {name!r} has shape {shape}")
    batch, _, height, width = shape
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if len(files) < batch:
        raise ValueError(
            f"{folder} has {len(files)} image(s) ({', '.join(IMAGE_SUFFIXES)}) but one batch needs {batch}"
        )
    batches = len(files) // batch
    if iterations is not None:
        batches = min(batches, iterations)
    np_dtype = DataType.to_dtype(dtype, "numpy")
    feeds = []
    for b in range(batches):
        images = [_load_image(p, height, width) for p in files[b * batch:(b + 1) * batch]]
        feeds.append(OrderedDict([(name, np.stack(images).astype(np_dtype))]))
    return feeds


def json_feeds(
    path: str | Path, metadata: TensorMetadata, iterations: int | None = None
) -> list[OrderedDict]:
    """Feed dicts from a Polygraphy input JSON (one feed dict, or a list of them)."""
    loaded = load_json(str(path), description="input data")
    feeds = loaded if isinstance(loaded, list) else [loaded]
    if not feeds:
        raise ValueError(f"{path} holds no inputs")
    for index, feed in enumerate(feeds):
        if not hasattr(feed, "keys"):
            raise ValueError(f"{path}: iteration {index} is a {type(feed).__name__}, not a dict of arrays")
        missing = [n for n in metadata if n not in feed]
        if missing:
            raise ValueError(
                f"{path}: iteration {index} lacks input(s) {', '.join(missing)} "
                f"(it has {', '.join(feed.keys()) or 'none'})"
            )
    feeds = feeds[:iterations] if iterations is not None else feeds
    loaded = [OrderedDict((n, np.asarray(feed[n])) for n in metadata) for feed in feeds]
    for feed in loaded:
        for name, (_, shape) in metadata.items():
            _check_saved_shape(path, name, feed[name].shape, list(shape))
    return loaded


def _check_saved_shape(path, name: str, saved: tuple[int, ...], fed: list) -> None:
    """Refuse a saved input whose shape is not the one this run feeds (``fed``: concrete dims, or
    names for dims the run leaves free), saying which option sets it (API names; the CLI shows
    its flags)."""
    if util.is_valid_shape_override(saved, fed):
        return
    start = f"{path}: input {name!r} has shape {tuple(saved)} but this run feeds it as {fed}: "
    if len(saved) == len(fed) and util.is_valid_shape_override(saved[1:], fed[1:]):
        raise ValueError(start + f"the inputs were saved at batch {saved[0]}; pass batch_size={saved[0]} "
                         "for a file with a dynamic batch")
    raise ValueError(start + "the file's other dimensions are fixed; a file with dynamic H/W runs at input_shape "
                     "and at each of sizes, and saved inputs hold one size: name only "
                     "that size (compare saves the other sizes' inputs beside them, FILE-HxW.json)")


def load_feeds(
    source: str,
    metadata: TensorMetadata,
    iterations: int | None = None,
    seed: int = 0,
) -> list[OrderedDict]:
    """Feed dicts from ``source``: ``"random"``, a folder of images or a ``.json`` file."""
    if source == "random":
        return random_feeds(metadata, iterations or 1, seed)
    path = Path(source)
    if path.is_dir():
        return image_feeds(path, metadata, iterations)
    if path.is_file():
        return json_feeds(path, metadata, iterations)
    raise ValueError(f"inputs={source!r} is not 'random', a folder of images or an existing JSON file")


def save_feeds(feeds: list[OrderedDict], path: str | Path) -> None:
    """Write feed dicts as a Polygraphy input JSON (readable by ``--inputs`` and ``polygraphy run``)."""
    save_json(feeds, str(path), description="input data")
