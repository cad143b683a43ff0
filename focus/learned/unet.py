"""The two-shot virtual-autofocus network of Li et al. (TSVA), and the single-input U-Net of the
paper's ablation, in plain torch.

TSVA: two contracting paths with shared weights read the two shots Y1 (the sharper, by the
Brenner gradient) and Y2; each level is two 3 x 3 convolutions with batch norm and ReLU, then
2 x 2 max pooling, the channels doubling from level to level. The two deepest feature maps are
concatenated and go through one more such block. The expanding path goes back up level by
level: a 2 x 2 transposed convolution halves the channels, its output is concatenated with
the skip features of *both* contracting paths at that level, and two 3 x 3 convolutions follow.
A 1 x 1 convolution gives the residual, which is added to Y1 (a global residual: the network
learns what separates the sharper shot from the in-focus image).

The single-input U-Net is the same network with one contracting path, fed Y1 alone.

Inputs and output are images scaled to [0, 1] per channel (network input / 255 for 8-bit
frames), (N, C, H, W), H and W multiples of 2^(depth-1).
"""

from __future__ import annotations

import torch
from torch import nn


class ConvBlock(nn.Sequential):
    """Two 3 x 3 convolutions, each with batch norm and ReLU."""

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__(
            nn.Conv2d(cin, cout, 3, padding=1, bias=False),
            nn.BatchNorm2d(cout),
            nn.ReLU(inplace=True),
            nn.Conv2d(cout, cout, 3, padding=1, bias=False),
            nn.BatchNorm2d(cout),
            nn.ReLU(inplace=True),
        )


class TwoShotUNet(nn.Module):
    """TSVA (see the module docstring). `shots`: 2 for TSVA, 1 for the single-input U-Net.
    `base` channels at the first level, `depth` levels."""

    def __init__(self, channels: int = 3, base: int = 8, depth: int = 4, shots: int = 2) -> None:
        super().__init__()
        if shots not in (1, 2):
            raise ValueError(f"shots must be 1 or 2, got {shots}")
        if depth < 2 or base < 1:
            raise ValueError(f"need depth >= 2 and base >= 1, got {depth}, {base}")
        self.channels, self.base, self.depth, self.shots = channels, base, depth, shots
        widths = [base * 2**level for level in range(depth)]
        self.encoder = nn.ModuleList(
            ConvBlock(channels if level == 0 else widths[level - 1], widths[level])
            for level in range(depth)
        )
        self.pool = nn.MaxPool2d(2)
        self.bottleneck = ConvBlock(shots * widths[-1], widths[-1])
        self.up = nn.ModuleList(
            nn.ConvTranspose2d(widths[level], widths[level - 1], 2, stride=2)
            for level in range(depth - 1, 0, -1)
        )
        self.decoder = nn.ModuleList(
            ConvBlock((1 + shots) * widths[level - 1], widths[level - 1])
            for level in range(depth - 1, 0, -1)
        )
        self.head = nn.Conv2d(widths[0], channels, 1)
        # Start as the identity on Y1: the residual begins at zero, so training starts from
        # the sharper shot instead of from noise added to it.
        nn.init.zeros_(self.head.weight)
        nn.init.zeros_(self.head.bias)

    @property
    def multiple(self) -> int:
        """Image sides must be multiples of this."""
        return 2 ** (self.depth - 1)

    def _contract(self, x: torch.Tensor) -> list[torch.Tensor]:
        skips = []
        for level, block in enumerate(self.encoder):
            if level:
                x = self.pool(x)
            x = block(x)
            skips.append(x)
        return skips

    def forward(self, y1: torch.Tensor, y2: torch.Tensor | None = None) -> torch.Tensor:
        """The in-focus image from the sharper shot `y1` (and the other shot `y2`)."""
        paths = [self._contract(y1)]
        if self.shots == 2:
            if y2 is None:
                raise ValueError("TSVA fuses two shots: give y2")
            paths.append(self._contract(y2))
        x = self.bottleneck(torch.cat([p[-1] for p in paths], dim=1))
        for k, (up, block) in enumerate(zip(self.up, self.decoder, strict=True)):
            level = self.depth - 2 - k
            x = block(torch.cat([up(x), *(p[level] for p in paths)], dim=1))
        return y1 + self.head(x)


def two_shot_from_single(single: TwoShotUNet) -> TwoShotUNet:
    """A TSVA network that computes exactly what the single-input U-Net `single` computes: its
    weights copied, and the weights that read the second contracting path (the second half of
    the bottleneck's input, the last third of each decoder block's input) set to zero.

    Why: a warm start. Trained from here, the second shot can only be learnt as an addition
    to what one shot already gives, so TSVA starts where its ablation ended instead of
    relearning it (the gradient reaches the zeroed weights because their inputs are not zero).
    """
    if single.shots != 1:
        raise ValueError(f"expected a single-input U-Net, got {single.shots} shots")
    pair = TwoShotUNet(single.channels, single.base, single.depth, shots=2)
    src = single.state_dict()
    widened = {}
    for name, tensor in pair.state_dict().items():
        old = src[name]
        if old.shape == tensor.shape:
            widened[name] = old.clone()
        else:  # a convolution reading the concatenated paths: [.., path 1, path 2]
            w = torch.zeros_like(tensor)
            w[:, : old.shape[1]] = old
            widened[name] = w
    pair.load_state_dict(widened, strict=True)
    return pair


def fused_for_inference(model: TwoShotUNet) -> TwoShotUNet:
    """A copy of `model` in eval mode with every batch norm folded into the convolution before
    it (the same function, about a third less work on a CPU)."""
    import copy

    from torch.nn.utils.fusion import fuse_conv_bn_eval

    fused = copy.deepcopy(model).eval()
    for block in fused.modules():
        if isinstance(block, ConvBlock):
            for k in (0, 3):
                block[k] = fuse_conv_bn_eval(block[k], block[k + 1])
                block[k + 1] = nn.Identity()
    return fused


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def macs_per_pixel(model: TwoShotUNet) -> float:
    """Multiply-accumulates per input pixel of one forward pass (convolutions only)."""
    total = 0.0
    for level, block in enumerate(model.encoder):
        scale = 4.0**-level
        for conv in (block[0], block[3]):
            total += model.shots * scale * conv.in_channels * conv.out_channels * 9
    deepest = 4.0 ** -(model.depth - 1)
    for conv in (model.bottleneck[0], model.bottleneck[3]):
        total += deepest * conv.in_channels * conv.out_channels * 9
    for k, (up, block) in enumerate(zip(model.up, model.decoder, strict=True)):
        scale = 4.0 ** -(model.depth - 2 - k)
        total += scale * up.in_channels * up.out_channels  # 2x2 stride 2: 1 tap per output px
        for conv in (block[0], block[3]):
            total += scale * conv.in_channels * conv.out_channels * 9
    total += model.head.in_channels * model.head.out_channels
    return total
