"""Segmenter: a ViT encoder with a mask-transformer decoder.

Paper: "Segmenter: Transformer for Semantic Segmentation", Robin Strudel, Ricardo Garcia,
Ivan Laptev, Cordelia Schmid, 2021. https://arxiv.org/abs/2105.05633
Encoder: "An Image is Worth 16x16 Words: Transformers for Image Recognition at Scale",
Alexey Dosovitskiy et al., 2020. https://arxiv.org/abs/2010.11929

Encoder (ViT): the image is cut into ``patch_size`` x ``patch_size`` patches (a strided
conv), each linearly embedded to ``embed_dim``, learned position embeddings added, then
``depth`` pre-norm transformer blocks (multi-head self-attention and a GELU MLP, each
with a residual). The paper's encoders are ImageNet-pretrained ViT-Ti/S/B/L; nothing
pretrained can be downloaded here, so the default is a ViT-Tiny width (192, 3 heads) with
6 blocks instead of 12, about 3.8M parameters, trained from scratch. The encoder has no
[CLS] token (the paper's is only used for pre-training and discarded by the decoder).

Position embeddings are learned for a reference grid (``ref_size // patch_size``, 24x30
for CamVid's 384x480) and resized bilinearly to the actual patch grid on every forward
(the paper does the same when fine-tuning at another resolution). The resize is always
done, even to the reference grid (bilinear to the same size is the identity), so the
traced ONNX graph has no baked-in size: one ``Resize`` whose output size comes from the
input's shape, and the exported model accepts any valid height and width.

Decoders (``decoder=``):

- ``"mask"`` (the paper's mask transformer): patch tokens are projected to
  ``decoder_dim``, ``num_classes`` learned class embeddings are appended as extra tokens,
  and ``decoder_depth`` transformer blocks process both jointly. Masks are the scalar
  products of the L2-normalised projected patch tokens and class tokens, followed by a
  LayerNorm over the classes ("mask norm"), reshaped to the patch grid.
- ``"linear"`` (the paper's linear baseline): a LayerNorm-ed linear layer from each patch
  token to the class logits.

Either way the patch-grid logits are upsampled bilinearly to the input size.
``size_divisor`` is the patch size (16, or 8 for finer masks at 4x the tokens).

Attention is written with ``matmul`` and ``softmax`` (not ``nn.MultiheadAttention``, whose
eval-mode fast path is a fused op): it exports to ONNX opset 17 with the TorchScript
exporter, runs in ONNX Runtime, and ``count_macs`` sees every matmul.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from edgeseg.errors import ModelError
from edgeseg.models.base import SegmentationModel
from edgeseg.models.registry import register_model

PAPER = ("Strudel, Garcia, Laptev, Schmid, Segmenter: Transformer for Semantic Segmentation, 2021, "
         "https://arxiv.org/abs/2105.05633 (ViT encoder: Dosovitskiy et al., 2020, "
         "https://arxiv.org/abs/2010.11929)")
DECODERS = ("mask", "linear")
PATCH_SIZES = (8, 16)


# --- building blocks -------------------------------------------------------------------

class DropPath(nn.Module):
    """Stochastic depth: drops a residual branch per sample in training (identity in eval)."""

    def __init__(self, p: float = 0.0):
        super().__init__()
        self.p = float(p)

    def forward(self, x):
        if not self.training or self.p == 0.0:
            return x
        keep = 1.0 - self.p
        mask = x.new_empty((x.shape[0],) + (1,) * (x.dim() - 1)).bernoulli_(keep)
        return x * mask / keep


class Attention(nn.Module):
    """Multi-head self-attention on (N, L, D) tokens: one qkv projection, softmax(q k^T / sqrt(d)) v."""

    def __init__(self, dim: int, heads: int, dropout: float = 0.0):
        super().__init__()
        if dim % heads:
            raise ModelError(f"Segmenter: embedding dim {dim} is not divisible by {heads} heads")
        self.heads = heads
        self.head_dim = dim // heads
        self.scale = self.head_dim ** -0.5
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        self.drop = nn.Dropout(dropout)

    def forward(self, x):
        n, _, dim = x.shape
        # (N, L, 3, heads, hd) -> (3, N, heads, L, hd); -1 keeps L symbolic in the traced graph
        qkv = self.qkv(x).reshape(n, -1, 3, self.heads, self.head_dim).permute(2, 0, 3, 1, 4)
        q, k, v = qkv[0], qkv[1], qkv[2]
        attn = torch.matmul(q * self.scale, k.transpose(-2, -1)).softmax(dim=-1)
        out = torch.matmul(self.drop(attn), v)  # (N, heads, L, hd)
        out = out.transpose(1, 2).reshape(n, -1, dim)
        return self.drop(self.proj(out))


class Block(nn.Module):
    """Pre-norm transformer block: x + attn(LN(x)), then x + MLP(LN(x)) (GELU, ratio ``mlp_ratio``)."""

    def __init__(self, dim: int, heads: int, mlp_ratio: float = 4.0, dropout: float = 0.0,
                 drop_path: float = 0.0):
        super().__init__()
        hidden = int(dim * mlp_ratio)
        self.norm1 = nn.LayerNorm(dim)
        self.attn = Attention(dim, heads, dropout)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(), nn.Dropout(dropout),
                                 nn.Linear(hidden, dim), nn.Dropout(dropout))
        self.drop_path = DropPath(drop_path)

    def forward(self, x):
        x = x + self.drop_path(self.attn(self.norm1(x)))
        return x + self.drop_path(self.mlp(self.norm2(x)))


class ViTEncoder(nn.Module):
    """Patch embedding + interpolated learned position embeddings + pre-norm blocks + final LN.

    Returns the patch tokens (N, gh*gw, D) and the grid size (gh, gw).
    """

    def __init__(self, in_channels: int = 3, patch_size: int = 16, embed_dim: int = 192,
                 depth: int = 6, heads: int = 3, mlp_ratio: float = 4.0, ref_grid=(24, 30),
                 dropout: float = 0.0, drop_path: float = 0.0):
        super().__init__()
        self.patch_size = patch_size
        self.patch_embed = nn.Conv2d(in_channels, embed_dim, patch_size, stride=patch_size)
        # stored as an image (1, D, gh, gw) so resizing it is one bilinear interpolate
        self.pos_embed = nn.Parameter(torch.zeros(1, embed_dim, *ref_grid))
        self.pos_drop = nn.Dropout(dropout)
        rates = [drop_path * i / max(1, depth - 1) for i in range(depth)]  # linear decay rule
        self.blocks = nn.ModuleList(Block(embed_dim, heads, mlp_ratio, dropout, r) for r in rates)
        self.norm = nn.LayerNorm(embed_dim)

    def forward(self, x):
        x = self.patch_embed(x)                      # (N, D, gh, gw)
        gh, gw = x.shape[-2], x.shape[-1]
        pos = F.interpolate(self.pos_embed, size=(gh, gw), mode="bilinear", align_corners=False)
        x = self.pos_drop((x + pos).flatten(2).transpose(1, 2))  # (N, gh*gw, D)
        for block in self.blocks:
            x = block(x)
        return self.norm(x), (gh, gw)


class MaskTransformer(nn.Module):
    """The paper's decoder: class embeddings as tokens next to the patch tokens, joint
    transformer blocks, masks = normalised patches . normalised classes, mask norm."""

    def __init__(self, num_classes: int, encoder_dim: int, dim: int = 192, depth: int = 2,
                 heads: int = 3, mlp_ratio: float = 4.0, dropout: float = 0.0, drop_path: float = 0.0):
        super().__init__()
        self.num_classes = num_classes
        self.scale = dim ** -0.5
        self.proj_dec = nn.Linear(encoder_dim, dim)
        self.cls_emb = nn.Parameter(torch.zeros(1, num_classes, dim))
        rates = [drop_path * i / max(1, depth - 1) for i in range(depth)]
        self.blocks = nn.ModuleList(Block(dim, heads, mlp_ratio, dropout, r) for r in rates)
        self.decoder_norm = nn.LayerNorm(dim)
        self.proj_patch = nn.Parameter(self.scale * torch.randn(dim, dim))
        self.proj_classes = nn.Parameter(self.scale * torch.randn(dim, dim))
        self.mask_norm = nn.LayerNorm(num_classes)

    def forward(self, x):
        x = self.proj_dec(x)
        x = torch.cat([x, self.cls_emb.expand(x.shape[0], -1, -1)], 1)
        for block in self.blocks:
            x = block(x)
        x = self.decoder_norm(x)
        k = self.num_classes
        patches, classes = x[:, :-k], x[:, -k:]  # constant class count: export-friendly slicing
        patches = F.normalize(patches @ self.proj_patch, dim=-1)
        classes = F.normalize(classes @ self.proj_classes, dim=-1)
        masks = patches @ classes.transpose(1, 2)  # (N, L, K), cosine similarities
        return self.mask_norm(masks)


class LinearDecoder(nn.Module):
    """The paper's linear baseline: per-patch linear classifier."""

    def __init__(self, num_classes: int, encoder_dim: int):
        super().__init__()
        self.head = nn.Linear(encoder_dim, num_classes)

    def forward(self, x):
        return self.head(x)


