"""The Assemble-ResNet layers against the official definitions, written out plainly here."""

import pytest
import torch
import torch.nn.functional as F
from timm.layers import BlurPool2d

from timm_assemble.layers import BigLittleStem, DropBlock2d, SKConv2d, set_drop_block_keep_prob
from timm_assemble.layers.big_little import upsample_add


def _paper_sk(sk: SKConv2d, x: torch.Tensor) -> torch.Tensor:
    """The official sk_conv2d: split, U = U1 + U2, attention, softmax over the pair, weighted sum."""
    feats = F.relu(sk.bn(sk.conv(x)))
    u1, u2 = torch.split(feats, sk.out_chs, dim=1)
    s = (u1 + u2).mean((2, 3), keepdim=True)
    z = F.conv2d(s, sk.fc1.weight[:, :, None, None])  # sk_fc_1: a 1x1 conv without bias
    bn = sk.bn_fc1
    z = F.relu(F.batch_norm(z, bn.running_mean, bn.running_var, bn.weight, bn.bias, eps=bn.eps))
    a1, a2 = torch.split(F.conv2d(z, sk.fc2.weight[:, :, None, None]), sk.out_chs, dim=1)
    attention = torch.softmax(torch.stack([a1, a2]), dim=0)
    return attention[0] * u1 + attention[1] * u2


@pytest.mark.parametrize("stride", [1, 2])
def test_sk_conv_equals_paper_formula(stride):
    torch.manual_seed(0)
    sk = SKConv2d(8, 16, stride=stride).eval()
    for module in (sk.bn, sk.bn_fc1):
        module.running_mean.normal_()
        module.running_var.uniform_(0.5, 1.5)
    x = torch.randn(3, 8, 12, 12)
    with torch.no_grad():
        torch.testing.assert_close(sk(x), _paper_sk(sk, x), rtol=1e-5, atol=1e-6)
    assert sk.fc1.out_features == 32, "attention width is max(planes // 2, 32)"
    assert SKConv2d(8, 128).fc1.out_features == 64


def test_blur_pool_is_official_sconv():
    x = torch.randn(2, 4, 9, 10)
    kernel = torch.tensor([1.0, 2.0, 1.0])
    kernel = (kernel[:, None] * kernel[None, :] / 16).expand(4, 1, 3, 3)
    expected = F.conv2d(F.pad(x, (1, 1, 1, 1), mode="reflect"), kernel, stride=2, groups=4)
    torch.testing.assert_close(BlurPool2d(4, filt_size=3, stride=2)(x), expected)


@pytest.mark.parametrize("little_size,big_size", [((14, 14), (7, 7)), ((15, 9), (8, 5)), ((7, 8), (4, 4))])
def test_upsample_add_is_nearest_upsampling(little_size, big_size):
    little = torch.randn(2, 6, *little_size)
    big = torch.randn(2, 6, *big_size)
    expected = little + F.interpolate(big, size=little_size, mode="nearest")
    torch.testing.assert_close(upsample_add(little, big), expected)
    cl = torch.channels_last
    out = upsample_add(little.to(memory_format=cl), big.to(memory_format=cl))
    torch.testing.assert_close(out, expected)


@pytest.mark.parametrize("memory_format", [torch.contiguous_format, torch.channels_last])
def test_upsample_add_gradients_equal_autograd_of_the_upsample(memory_format):
    """The 2x path's own backward (a 2x2 sum-pool) gives autograd's gradients of `little + upsample(big)`,
    and its output is a fresh tensor, so an in-place ReLU after it needs no view bookkeeping."""
    torch.manual_seed(0)
    little = torch.randn(2, 6, 8, 10).to(memory_format=memory_format).requires_grad_()
    big = torch.randn(2, 6, 4, 5).to(memory_format=memory_format).requires_grad_()
    out = torch.relu_(upsample_add(little, big))
    assert out._base is None and out.is_contiguous(memory_format=memory_format)
    little_ref, big_ref = little.detach().clone().requires_grad_(), big.detach().clone().requires_grad_()
    expected = torch.relu(little_ref + F.interpolate(big_ref, size=(8, 10), mode="nearest"))
    grad = torch.randn_like(expected)
    out.backward(grad)
    expected.backward(grad)
    assert torch.equal(out, expected)
    assert torch.equal(little.grad, little_ref.grad)
    torch.testing.assert_close(big.grad, big_ref.grad, rtol=1e-6, atol=1e-6)


def test_big_little_stem_shapes():
    stem = BigLittleStem(16, alpha=2)
    assert stem.little1.conv.out_channels == 8 and stem.little3.conv.out_channels == 16
    assert stem(torch.randn(1, 16, 56, 56)).shape == (1, 16, 28, 28)


def test_drop_block_is_identity_in_eval_and_at_keep_prob_one():
    block = DropBlock2d(drop_prob=0.5, block_size=3)
    x = torch.randn(2, 3, 8, 8)
    assert block.eval()(x) is x
    block.train()
    set_drop_block_keep_prob(block, 1.0)
    assert block(x) is x


def test_drop_block_official_mask():
    """One mask [1, C, H, W] shared by the batch, whole blocks only, rescaled to keep the mean."""
    torch.manual_seed(0)
    block = DropBlock2d(drop_prob=0.3, block_size=3, gamma_scale=1.0).train()
    x = torch.ones(4, 16, 12, 12)
    out = block(x)
    assert torch.equal(out[0], out[1]) and torch.equal(out[0], out[3]), "mask is shared across the batch"
    assert not all(torch.equal(out[0, 0], out[0, c]) for c in range(1, 16)), "channels get their own masks"
    assert out.mean().item() == pytest.approx(1.0, abs=1e-4)
    dropped = (out[0] == 0).float()[:, None]
    assert 0 < dropped.mean() < 0.6
    # every dropped pixel lies in a fully dropped 3x3 block that fits inside the map (valid centres only)
    eroded = -F.max_pool2d(-dropped, 3, stride=1)
    covered = F.max_pool2d(F.pad(eroded, (2, 2, 2, 2)), 3, stride=1)
    assert torch.equal(covered, dropped)


def test_drop_block_rate_follows_keep_prob():
    torch.manual_seed(0)
    block = DropBlock2d(drop_prob=0.1, block_size=7, gamma_scale=1.0).train()
    x = torch.ones(1, 256, 28, 28)
    low = (block(x) == 0).float().mean().item()
    set_drop_block_keep_prob(block, 0.7)
    high = (block(x) == 0).float().mean().item()
    assert 0.03 < low < 0.1 and 0.15 < high < 0.3 and high > 2 * low


def test_drop_block_small_maps_clip_the_block():
    block = DropBlock2d(drop_prob=0.5, block_size=7).train()
    out = block(torch.ones(2, 4, 3, 5))
    assert out.shape == (2, 4, 3, 5) and torch.isfinite(out).all()


def test_set_keep_prob_rejects_nonsense():
    with pytest.raises(ValueError, match="keep_prob"):
        set_drop_block_keep_prob(DropBlock2d(), 0.0)
