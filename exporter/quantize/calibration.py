"""Calibration inputs for :func:`exporter.quantize.quantize.quantize_onnx`, and the data reader
ONNX Runtime's calibrator pulls them through.

Three sources, each giving ``samples`` feed dicts (input name -> float32 array, batch 1):

* ``"random"``: seeded uniform data in :data:`exporter.onnx.feeds.RANDOM_RANGE` (about the range
  of ImageNet-normalised pixels), the same generator ``compare`` uses;
* a folder of images: resized, centre-cropped and ImageNet-normalised like ``compare --inputs``
  (needs Pillow to decode them);
* an ``.npz`` file: one array per model input (the only array may have any name for a
  single-input model), samples along the first axis, each of the input's shape without its batch.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnx
from onnxruntime.quantization import CalibrationDataReader

from exporter.onnx.feeds import image_feeds, random_feeds, resolve_input_metadata


def _image_decoder_available() -> str | None:
    """None when Pillow can be imported, else why not (image calibration needs it)."""
    try:
        import PIL.Image  # noqa: F401
    except ImportError as err:
        return str(err)
    return None


def _npz_feeds(path: Path, metadata, samples: int) -> list[OrderedDict]:
    try:
        with np.load(path, allow_pickle=False) as archive:
            arrays = {name: archive[name] for name in archive.files}
    except (OSError, ValueError) as err:
        raise ValueError(f"cannot read calibration file {path} as .npz: {err}") from err
    names = list(metadata)
    if len(names) == 1 and len(arrays) == 1:
        arrays = {names[0]: next(iter(arrays.values()))}
    missing = [n for n in names if n not in arrays]
    if missing:
        raise ValueError(f"calibration file {path} lacks array(s) for input(s) {', '.join(missing)} "
                         f"(it has {', '.join(arrays) or 'none'}); name each array after its input")
    counts = set()
    for name in names:
        want = list(metadata[name].shape[1:])
        have = list(arrays[name].shape[1:])
        if have != want:
            raise ValueError(f"calibration file {path}: array {name!r} has samples of shape {have}, "
                             f"but the input takes {want} (samples go along the first axis)")
        if not np.issubdtype(arrays[name].dtype, np.number):
            raise ValueError(f"calibration file {path}: array {name!r} is {arrays[name].dtype}, not numbers")
        counts.add(len(arrays[name]))
    if len(counts) != 1:
        raise ValueError(f"calibration file {path}: the arrays hold different numbers of samples {sorted(counts)}")
    available = counts.pop()
    if available == 0:
        raise ValueError(f"calibration file {path} holds no samples")
    return [OrderedDict((n, np.ascontiguousarray(arrays[n][i:i + 1], np.float32)) for n in names)
            for i in range(min(samples, available))]


def calibration_feeds(
    model: onnx.ModelProto,
    source: str = "random",
    samples: int = 16,
    seed: int = 0,
    input_shape: tuple[int, ...] | None = None,
) -> list[OrderedDict]:
    """``samples`` feed dicts of batch 1 from ``source`` (see the module docstring).

    ``input_shape`` fixes the dimensions the file leaves dynamic (its batch is always 1 here).
    Fewer images or ``.npz`` samples than ``samples`` give that many.
    """
    if samples < 1:
        raise ValueError(f"samples must be >= 1, got {samples}")
    shape = None if input_shape is None else (1, *tuple(input_shape)[1:])
    metadata = resolve_input_metadata(model, 1, shape)
    if source == "random":
        return random_feeds(metadata, samples, seed)
    path = Path(source)
    if path.is_dir():
        why = _image_decoder_available()
        if why is not None:
            raise ValueError(f"calibration from a folder of images needs Pillow to decode them ({why}); "
                             "install it (pip install pillow) or pass calibration data as an .npz file")
        return image_feeds(path, metadata, samples)
    if path.is_file() and path.suffix == ".npz":
        return _npz_feeds(path, metadata, samples)
    raise ValueError(f"calibration={source!r} is not 'random', a folder of images or an existing .npz file")


class FeedReader(CalibrationDataReader):
    """ONNX Runtime's calibration data reader over prepared feeds; ``progress(done, total)`` is
    called as the calibrator takes each sample (it runs the model on it right after).

    ``set_range`` limits it to ``feeds[start:end]``: ONNX Runtime's ``CalibStridedMinMax`` option
    calls it for each stride and collects each stride on its own (any calibration method), so only
    one stride's activations are held in memory at a time.
    """

    def __init__(self, feeds: list[OrderedDict], progress: Callable[[int, int], None] | None = None):
        self._feeds = feeds
        self._next, self._end = 0, len(feeds)
        self._progress = progress

    def __len__(self) -> int:
        return len(self._feeds)

    def set_range(self, start_index: int, end_index: int) -> None:
        self._next, self._end = start_index, min(end_index, len(self._feeds))

    def get_next(self) -> dict | None:
        if self._next >= self._end:
            return None
        feed = self._feeds[self._next]
        self._next += 1
        if self._progress is not None:
            self._progress(self._next, len(self._feeds))
        return dict(feed)
