"""The Neighbor2Neighbor UNet: shapes for 1/3 channels and odd sizes, the reference layout, and that it learns."""

from __future__ import annotations

import pytest
import torch

from sslkit.nn.unet import UNet, UNetConfig


@pytest.mark.parametrize("channels,size", [(1, (32, 32)), (3, (37, 50)), (3, (5, 7)), (1, (64, 16))])
def test_output_shape_matches_input_for_any_size(channels, size):
    net = UNet(UNetConfig(channels=channels, width=8, depth=3))
    x = torch.rand(2, channels, *size)
    assert net(x).shape == x.shape


def test_reference_layer_count_and_width():
    # depth 5, width 48: 7 encoder convs, 4 decoder stages of 2 convs, 5 transposed convs, 2 + 3 head convs.
    net = UNet(UNetConfig(channels=3, width=48, depth=5))
    convs = [m for m in net.modules() if isinstance(m, torch.nn.Conv2d)]
    ups = [m for m in net.modules() if isinstance(m, torch.nn.ConvTranspose2d)]
    assert len(convs) == 7 + 8 + 5 and len(ups) == 5
    assert net.stem[0].out_channels == 48 and net.head[0].out_channels == 96
    assert net.head[0].in_channels == 96 + 3  # the input image is concatenated before the head


def test_odd_size_batch_equals_single_images():
    # Padding is per image (no batch statistics anywhere): a batch gives each image's own result.
    net = UNet(UNetConfig(channels=1, width=8, depth=2)).eval()
    x = torch.rand(3, 1, 13, 11)
    batched = net(x)
    single = torch.cat([net(x[i:i + 1]) for i in range(3)])
    assert torch.allclose(batched, single, atol=1e-6)


def test_wrong_channels_is_a_clear_error():
    with pytest.raises(ValueError, match=r"\(B, 3, H, W\)"):
        UNet(UNetConfig(channels=3, width=4, depth=2))(torch.rand(1, 1, 8, 8))
    with pytest.raises(ValueError, match="channels"):
        UNetConfig(channels=2)


def test_every_parameter_gets_a_gradient():
    torch.manual_seed(0)
    net = UNet(UNetConfig(channels=3, width=8, depth=3))
    net(torch.rand(2, 3, 24, 24)).square().mean().backward()
    for name, param in net.named_parameters():
        assert param.grad is not None and param.grad.abs().sum() > 0, name
