"""Checkpoint files: safetensors, and one line for a file that is not a PyTorch checkpoint."""

import os

import pytest
import torch
from torch import nn

from exporter import RFConv2d
from exporter.model.checkpoint import CheckpointError, load_checkpoint, read_state_dict


def _tiny():
    return nn.Sequential(RFConv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4))


def _single_line(err: pytest.ExceptionInfo) -> str:
    text = str(err.value)
    assert "\n" not in text
    assert "weights_only set to False" not in text and "will likely succeed" not in text
    return text


def test_safetensors_checkpoint_loads(tmp_path):
    from safetensors.torch import save_file

    torch.manual_seed(0)
    state = _tiny().state_dict()
    save_file({f"module.{k}": v.contiguous() for k, v in state.items()}, tmp_path / "w.safetensors")
    loaded = load_checkpoint(_tiny(), tmp_path / "w.safetensors").state_dict()
    assert all(torch.equal(loaded[k], v) for k, v in state.items())
    # found by its header too, whatever the suffix
    (tmp_path / "w.safetensors").rename(tmp_path / "w.bin")
    assert read_state_dict(tmp_path / "w.bin").keys() == state.keys()


def test_truncated_safetensors(tmp_path):
    from safetensors.torch import save_file

    save_file(_tiny().state_dict(), tmp_path / "w.safetensors")
    data = (tmp_path / "w.safetensors").read_bytes()
    (tmp_path / "w.safetensors").write_bytes(data[:-16])
    with pytest.raises(CheckpointError) as err:
        read_state_dict(tmp_path / "w.safetensors")
    assert "w.safetensors is truncated or not a valid safetensors file" in _single_line(err)


def test_text_file_is_named_as_text(tmp_path):
    path = tmp_path / "notes.pt"
    path.write_text("epoch 3\nlr 0.1\n")
    with pytest.raises(CheckpointError) as err:
        read_state_dict(path)
    assert f"{path} is a text file, not a checkpoint" in _single_line(err)


def test_onnx_file_given_by_mistake(tmp_path):
    import onnx
    from onnx import TensorProto, helper

    graph = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])])
    model = helper.make_model(graph)
    for name in ("x.onnx", "x.pt"):  # by its suffix, and by its content under a checkpoint's suffix
        onnx.save(model, tmp_path / name)
        with pytest.raises(CheckpointError) as err:
            read_state_dict(tmp_path / name)
        assert f"{tmp_path / name} is an ONNX model, not a checkpoint: pass the PyTorch weights" in _single_line(err)


@pytest.mark.parametrize("legacy", [False, True], ids=["zip", "legacy-pickle"])
def test_truncated_checkpoint_is_called_corrupt(tmp_path, legacy):
    path = tmp_path / "w.pt"
    torch.save(_tiny().state_dict(), path, _use_new_zipfile_serialization=not legacy)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError) as err:
        read_state_dict(path)
    text = _single_line(err)
    assert f"{path} is truncated or corrupt" in text and "arbitrary objects" not in text


def test_random_bytes_and_empty_file(tmp_path):
    path = tmp_path / "noise.pt"
    path.write_bytes(b"\xff\x00" + os.urandom(4000))
    with pytest.raises(CheckpointError) as err:
        read_state_dict(path)
    text = _single_line(err)
    assert f"{path} is not a PyTorch checkpoint" in text and "arbitrary objects" not in text
    (tmp_path / "empty.pt").write_bytes(b"")
    with pytest.raises(CheckpointError, match="empty.pt is empty"):
        read_state_dict(tmp_path / "empty.pt")


def test_torchscript_archive_is_named(tmp_path):
    torch.jit.script(nn.Conv2d(3, 4, 3)).save(str(tmp_path / "scripted.pt"))
    with pytest.raises(CheckpointError) as err:
        read_state_dict(tmp_path / "scripted.pt")
    assert "scripted.pt is a TorchScript archive (torch.jit.save), not a state dict" in _single_line(err)


def test_pickled_objects_are_still_refused(tmp_path):
    torch.save({"model": nn.Linear(2, 2)}, tmp_path / "pickled.pth")
    with pytest.raises(CheckpointError) as err:
        read_state_dict(tmp_path / "pickled.pth")
    text = _single_line(err)
    assert "pickled.pth pickles objects other than tensors" in text and "weights_only=True" in text
    assert "torch.nn.modules.linear.Linear" in text
