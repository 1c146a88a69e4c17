"""A replica of the official ``rfconv.RFConv2d`` *module class* (its constructor and attributes).

The official package cannot be built on torch 2.x, so tests use this replica, defined in a
module named ``rfconv.nn`` as the real one is, to check that conversion detects it by name and
attributes and that state dicts move both ways. Its forward is the plain convolution: the
rectification arithmetic is tested against ``tests.helpers.reference`` instead.
"""

import types

from torch.nn import Conv2d
from torch.nn.modules.utils import _pair


class RFConv2d(Conv2d):
    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0, dilation=1,
                 groups=1, bias=True, padding_mode="zeros", average_mode=False):
        padding = _pair(padding)
        self.rectify = average_mode or (padding[0] > 0 or padding[1] > 0)
        self.average = average_mode
        super().__init__(in_channels, out_channels, kernel_size, stride=stride, padding=padding,
                         dilation=dilation, groups=groups, bias=bias, padding_mode=padding_mode)


RFConv2d.__module__ = "rfconv.nn"
module = types.ModuleType("rfconv.nn")
module.RFConv2d = RFConv2d
