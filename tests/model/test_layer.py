"""RFConv2d and rectify_scale against the brute-force reference, plus dtype/gradient checks."""

import contextlib

import pytest
import torch
import torch.nn.functional as F
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from exporter import RFConv2d, rectify_scale
from exporter.model.scale import cached_scale
from tests.helpers.reference import InvalidGeometry, rectified_conv


@st.composite
def geometries(draw):
    groups = draw(st.sampled_from([1, 2, 3]))
    kernel = (draw(st.integers(1, 7)), draw(st.integers(1, 7)))
    padding = (draw(st.integers(0, 3)), draw(st.integers(0, 3)))
    dilation = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    # input sizes around the smallest that gives a non-empty output, odd and even alike
    in_hw = tuple(
        max(1, (k - 1) * d + 1 - 2 * p + draw(st.integers(-1, 9)))
        for k, d, p in zip(kernel, dilation, padding, strict=True)
    )
    return dict(
        in_channels=groups * draw(st.integers(1, 2)),
        out_channels=groups * draw(st.integers(1, 2)),
        kernel_size=kernel,
        stride=(draw(st.integers(1, 3)), draw(st.integers(1, 3))),
        padding=padding,
        dilation=dilation,
        groups=groups,
        bias=draw(st.booleans()),
        average_mode=draw(st.booleans()),
        count_mode=draw(st.sampled_from(["exact", "rfconv"])),
        padding_mode=draw(st.sampled_from(["zeros", "zeros", "reflect", "replicate", "circular"])),
    ), in_hw


@settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(geometries(), st.integers(0, 2**31 - 1))
def test_layer_matches_brute_force(case, seed):
    kwargs, (h, w) = case
    torch.manual_seed(seed)
    layer = RFConv2d(**kwargs).double()
    x = torch.randn(2, kwargs["in_channels"], h, w, dtype=torch.float64)
    try:
        expected = rectified_conv(
            x, layer.weight, layer.bias, layer.stride, layer.padding, layer.dilation,
            layer.groups, kwargs["average_mode"], kwargs["count_mode"], kwargs["padding_mode"],
        )
    except InvalidGeometry:
        with pytest.raises((ValueError, RuntimeError)):
            layer(x)
        return
    except (RuntimeError, NotImplementedError):  # torch's F.pad refuses reflect padding >= size
        return
    torch.testing.assert_close(layer(x), expected, rtol=1e-10, atol=1e-10)


def test_plain_when_no_padding_and_sum_mode():
    layer = RFConv2d(3, 4, 3, padding=0)
    x = torch.randn(1, 3, 9, 9)
    assert not layer.rectify
    torch.testing.assert_close(layer(x), F.conv2d(x, layer.weight, layer.bias))


def test_average_mode_rectifies_without_padding():
    layer = RFConv2d(3, 4, 3, padding=0, average_mode=True, bias=False)
    x = torch.randn(1, 3, 9, 9)
    torch.testing.assert_close(layer(x), F.conv2d(x, layer.weight) / 9)


def test_scale_known_values():
    # 3x3, pad 1, 5x5: corners see 4 taps, edges 6, interior 9
    s = rectify_scale((5, 5), 3, 1, 1)
    assert s[0, 0] == 9 / 4 and s[0, 2] == 9 / 6 and s[2, 2] == 1.0
    # official counting of a dilated 3x3 agrees with exact counting on ordinary sizes
    torch.testing.assert_close(
        rectify_scale((17, 15), 3, 1, 2, 2, count_mode="rfconv"), rectify_scale((17, 15), 3, 1, 2, 2)
    )
    # ... and differs for other kernel sizes with dilation
    official = rectify_scale((9, 9), 5, 1, 4, 2, count_mode="rfconv")
    assert not torch.equal(official, rectify_scale((9, 9), 5, 1, 4, 2))


@pytest.mark.parametrize(
    "kwargs, in_hw, match",
    [
        (dict(kernel_size=3, padding=3), (8, 8), "padding=3 along height is too large"),
        (dict(kernel_size=(1, 3), padding=(0, 3)), (8, 8), "padding=3 along width"),
        (dict(kernel_size=7, padding=0), (5, 9), "input height=5 is too small for kernel_size=7"),
        (dict(kernel_size=3, padding=1, count_mode="bogus"), (8, 8), "count_mode='bogus'"),
        (dict(kernel_size=3, padding=-1), (8, 8), "padding=-1 along height must be >= 0"),
    ],
)
def test_bad_geometry_names_the_setting(kwargs, in_hw, match):
    with pytest.raises(ValueError, match=match):
        rectify_scale(in_hw, **kwargs)


