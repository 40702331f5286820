"""Assemble-ResNet: ResNet with the network tweaks of "Compounding the Performance Improvements of Assembled
Techniques in a Convolutional Neural Network" (Lee et al., 2020, https://arxiv.org/abs/2001.06268).

The official configurations (`assemble_resnet50`, `assemble_resnet152`) reproduce the official TensorFlow
code (clovaai/assembled-cnn, `nets/resnet_model.py`) layer for layer: Big-Little stem and stages, the light
SK convolution, anti-aliased (blurred) strided convolutions, the Big-Little 3x3 average-pool projection
shortcut and DropBlock at the official four places in stages 3 and 4. The paper's ablation ladder is
registered as `assemble_r50`, `assemble_r50d`, `assemble_r50d_se`, `assemble_r50d_sk` and
`assemble_r50_bl_sk` (E0 .. E9 of Table 7; E9 has no ResNet-D, as the official bL network); E10 .. E12 are the
two official models. No weights exist for the ladder; its ResNet-D parts are the official code's
`use_resnet_d` (`timm_assemble.layers.resnet_d`: deep stem, max-pool, and a 2x2 average pool before every
projection shortcut's 1x1 conv, stage 1's included), not timm's `resnet50d`.

BatchNorm defaults are PyTorch's and timm's (`momentum=0.1`, `eps=1e-5`, kwargs `bn_momentum`, `bn_eps`): momentum
is a training-recipe value (inference and the converted weights do not depend on it), so the official decay 0.997
(PyTorch `momentum=0.003`, `nets/hparams_config.py:72-75`) lives in the recipe presets e0..e12, where the paper's
600-epoch training needs it; the official eps is 1e-5 too (`nets/model_helper.py:26`). Convolutions start from the
official fan-in truncated normal (`tf.variance_scaling_initializer()`), the classifier from Glorot-uniform
with a zero bias (`tf.layers.dense` defaults).

Parameters map one to one onto the official checkpoint variables (TF name -> our state_dict name, both
models, any width; `N` = stage 1..3, `k` counts per scope in creation order):

| official (`resnet_model/...`)                            | ours                                     |
|----------------------------------------------------------|------------------------------------------|
| `stage0/conv2d`, `stage0_1/batch_normalization`          | `conv1`, `bn1`                           |
| `stage0/pool/conv2d` .. `conv2d_4` (+ BNs alike)         | `stem_pool.{big,little1,little2,little3,fuse}.{conv,bn}` |
| `stageN/bigN/...` blocks                                 | `layerN.big.{i}`                         |
| `stageN/littleN/...` blocks, then last conv/BN           | `layerN.little.{i}`, `layerN.little_e.{conv,bn}` |
| `stageN/mergeN/...` block                                | `layerN.merge.0`                         |
| `stage4/...` blocks                                      | `layer4.{i}`                             |
| block: shortcut conv/BN (first block only, created first)| `downsample.1`, `downsample.2`           |
| block: conv1x1, BN                                       | `conv1`, `bn1`                           |
| block: SK 3x3 conv (2x wide), BN                         | `conv2.conv`, `conv2.bn`                 |
| block: `sk_block*/sk_fc_1`, `batch_normalization`, `sk_fc_2` | `conv2.fc1`, `conv2.bn_fc1`, `conv2.fc2` |
| block: conv1x1 (x4), BN                                  | `conv3`, `bn3`                           |
| `dense/kernel`, `dense/bias`                             | `fc.weight`, `fc.bias`                   |

Conv kernels are HWIO in TF and OIHW here; the dense kernel is [in, out] in TF and [out, in] here; TF BN
`gamma, beta, moving_mean, moving_variance` are `weight, bias, running_mean, running_var`.
"""

from collections.abc import Callable
from functools import partial

import torch
import torch.nn as nn
import torch.nn.functional as F
from timm.data import IMAGENET_DEFAULT_MEAN
from timm.layers import BlurPool2d, DropPath, SEModule, create_classifier, create_pool2d
from timm.models import build_model_with_cfg, generate_default_cfgs, register_model
from timm.models._features import feature_take_indices
from timm.models._manipulate import checkpoint, checkpoint_seq
from timm.models._registry import register_model_deprecations