# --- model -----------------------------------------------------------------------------

class Segmenter(SegmentationModel):
    def __init__(self, num_classes: int, patch_size: int = 16, embed_dim: int = 192, depth: int = 6,
                 heads: int = 3, mlp_ratio: float = 4.0, decoder: str = "mask", decoder_depth: int = 2,
                 decoder_dim: int | None = None, ref_size=(384, 480), dropout: float = 0.0,
                 drop_path: float = 0.1, in_channels: int = 3):
        super().__init__(num_classes)
        if decoder not in DECODERS:
            raise ModelError(f"Segmenter decoder must be one of {', '.join(DECODERS)}, got '{decoder}'")
        if patch_size not in PATCH_SIZES:
            raise ModelError(f"Segmenter patch_size must be one of {', '.join(map(str, PATCH_SIZES))}, "
                             f"got {patch_size}")
        if depth < 1 or decoder_depth < 1:
            raise ModelError(f"Segmenter depth and decoder_depth must be at least 1, got {depth}, {decoder_depth}")
        ref_h, ref_w = (ref_size, ref_size) if isinstance(ref_size, int) else ref_size
        if ref_h % patch_size or ref_w % patch_size:
            raise ModelError(f"Segmenter ref_size {ref_h}x{ref_w} is not a multiple of patch_size {patch_size}")
        self.size_divisor = patch_size
        self.decoder_kind = decoder
        self.ref_grid = (ref_h // patch_size, ref_w // patch_size)
        self.encoder = ViTEncoder(in_channels, patch_size, embed_dim, depth, heads, mlp_ratio,
                                  self.ref_grid, dropout, drop_path)
        if decoder == "mask":
            self.decoder = MaskTransformer(num_classes, embed_dim, decoder_dim or embed_dim, decoder_depth,
                                           heads, mlp_ratio, dropout, drop_path)
        else:
            self.decoder = LinearDecoder(num_classes, embed_dim)
        self._init_weights()

    def _init_weights(self):
        # ViT init: truncated normal (std 0.02) for linears and learned embeddings, LN to identity;
        # the patch embedding like a linear layer on the flattened patch
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.trunc_normal_(m.weight, std=0.02)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.LayerNorm):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
        pe = self.encoder.patch_embed
        nn.init.trunc_normal_(pe.weight, std=0.02)
        nn.init.zeros_(pe.bias)
        nn.init.trunc_normal_(self.encoder.pos_embed, std=0.02)
        if isinstance(self.decoder, MaskTransformer):
            nn.init.trunc_normal_(self.decoder.cls_emb, std=0.02)

    def forward_features(self, x):
        h, w = x.shape[-2], x.shape[-1]
        tokens, (gh, gw) = self.encoder(x)
        logits = self.decoder(tokens)                         # (N, gh*gw, K)
        logits = logits.transpose(1, 2).reshape(x.shape[0], self.num_classes, gh, gw)
        return F.interpolate(logits, size=(h, w), mode="bilinear", align_corners=False)


# --- builders --------------------------------------------------------------------------

@register_model("segmenter", paper=PAPER,
                description="Segmenter: ViT-Tiny-width encoder (6 blocks, patch 16) + mask transformer decoder")
def segmenter(num_classes: int, **kw) -> Segmenter:
    """Segmenter, mask-transformer decoder (``decoder="linear"`` for the linear baseline)."""
    return Segmenter(num_classes, **kw)
