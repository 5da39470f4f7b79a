"""Fine-tune the backbone's last stages so a phone photo of a watch lands on its catalogue shot.

A linear projection of pooled features can only re-weight what pooling kept; the last stages still see the
9x9 map, so they can learn to ignore dim light, blur and clutter. The trunk (everything before the tuned
stages) stays frozen, so its output is computed once per image and cached; only the tail trains, on CPU in
minutes per epoch and on a GPU in seconds. The tuned tail is written back into a full backbone state dict that
loads like the packaged one (``ranking.backbone.create_backbone(weights=...)``).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ranking.backbone import tuned_stage_count
from ranking.losses import info_nce
from ranking.settings import TailTrainSettings


def split_backbone(model: nn.Module, stages: int) -> tuple[nn.Sequential, nn.Sequential]:
    """(trunk, tail) of a timm EfficientNet: ``tail(trunk(x))`` equals ``model.forward_features(x)``.

    The tail is the last ``stages`` entries of ``model.blocks`` with the head conv and its norm/activation; the
    modules are shared with ``model``, so tuning the tail tunes the model.
    """
    blocks = model.blocks
    if not 1 <= stages <= len(blocks):
        raise ValueError(f"stages must be within 1..{len(blocks)}, got {stages}")
    trunk = nn.Sequential(model.conv_stem, model.bn1, *blocks[: len(blocks) - stages])
    tail = nn.Sequential(*blocks[len(blocks) - stages :], model.conv_head, model.bn2)
    return trunk, tail


def gem_pool(maps: torch.Tensor, p: float = 3.0, eps: float = 1e-6) -> torch.Tensor:
    """Generalised-mean pooling over the map, as the embedder pools (``ranking.features.gem``)."""
    return maps.clamp(min=eps).pow(p).mean(dim=(2, 3)).pow(1.0 / p)


@torch.inference_mode()
def trunk_maps(trunk: nn.Module, batch: np.ndarray, device: str) -> np.ndarray:
    """The frozen trunk's output for preprocessed images (N, 3, S, S), as float16 to halve the cache."""
    trunk.eval().to(device)
    return trunk(torch.from_numpy(np.asarray(batch, np.float32)).to(device)).half().cpu().numpy()


def _freeze_norm_statistics(tail: nn.Module) -> None:
    """Batches of one item's look-alikes would skew batch statistics: norms keep their ImageNet running stats."""
    for module in tail.modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            module.eval()


def fit_tail(
    view_maps: np.ndarray,
    owners: np.ndarray,
    catalog_maps: np.ndarray,
    tail: nn.Module,
    settings: TailTrainSettings,
    device: str = "cpu",
    on_step: Callable[[int, int, float], None] | None = None,
) -> nn.Module:
    """Train ``tail`` with InfoNCE so each photo view's pooled vector picks its own catalogue item's.

    ``view_maps[i]`` is the trunk output of a photo-like view of catalogue row ``owners[i]``; ``catalog_maps``
    holds the trunk output of each catalogue photo as indexed. Both sides go through the tail, as they will at
    search time. ``on_step(epoch, batches_done, loss)`` reports progress. Returns the tuned tail (in eval mode).
    """
    owners = np.asarray(owners, np.int64)
    if len(view_maps) != len(owners):
        raise ValueError(f"{len(view_maps)} views but {len(owners)} owners")
    views = torch.from_numpy(np.ascontiguousarray(view_maps)).to(device)  # float16: cast per batch
    catalog = torch.from_numpy(np.ascontiguousarray(catalog_maps)).to(device)
    tail = tail.to(device)
    parameters = list(tail.parameters())
    for parameter in parameters:
        parameter.requires_grad_(True)
    optimizer = torch.optim.AdamW(parameters, lr=settings.lr, weight_decay=settings.weight_decay)
    steps_per_epoch = max(1, len(owners) // settings.batch_size)
    schedule = torch.optim.lr_scheduler.OneCycleLR(
        optimizer, max_lr=settings.lr, total_steps=settings.epochs * steps_per_epoch, pct_start=0.1
    )
    generator = torch.Generator().manual_seed(settings.seed)
    # bfloat16 on a GPU: the tail's depthwise convolutions are memory-bound, and a lease is minutes long
    on_gpu = str(device).startswith("cuda")
    autocast = torch.autocast("cuda", dtype=torch.bfloat16) if on_gpu else contextlib.nullcontext()
    for epoch in range(settings.epochs):
        tail.train()
        _freeze_norm_statistics(tail)
        order = torch.randperm(len(owners), generator=generator)
        for step in range(steps_per_epoch):
            batch = order[step * settings.batch_size : (step + 1) * settings.batch_size]
            groups = torch.from_numpy(owners[batch.numpy()])
            with autocast:
                anchor_maps = tail(views[batch.to(device)].float())
                positive_maps = tail(catalog[groups.to(device)].float())
            anchor = gem_pool(anchor_maps.float(), settings.gem_p)
            positive = gem_pool(positive_maps.float(), settings.gem_p)
            loss = info_nce(anchor, positive, settings.temperature, groups.to(anchor.device))
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
            if on_step is not None:
                on_step(epoch + 1, step + 1, float(loss.item()))
    for parameter in parameters:
        parameter.requires_grad_(False)
    return tail.eval().cpu()


@torch.inference_mode()
def tail_vectors(tail: nn.Module, maps: np.ndarray, gem_p: float = 3.0, device: str = "cpu") -> np.ndarray:
    """Unit-length pooled vectors of trunk maps through ``tail`` (what the tuned backbone will embed)."""
    tail = tail.eval().to(device)
    out = []
    for start in range(0, len(maps), 256):
        chunk = torch.from_numpy(np.asarray(maps[start : start + 256])).to(device).float()
        pooled = gem_pool(tail(chunk), gem_p)
        out.append(nn.functional.normalize(pooled, dim=1).cpu().numpy())
    return np.concatenate(out).astype(np.float32)


def tail_state_dict(model: nn.Module, stages: int, start_weights: str | Path | None = None) -> dict[str, torch.Tensor]:
    """The tensors :func:`split_backbone` tunes (last ``stages`` blocks, head conv and norm), copied, under the
    full model's keys: ``create_backbone(weights=...)`` loads them over the packaged ImageNet weights. With the
    ``start_weights`` the model was created from, the earlier stages those had tuned are kept too (one stage tuned
    on from the packaged two-stage tail must not fall back to ImageNet's second-last stage)."""
    stages = max(stages, tuned_stage_count(start_weights, len(model.blocks)))
    first = len(model.blocks) - stages
    prefixes = (*(f"blocks.{i}." for i in range(first, len(model.blocks))), "conv_head.", "bn2.")
    return {key: value.detach().cpu().clone() for key, value in model.state_dict().items() if key.startswith(prefixes)}