from ..layers import BigLittleStage, BigLittleStem, DropBlock2d, ResNetDShortcutPool, ResNetDStem, SKConv2d

__all__ = ["AssembleResNet", "Bottleneck"]

# Preprocessing of the released weights: 0..255 pixels minus the ImageNet means, no division by a std.
CLOVA_MEAN = (123.68 / 255, 116.78 / 255, 103.94 / 255)
CLOVA_STD = (1 / 255, 1 / 255, 1 / 255)

SHORTCUT_TYPES = ("conv", "avg2", "avg3")

# The Hub organisation of the released weights (`timm_assemble.weights.records`; `$TIMM_ASSEMBLE_HUB_ORG` points
# a `pretrained=True` load at a mirror or fork).
HUB_ORG = "timm-assemble"

# Stage strides (functions/model_fns.py:166-168), applied by each stage's first (Big-Little: merge) block. The
# Big-Little networks downsample in stage 1 and not in stage 3; the plain ResNets as usual (both /32 in total).
BIG_LITTLE_STAGE_STRIDES = (2, 2, 1, 2)
RESNET_STAGE_STRIDES = (1, 2, 2, 2)
# DropBlock (nets/resnet_model.py:432-438, 448-453): 7x7 blocks in stages 3 and 4 (indices 2, 3), gamma scaled
# by 0.25 in stage 3 and by 1 in stage 4.
DROP_BLOCK_SIZE = 7
DROP_BLOCK_GAMMA_SCALES = {2: 0.25, 3: 1.0}

# BatchNorm defaults: PyTorch's / timm's momentum; eps is also the official one (nets/model_helper.py:26).
BN_MOMENTUM = 0.1
BN_EPS = 1e-5
# TF truncated normal: cut at 2 std, the std divided by the std of a unit normal truncated there
# (tf.variance_scaling_initializer, truncated_normal): the kept values have variance exactly 1 / fan_in.
_TRUNC_STD_CORRECTION = 0.87962566103423978


