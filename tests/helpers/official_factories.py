"""Model factories for ``package.module:factory`` specs in tests."""

from torch import nn

from tests.helpers.official_rfconv import RFConv2d


def tiny_official():
    return nn.Sequential(RFConv2d(3, 4, 3, padding=1), nn.ReLU())
