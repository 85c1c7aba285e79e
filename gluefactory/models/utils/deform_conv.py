"""Deformable 2-D convolution (DCNv1/v2) in plain PyTorch (no torchvision op needed).

Semantics of ``torchvision.ops.deform_conv2d``: the kernel tap k of output pixel
(y, x) reads the input at (y * stride - pad + ky * dil + dy_k, x * stride - pad +
kx * dil + dx_k), bilinearly, with zeros outside the input. Offsets are
(B, 2 * G * kh * kw, Ho, Wo) with (dy, dx) interleaved per tap, for G offset groups.

Implementation: one ``grid_sample`` (zero padding, which is exactly that bilinear
rule) gathers the (C, K) samples of every output pixel, then a single matmul with the
(C_out, C * K) weight does the convolution.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def _pair(v) -> tuple[int, int]:
    return (v, v) if isinstance(v, int) else tuple(v)


def deform_conv2d(
    x: torch.Tensor,
    offset: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None = None,
    stride: int | tuple[int, int] = 1,
    padding: int | tuple[int, int] = 0,
    dilation: int | tuple[int, int] = 1,
    mask: torch.Tensor | None = None,
) -> torch.Tensor:
    """Deformable convolution of x (B, C, H, W) -> (B, C_out, Ho, Wo).

    weight (C_out, C, kh, kw) (no grouped convolution), offset (B, 2 G kh kw, Ho, Wo),
    optional modulation ``mask`` (B, G kh kw, Ho, Wo) (DCNv2).
    """
    b, c, h, w = x.shape
    c_out, c_in, kh, kw = weight.shape
    if c_in != c:
        raise ValueError(
            f"deform_conv2d: weight expects {c_in} channels, input has {c}."
        )
    (sh, sw), (ph, pw), (dh, dw) = _pair(stride), _pair(padding), _pair(dilation)
    k = kh * kw
    ho = (h + 2 * ph - dh * (kh - 1) - 1) // sh + 1
    wo = (w + 2 * pw - dw * (kw - 1) - 1) // sw + 1
    groups = offset.shape[1] // (2 * k)
    if offset.shape != (b, 2 * groups * k, ho, wo) or c % groups:
        raise ValueError(
            f"deform_conv2d: offset shape {tuple(offset.shape)} does not fit "
            f"(B={b}, 2*G*K with K={k}, Ho={ho}, Wo={wo}) for {c} channels."
        )
    dev, dt = x.device, x.dtype
    offset = offset.reshape(b, groups, k, 2, ho, wo)
    # Regular sampling positions of every tap (K, Ho, Wo).
    ys = torch.arange(ho, device=dev, dtype=dt) * sh - ph
    xs = torch.arange(wo, device=dev, dtype=dt) * sw - pw
    ky = (torch.arange(kh, device=dev, dtype=dt) * dh).repeat_interleave(kw)
    kx = (torch.arange(kw, device=dev, dtype=dt) * dw).repeat(kh)
    py = ys[None, :, None] + ky[:, None, None] + offset[:, :, :, 0]  # (B,G,K,Ho,Wo)
    px = xs[None, None, :] + kx[:, None, None] + offset[:, :, :, 1]
    # Pixel index p -> (2 p + 1) / size - 1 for grid_sample(align_corners=False), which
    # reads bilinearly with zeros for corners outside the input: torchvision's rule
    # (also for maps of size 1, unlike the align_corners=True form).
    grid = torch.stack([(2 * px + 1) / w - 1, (2 * py + 1) / h - 1], -1)
    grid = grid.reshape(b * groups, k * ho, wo, 2)
    xg = x.reshape(b * groups, c // groups, h, w)
    cols = F.grid_sample(xg, grid, "bilinear", "zeros", align_corners=False)
    cols = cols.reshape(b, groups, c // groups, k, ho * wo)
    if mask is not None:
        cols = cols * mask.reshape(b, groups, 1, k, ho * wo)
    cols = cols.reshape(b, c * k, ho * wo)
    out = torch.matmul(weight.reshape(c_out, c * k), cols)
    if bias is not None:
        out = out + bias[:, None]
    return out.reshape(b, c_out, ho, wo)


class DeformConv2d(nn.Module):
    """Deformable convolution whose offsets (and mask) come from a regular convolution.

    Parameters are ``offset_conv`` (predicts 2 K offsets, or 3 K with ``mask``) and
    ``regular_conv`` (the kernel), as in ALIKED's checkpoints. Offsets are clamped to
    +-max(H, W) / 4, as ALIKED does.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int = 3,
        stride: int = 1,
        padding: int = 1,
        bias: bool = False,
        mask: bool = False,
    ):
        super().__init__()
        self.stride, self.padding, self.mask = stride, padding, mask
        k = kernel_size * kernel_size
        self.offset_conv = nn.Conv2d(
            in_channels, (3 if mask else 2) * k, kernel_size, stride, padding, bias=True
        )
        self.regular_conv = nn.Conv2d(
            in_channels, out_channels, kernel_size, stride, padding, bias=bias
        )

    def forward(
        self,
        x: torch.Tensor,
        weight: torch.Tensor | None = None,
        bias: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """``weight``/``bias`` replace the kernel (e.g. with a BatchNorm folded in)."""
        max_offset = max(x.shape[-2:]) / 4.0
        if torch.jit.is_tracing():  # ONNX export: a tensor, so it follows the size
            from torch.onnx.operators import shape_as_tensor

            max_offset = shape_as_tensor(x)[-2:].amax().to(x.dtype) / 4.0
        out = self.offset_conv(x)
        mask = None
        if self.mask:
            o1, o2, m = torch.chunk(out, 3, dim=1)
            out, mask = torch.cat([o1, o2], 1), torch.sigmoid(m)
        offset = out.clamp(-max_offset, max_offset)
        return deform_conv2d(
            x,
            offset,
            self.regular_conv.weight if weight is None else weight,
            self.regular_conv.bias if weight is None else bias,
            stride=self.stride,
            padding=self.padding,
            mask=mask,
        )