class Bottleneck(nn.Module):
    """ResNet bottleneck with the Assemble-ResNet options, in the official order of operations.

    conv1x1 -> BN -> [DropBlock] -> ReLU -> SK conv (or conv3x3 -> BN) -> [DropBlock] -> [ReLU]
    -> [blur downsample] -> conv1x1 -> BN -> [DropBlock] -> [SE] -> + shortcut -> ReLU (unless `last_act`
    is False, as in the last block of a big branch). With anti-aliasing the 3x3 conv runs at stride 1 and
    the blur downsamples.
    """

    expansion = 4

    def __init__(
        self,
        in_chs: int,
        planes: int,
        stride: int = 1,
        downsample: nn.Module | None = None,
        use_sk: bool = False,
        use_se: bool = False,
        anti_alias: bool = False,
        last_act: bool = True,
        drop_block: Callable[[], nn.Module] | None = None,
        drop_path_rate: float = 0.0,
        act_layer: type[nn.Module] = nn.ReLU,
        norm_layer: type[nn.Module] = nn.BatchNorm2d,
    ) -> None:
        super().__init__()
        out_chs = planes * self.expansion
        conv_stride = 1 if anti_alias else stride
        make_drop_block = drop_block or nn.Identity

        self.conv1 = nn.Conv2d(in_chs, planes, 1, bias=False)
        self.bn1 = norm_layer(planes)
        self.drop_block1 = make_drop_block()
        self.act1 = act_layer(inplace=True)
        if use_sk:
            self.conv2 = SKConv2d(planes, planes, stride=conv_stride, act_layer=act_layer, norm_layer=norm_layer)
            self.bn2 = nn.Identity()
            self.act2 = nn.Identity()
        else:
            self.conv2 = nn.Conv2d(planes, planes, 3, stride=conv_stride, padding=1, bias=False)
            self.bn2 = norm_layer(planes)
            self.act2 = act_layer(inplace=True)
        self.drop_block2 = make_drop_block()
        self.aa = BlurPool2d(planes, filt_size=3, stride=stride) if anti_alias and stride > 1 else nn.Identity()
        self.conv3 = nn.Conv2d(planes, out_chs, 1, bias=False)
        self.bn3 = norm_layer(out_chs)
        self.drop_block3 = make_drop_block()
        self.se = SEModule(out_chs, rd_channels=out_chs // 16, bias=False) if use_se else nn.Identity()
        self.drop_path = DropPath(drop_path_rate) if drop_path_rate > 0 else nn.Identity()
        self.downsample = downsample
        self.act3 = act_layer(inplace=True) if last_act else nn.Identity()

    def zero_init_last(self) -> None:
        """Zero-gamma: start each residual branch at zero so the block begins as its shortcut."""
        nn.init.zeros_(self.bn3.weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = x if self.downsample is None else self.downsample(x)
        x = self.act1(self.drop_block1(self.bn1(self.conv1(x))))
        x = self.act2(self.drop_block2(self.bn2(self.conv2(x))))
        x = self.aa(x)
        x = self.drop_path(self.se(self.drop_block3(self.bn3(self.conv3(x)))))
        x += shortcut
        return self.act3(x)


def _make_shortcut(
    in_chs: int,
    out_chs: int,
    stride: int,
    shortcut_type: str,
    norm_layer: type[nn.Module],
    drop_block: Callable[[], nn.Module] | None,
) -> nn.Sequential:
    """Projection shortcut: `conv` = strided 1x1 conv (ResNet), `avg2` = the official ResNet-D 2x2 average
    pool (at every stride) then 1x1 conv, `avg3` = zero-padded 3x3 average pool counting the padding then 1x1
    conv (Big-Little, stride > 1 only)."""
    if shortcut_type == "conv":
        layers: list[nn.Module] = [nn.Conv2d(in_chs, out_chs, 1, stride=stride, bias=False), norm_layer(out_chs)]
    else:
        if shortcut_type == "avg2":
            pool: nn.Module = ResNetDShortcutPool(stride)
        elif stride == 1:
            pool = nn.Identity()
        else:
            pool = nn.AvgPool2d(3, stride, padding=1, count_include_pad=True)
        layers = [pool, nn.Conv2d(in_chs, out_chs, 1, bias=False), norm_layer(out_chs)]
    if drop_block is not None:
        layers.append(drop_block())
    return nn.Sequential(*layers)


def _make_blocks(
    in_chs: int,
    planes: int,
    num_blocks: int,
    stride: int,
    drop_path_rates: list[float],
    shortcut_type: str,
    drop_block: Callable[[], nn.Module] | None,
    last_act: bool = True,
    **block_kwargs,
) -> nn.Sequential:
    """A group of bottlenecks; as in the official code its first block always has a projection shortcut."""
    out_chs = planes * Bottleneck.expansion
    norm_layer = block_kwargs.get("norm_layer", nn.BatchNorm2d)
    blocks = []
    for index in range(num_blocks):
        first = index == 0
        blocks.append(
            Bottleneck(
                in_chs if first else out_chs,
                planes,
                stride=stride if first else 1,
                downsample=_make_shortcut(in_chs, out_chs, stride, shortcut_type, norm_layer, drop_block)
                if first
                else None,
                last_act=last_act or index < num_blocks - 1,
                drop_block=drop_block,
                drop_path_rate=drop_path_rates[index],
                **block_kwargs,
            )
        )
    return nn.Sequential(*blocks)


def _big_little_depths(depth: int, beta: int) -> tuple[int, int]:
    """Blocks in the big and the little branch of a Big-Little stage of `depth` blocks (+1 merge block)."""
    return depth - 1, max(1, depth // beta - 1)


class AssembleResNet(nn.Module):
    """ResNet-50/152 family with Big-Little stages, SK convs, SE, anti-aliasing and DropBlock as options.

    `big_little=(alpha, beta)` turns stages 1-3 into Big-Little stages (little branch `alpha` times
    narrower, `max(1, n // beta - 1)` blocks deep) and the max-pool into the bL stem module; `width` is
    the base channel count (64 for the official models). `drop_block_rate` is the final DropBlock drop
    probability: the modules exist only when it is > 0, and a trainer ramps it up with
    `timm_assemble.layers.set_drop_block_keep_prob`. `bn_momentum` / `bn_eps` apply to every BatchNorm
    (default: PyTorch's 0.1 / 1e-5; the paper's recipe presets set the official momentum 0.003).
    """

    def __init__(
        self,
        layers: tuple[int, ...] = (3, 4, 6, 3),
        num_classes: int = 1000,
        in_chans: int = 3,
        width: int = 64,
        stem_type: str = "",
        big_little: tuple[int, int] | None = (2, 4),
        shortcut_type: str = "avg3",
        use_sk: bool = True,
        use_se: bool = False,
        anti_alias: bool = True,
        global_pool: str = "avg",
        drop_rate: float = 0.0,
        drop_path_rate: float = 0.0,
        drop_block_rate: float = 0.0,
        zero_init_last: bool = True,
        bn_momentum: float = BN_MOMENTUM,
        bn_eps: float = BN_EPS,
        act_layer: type[nn.Module] = nn.ReLU,
        norm_layer: type[nn.Module] = nn.BatchNorm2d,
    ) -> None:
        super().__init__()
        if len(layers) != 4:
            raise ValueError(f"layers must give 4 stage depths, got {layers}")
        if shortcut_type not in SHORTCUT_TYPES:
            raise ValueError(f"shortcut_type must be one of {SHORTCUT_TYPES}, got {shortcut_type!r}")
        if stem_type not in ("", "deep"):
            raise ValueError(f"stem_type must be '' or 'deep', got {stem_type!r}")
        if big_little is not None and min(layers[:3]) < 2:
            raise ValueError(f"Big-Little stages need at least 2 blocks each, got {layers[:3]}")
        self.num_classes = num_classes
        self.in_chans = in_chans
        self.drop_rate = drop_rate
        self.grad_checkpointing = False

        if stem_type == "deep":
            self.conv1: nn.Module = ResNetDStem(in_chans, width, act_layer=act_layer, norm_layer=norm_layer)
        else:
            self.conv1 = nn.Conv2d(in_chans, width, 7, stride=2, padding=3, bias=False)
        self.bn1 = norm_layer(width)
        self.act1 = act_layer(inplace=True)
        if big_little is None:
            # official: 3x3/2 max-pool with TF 'SAME' padding (nets/resnet_model.py:421-424), size-dependent
            self.stem_pool: nn.Module = create_pool2d("max", 3, stride=2, padding="same")
        else:
            self.stem_pool = BigLittleStem(width, alpha=big_little[0], act_layer=act_layer, norm_layer=norm_layer)
        self.feature_info = [dict(num_chs=width, reduction=4, module="stem_pool")]

        stage_strides = BIG_LITTLE_STAGE_STRIDES if big_little is not None else RESNET_STAGE_STRIDES
        blocks_per_stage = [
            sum(_big_little_depths(depth, big_little[1])) + 1 if big_little is not None and index < 3 else depth
            for index, depth in enumerate(layers)
        ]
        num_blocks = sum(blocks_per_stage)
        rates = [drop_path_rate * index / max(num_blocks - 1, 1) for index in range(num_blocks)]
        block_kwargs = dict(use_sk=use_sk, use_se=use_se, anti_alias=anti_alias, act_layer=act_layer,
                            norm_layer=norm_layer)

        in_chs, reduction = width, 4
        for index, depth in enumerate(layers):
            planes = width * 2**index
            gamma_scale = DROP_BLOCK_GAMMA_SCALES.get(index)
            drop_block = (
                partial(DropBlock2d, drop_block_rate, DROP_BLOCK_SIZE, gamma_scale)
                if drop_block_rate > 0 and gamma_scale is not None
                else None
            )
            stage_rates, rates = rates[: blocks_per_stage[index]], rates[blocks_per_stage[index]:]
            group = partial(_make_blocks, shortcut_type=shortcut_type, drop_block=drop_block, **block_kwargs)
            if big_little is not None and index < 3:
                alpha, beta = big_little
                num_big, num_little = _big_little_depths(depth, beta)
                stage: nn.Module = BigLittleStage(
                    big=group(in_chs, planes, num_big, 2, stage_rates[:num_big], last_act=False),
                    little=group(in_chs, planes // alpha, num_little, 1, stage_rates[num_big:-1]),
                    merge=group(planes * 4, planes, 1, stage_strides[index], stage_rates[-1:]),
                    little_chs=planes // alpha * 4,
                    out_chs=planes * 4,
                    act_layer=act_layer,
                    norm_layer=norm_layer,
                )
            else:
                stage = group(in_chs, planes, depth, stage_strides[index], stage_rates)
            in_chs, reduction = planes * 4, reduction * stage_strides[index]
            self.add_module(f"layer{index + 1}", stage)
            self.feature_info.append(dict(num_chs=in_chs, reduction=reduction, module=f"layer{index + 1}"))

        self.num_features = self.head_hidden_size = in_chs
        self.global_pool, self.fc = create_classifier(self.num_features, num_classes, pool_type=global_pool)
        self.set_batch_norm(bn_momentum, bn_eps)
        self.init_weights(zero_init_last=zero_init_last)

    @torch.jit.ignore
    def set_batch_norm(self, momentum: float, eps: float) -> None:
        """Momentum and eps of every BatchNorm, the SK attention's BatchNorm1d included."""
        for module in self.modules():
            if isinstance(module, nn.modules.batchnorm._BatchNorm):
                module.momentum, module.eps = momentum, eps

    @torch.jit.ignore
    def init_weights(self, zero_init_last: bool = True) -> None:
        """The official initialisers: fan-in truncated normal for convs (and the SK attention's 1x1 convs, here
        Linear), Glorot-uniform classifier with zero bias; BN gamma 1, beta 0 (zero-gamma on each last BN)."""
        for name, module in self.named_modules():
            if name == "fc" and isinstance(module, nn.Linear):
                nn.init.xavier_uniform_(module.weight)
                nn.init.zeros_(module.bias)
            elif isinstance(module, (nn.Conv2d, nn.Linear)):
                fan_in = module.weight[0].numel()
                std = (1.0 / fan_in) ** 0.5 / _TRUNC_STD_CORRECTION
                nn.init.trunc_normal_(module.weight, std=std, a=-2 * std, b=2 * std)
        if zero_init_last:
            for module in self.modules():
                if isinstance(module, Bottleneck):
                    module.zero_init_last()

    @torch.jit.ignore
    def group_matcher(self, coarse: bool = False) -> dict:
        """Parameter groups for layer-wise lr decay; parallel big/little blocks share a depth."""
        if coarse:
            return dict(stem=r"^conv1|bn1|stem_pool", blocks=r"^layer(\d+)")
        return dict(
            stem=r"^conv1|bn1|stem_pool",
            blocks=[
                (r"^layer(\d+)\.(\d+)", None),
                (r"^layer(\d+)\.(?:big|little)\.(\d+)", None),
                (r"^layer(\d+)\.little_e", (99997,)),  # (99999,) is timm's "join the previous group"
                (r"^layer(\d+)\.merge", (99998,)),
            ],
        )

    @torch.jit.ignore
    def set_grad_checkpointing(self, enable: bool = True) -> None:
        self.grad_checkpointing = enable

    @torch.jit.ignore
    def get_classifier(self, name_only: bool = False) -> str | nn.Module:
        return "fc" if name_only else self.fc

    def reset_classifier(self, num_classes: int, global_pool: str | None = None) -> None:
        self.num_classes = num_classes
        if global_pool is None:
            global_pool = self.global_pool.pool_type
        self.global_pool, self.fc = create_classifier(self.num_features, num_classes, pool_type=global_pool)
        self.head_hidden_size = self.num_features * self.global_pool.feat_mult()

    def _stem(self, x: torch.Tensor) -> torch.Tensor:
        return self.stem_pool(self.act1(self.bn1(self.conv1(x))))

    def forward_intermediates(
        self,
        x: torch.Tensor,
        indices: int | list[int] | None = None,
        norm: bool = False,
        stop_early: bool = False,
        output_fmt: str = "NCHW",
        intermediates_only: bool = False,
    ) -> list[torch.Tensor] | tuple[torch.Tensor, list[torch.Tensor]]:
        """Features of the stem (index 0) and stages 1-4 (indices 1-4), as timm's ResNet gives them."""
        if output_fmt != "NCHW":
            raise ValueError("Output shape must be NCHW.")
        intermediates = []
        take_indices, max_index = feature_take_indices(5, indices)
        x = self._stem(x)
        if 0 in take_indices:
            intermediates.append(x)
        stages = [self.layer1, self.layer2, self.layer3, self.layer4]
        if stop_early:
            stages = stages[:max_index]
        for feat_idx, stage in enumerate(stages, start=1):
            if self.grad_checkpointing and not torch.jit.is_scripting():
                x = self._checkpoint_stage(stage, x)
            else:
                x = stage(x)
            if feat_idx in take_indices:
                intermediates.append(x)
        if intermediates_only:
            return intermediates
        return x, intermediates

    def prune_intermediate_layers(
        self,
        indices: int | list[int] = 1,
        prune_norm: bool = False,
        prune_head: bool = True,
    ) -> list[int]:
        """Drop the stages (and head) after the last intermediate in `indices`."""
        take_indices, max_index = feature_take_indices(5, indices)
        for index in range(max_index + 1, 5):
            setattr(self, f"layer{index}", nn.Sequential())
        if max_index < 4:
            self.num_features = self.head_hidden_size = self.feature_info[max_index]["num_chs"]
        if prune_head or max_index < 4:
            self.reset_classifier(0, "")
        return take_indices

    @torch.jit.ignore
    def _checkpoint_stage(self, stage: nn.Module, x: torch.Tensor) -> torch.Tensor:
        """Recompute in backward: block by block in a plain stage, whole Big-Little stages otherwise."""
        if isinstance(stage, nn.Sequential):
            return checkpoint_seq(stage, x)
        return checkpoint(stage, x)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        x = self._stem(x)
        if self.grad_checkpointing and not torch.jit.is_scripting():
            for stage in (self.layer1, self.layer2, self.layer3, self.layer4):
                x = self._checkpoint_stage(stage, x)
        else:
            x = self.layer1(x)
            x = self.layer2(x)
            x = self.layer3(x)
            x = self.layer4(x)
        return x

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        x = self.global_pool(x)
        if self.drop_rate:
            x = F.dropout(x, p=float(self.drop_rate), training=self.training)
        return x if pre_logits else self.fc(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))


def _create_assemble_resnet(variant: str, pretrained: bool = False, **kwargs) -> AssembleResNet:
    if not pretrained:
        return build_model_with_cfg(AssembleResNet, variant, pretrained, **kwargs)
    # Weights from the Hub (sha256-checked), else for the official tags from our converted-weights cache or
    # the official source; a missing file is a clear TimmAssembleError. Imported here: building a model
    # without weights needs none of the weights machinery.
    from ..weights.resolve import pretrained_guard

    with pretrained_guard(variant, pretrained, kwargs) as build_kwargs:
        return build_model_with_cfg(AssembleResNet, variant, pretrained, **build_kwargs)


def _cfg(**kwargs) -> dict:
    return {
        "num_classes": 1000,
        "input_size": (3, 224, 224),
        "pool_size": (7, 7),
        "crop_pct": 0.875,
        "interpolation": "bilinear",
        "mean": IMAGENET_DEFAULT_MEAN,
        "std": (0.229, 0.224, 0.225),
        "first_conv": "conv1",
        "classifier": "fc",
        "license": "apache-2.0",
        "paper_ids": "arXiv:2001.06268",
        "paper_name": "Compounding the Performance Improvements of Assembled Techniques in a "
        "Convolutional Neural Network",
        "origin_url": "https://github.com/clovaai/assembled-cnn",
        **kwargs,
    }


def _clova_cfg(name: str, crop_pct: float) -> dict:
    """Official weights: trained at 224, evaluated at 256 (shorter side resized to 256 / crop_pct)."""
    return _cfg(
        hf_hub_id=f"{HUB_ORG}/{name}",
        hf_hub_filename="model.safetensors",
        mean=CLOVA_MEAN,
        std=CLOVA_STD,
        crop_pct=crop_pct,
        test_input_size=(3, 256, 256),
        test_crop_pct=crop_pct,
    )


default_cfgs = generate_default_cfgs({
    # 'imagenet_224_256': resize to int(256 / 0.875) = 292, centre crop 256; 256 / 0.8767 floors to 292.
    "assemble_resnet50.clova_in1k": _clova_cfg("assemble_resnet50.clova_in1k", crop_pct=0.8767),
    # 'imagenet_224_256a': resize to 257, centre crop 256; 256 / 0.9961 floors to 257.
    "assemble_resnet152.clova_in1k": _clova_cfg("assemble_resnet152.clova_in1k", crop_pct=0.9961),
    "assemble_r50": _cfg(),
    "assemble_r50d": _cfg(first_conv="conv1.0"),
    "assemble_r50d_se": _cfg(first_conv="conv1.0"),
    "assemble_r50d_sk": _cfg(first_conv="conv1.0"),
    "assemble_r50_bl_sk": _cfg(),
})

_LADDER_BASE = dict(layers=(3, 4, 6, 3), big_little=None, use_sk=False, anti_alias=False)


@register_model
def assemble_resnet50(pretrained: bool = False, **kwargs) -> AssembleResNet:
    """Assemble-ResNet-50 (E10/E11): R50-D + Big-Little (alpha 2, beta 4) + SK + anti-aliasing."""
    model_args = dict(layers=(3, 4, 6, 3), big_little=(2, 4), shortcut_type="avg3", use_sk=True, anti_alias=True)
    return _create_assemble_resnet("assemble_resnet50", pretrained, **dict(model_args, **kwargs))


@register_model
def assemble_resnet152(pretrained: bool = False, **kwargs) -> AssembleResNet:
    """Assemble-ResNet-152 (E12): R152-D + Big-Little (alpha 1, beta 2) + SK + anti-aliasing."""
    model_args = dict(layers=(5, 12, 30, 3), big_little=(1, 2), shortcut_type="avg3", use_sk=True, anti_alias=True)
    return _create_assemble_resnet("assemble_resnet152", pretrained, **dict(model_args, **kwargs))


@register_model
def assemble_r50(pretrained: bool = False, **kwargs) -> AssembleResNet:
    """Ablation E0: plain ResNet-50 (7x7 stem, max-pool, strided 1x1 projection shortcut)."""
    model_args = dict(_LADDER_BASE, stem_type="", shortcut_type="conv")
    return _create_assemble_resnet("assemble_r50", pretrained, **dict(model_args, **kwargs))


@register_model
def assemble_r50d(pretrained: bool = False, **kwargs) -> AssembleResNet:
    """Ablation E1-E3: ResNet-50-D as the official `use_resnet_d` (deep 3x3 stem, 2x2 average-pool shortcut in
    every stage, stage 1's at stride 1)."""
    model_args = dict(_LADDER_BASE, stem_type="deep", shortcut_type="avg2")
    return _create_assemble_resnet("assemble_r50d", pretrained, **dict(model_args, **kwargs))


@register_model
def assemble_r50d_se(pretrained: bool = False, **kwargs) -> AssembleResNet:
    """Ablation E4-E5: ResNet-50-D + squeeze-excitation (ratio 16, no biases, as the official code)."""
    model_args = dict(_LADDER_BASE, stem_type="deep", shortcut_type="avg2", use_se=True)
    return _create_assemble_resnet("assemble_r50d_se", pretrained, **dict(model_args, **kwargs))


@register_model
def assemble_r50d_sk(pretrained: bool = False, **kwargs) -> AssembleResNet:
    """Ablation E6-E8: ResNet-50-D + the light SK convolution."""
    model_args = dict(_LADDER_BASE, stem_type="deep", shortcut_type="avg2", use_sk=True)
    return _create_assemble_resnet("assemble_r50d_sk", pretrained, **dict(model_args, **kwargs))


@register_model
def assemble_r50_bl_sk(pretrained: bool = False, **kwargs) -> AssembleResNet:
    """Ablation E9: Big-Little ResNet-50 (bL stem and 3x3-pool shortcuts, no ResNet-D) + SK, no anti-aliasing."""
    model_args = dict(layers=(3, 4, 6, 3), big_little=(2, 4), shortcut_type="avg3", use_sk=True, anti_alias=False)
    return _create_assemble_resnet("assemble_r50_bl_sk", pretrained, **dict(model_args, **kwargs))


# Renamed: E9 has no ResNet-D in it. The old name still builds the same network, with timm's deprecation warning.
register_model_deprecations(__name__, {"assemble_r50d_bl_sk": "assemble_r50_bl_sk"})