def test_layer_rejects_bad_settings():
    with pytest.raises(ValueError, match="count_mode='nope'"):
        RFConv2d(3, 3, 3, padding=1, count_mode="nope")
    with pytest.raises(ValueError, match="padding='same' is not supported"):
        RFConv2d(3, 3, 3, padding="same")
    with pytest.raises(ValueError, match="padding=4 along height is too large"):
        RFConv2d(3, 3, 3, padding=4)(torch.randn(1, 3, 10, 10))


def test_gradcheck_float64():
    torch.manual_seed(0)
    layer = RFConv2d(2, 3, (3, 2), stride=(2, 1), padding=(1, 2), dilation=(1, 2)).double()
    x = torch.randn(2, 2, 7, 6, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda inp, w, b: F.conv2d(inp, w, b, layer.stride, layer.padding,
                                                               layer.dilation) * layer.scale_for(inp),
                                    (x, layer.weight, layer.bias))
    assert torch.autograd.gradcheck(layer, (x,))
    assert torch.autograd.gradgradcheck(layer, (x,))


@pytest.mark.parametrize("dtype, rtol", [(torch.float16, 1e-2), (torch.bfloat16, 4e-2)])
def test_half_precisions_track_float32(dtype, rtol):
    torch.manual_seed(0)
    layer = RFConv2d(8, 16, 3, stride=2, padding=1, average_mode=False)
    x = torch.randn(2, 8, 13, 11)
    ref = layer(x)
    out = layer.to(dtype)(x.to(dtype))
    assert out.dtype == dtype
    err = (out.float() - ref).abs().max() / ref.abs().max()
    assert err < rtol


def test_channels_last_and_batch_sizes():
    torch.manual_seed(0)
    layer = RFConv2d(4, 6, 3, padding=1)
    for n in (1, 3, 8):
        x = torch.randn(n, 4, 10, 7)
        y = layer(x)
        y_cl = layer.to(memory_format=torch.channels_last)(x.to(memory_format=torch.channels_last))
        torch.testing.assert_close(y_cl, y, rtol=1e-5, atol=1e-6)
        assert y.shape == (n, 6, 10, 7)


def test_factor_computed_once_per_size_dtype_device():
    layer = RFConv2d(2, 2, 5, padding=2)
    x = torch.randn(1, 2, 31, 29)
    layer(x)
    before = cached_scale.cache_info()
    layer(x)
    layer(torch.randn(4, 2, 31, 29))
    after = cached_scale.cache_info()
    assert after.misses == before.misses and after.hits == before.hits + 2
    layer.double()(x.double())
    assert cached_scale.cache_info().misses == before.misses + 1


def test_rectify_scale_returns_fresh_tensor():
    a = rectify_scale((6, 6), 3, 1, 1)
    a.mul_(0)
    assert rectify_scale((6, 6), 3, 1, 1)[0, 0] == 2.25


@contextlib.contextmanager
def full_fp32_on_cuda():
    """cuDNN convolutions and CUDA matrix products in full fp32, restored afterwards.

    torch enables TF32 for cuDNN convolutions by default (``torch.backends.cudnn.allow_tf32``), which
    rounds their inputs to 10-bit mantissas on Ampere and later GPUs (relative error about 1e-3): a
    CUDA result compared with the CPU at fp32 tolerance must be computed without it.
    """
    saved = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = False
    torch.backends.cuda.matmul.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = saved


def _compare_cuda_with_cpu():
    torch.manual_seed(0)
    layer = RFConv2d(4, 6, 3, padding=1)
    x = torch.randn(2, 4, 12, 9)
    want = layer(x)
    with full_fp32_on_cuda():
        got = layer.cuda()(x.cuda()).cpu()
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-5)


@pytest.mark.requires_cuda
def test_cuda_matches_cpu():
    _compare_cuda_with_cpu()


def test_cuda_is_compared_with_cpu_without_tf32(monkeypatch):
    """The CUDA-vs-CPU check moves to the GPU with TF32 off (torch's default for cuDNN is on), and leaves the
    flags as it found them. Runs on CPU: the moves to CUDA are recorded, not made."""
    seen = []

    def record(self, *args, **kwargs):
        seen.append((torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32))
        return self

    monkeypatch.setattr(torch.nn.Module, "cuda", record)
    monkeypatch.setattr(torch.Tensor, "cuda", record)
    before = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    _compare_cuda_with_cpu()
    assert seen and all(flags == (False, False) for flags in seen), seen
    assert (torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32) == before
