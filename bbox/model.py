"""The crop network: a small dense box head on the frozen backbone's stride-16 and stride-32 feature maps.

Every cell of a 16x16 grid (at 256 px) predicts how close it is to the watch's centre (a heatmap, CenterNet
style) and the distances from its centre to the watch's four sides (FCOS style). The box is read at the
heatmap's peak, averaged over the cells that agree, so one bad cell cannot throw the crop; the peak's height
is the confidence. Regressing one box from globally pooled features was the obvious alternative; dense
prediction keeps the localisation that pooling throws away.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class CropTrunk(nn.Module):
    """The backbone up to its last feature map, also returning the stride-16 stage (and a stride-8 one folded
    into the stride-16 grid by space-to-depth, when ``c3_stage`` is set: small watches need the detail)."""

    def __init__(self, backbone: nn.Module, c4_stage: int = 4, c3_stage: int = -1) -> None:
        super().__init__()
        self.stem = nn.Sequential(backbone.conv_stem, backbone.bn1)
        self.with_c3 = c3_stage >= 0
        split = c3_stage + 1 if self.with_c3 else c4_stage + 1
        self.early = backbone.blocks[:split]
        self.middle = backbone.blocks[split : c4_stage + 1]
        self.late = backbone.blocks[c4_stage + 1 :]
        self.head = nn.Sequential(backbone.conv_head, backbone.bn2)

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        early = self.early(self.stem(images))
        c4 = self.middle(early)
        c5 = self.head(self.late(c4))
        if self.with_c3:
            c4 = torch.cat([c4, F.pixel_unshuffle(early, 2)], dim=1)
        return c4, c5


class CropHead(nn.Module):
    """Fuses the two maps and predicts a centre heatmap and side distances per cell."""

    def __init__(self, c4_channels: int = 120, c5_channels: int = 1280, width: int = 64, tower_layers: int = 1) -> None:
        super().__init__()
        self.lateral4 = nn.Conv2d(c4_channels, width, 1)
        self.lateral5 = nn.Conv2d(c5_channels, width, 1)
        layers: list[nn.Module] = []
        for _ in range(tower_layers):
            layers += [nn.Conv2d(width, width, 3, padding=1, bias=False), nn.BatchNorm2d(width), nn.ReLU(inplace=True)]
        self.tower = nn.Sequential(*layers)
        self.heat = nn.Conv2d(width, 1, 3, padding=1)
        self.sides = nn.Conv2d(width, 4, 3, padding=1)
        nn.init.constant_(self.heat.bias, -4.0)  # start by believing most cells are background

    def forward(self, c4: torch.Tensor, c5: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Heat logits (N,1,H,W) and boxes (N,4,H,W) as x0,y0,x1,y1 in 0..1 letterbox coordinates."""
        fused = self.lateral4(c4) + F.interpolate(self.lateral5(c5), size=c4.shape[-2:], mode="nearest")
        features = self.tower(fused)
        distances = F.softplus(self.sides(features)) * 0.25
        h, w = features.shape[-2:]
        ys = (torch.arange(h, dtype=distances.dtype, device=distances.device) + 0.5) / h
        xs = (torch.arange(w, dtype=distances.dtype, device=distances.device) + 0.5) / w
        cy, cx = ys.view(1, h, 1).expand(1, h, w), xs.view(1, 1, w).expand(1, h, w)
        boxes = torch.cat(
            [cx - distances[:, 0:1], cy - distances[:, 1:2], cx + distances[:, 2:3], cy + distances[:, 3:4]], dim=1
        )
        return self.heat(features), boxes


class CropNet(nn.Module):
    """Trunk + head as one module: what the ONNX engine exports and runs."""

    def __init__(self, trunk: CropTrunk, head: CropHead) -> None:
        super().__init__()
        self.trunk = trunk
        self.head = head

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.head(*self.trunk(images))


# ---------------------------------------------------------------------------------------- training targets
def heat_targets(boxes: torch.Tensor, present: torch.Tensor, grid: int) -> torch.Tensor:
    """Gaussian bumps at each box centre (sigma a sixth of the box side, at least half a cell); zeros without a
    watch. ``boxes`` (N,4) in 0..1, ``present`` (N,) bool."""
    centres = (torch.arange(grid, dtype=boxes.dtype, device=boxes.device) + 0.5) / grid
    cx, cy = (boxes[:, 0] + boxes[:, 2]) / 2, (boxes[:, 1] + boxes[:, 3]) / 2
    min_sigma = 0.5 / grid
    sx = ((boxes[:, 2] - boxes[:, 0]) / 6).clamp(min=min_sigma)
    sy = ((boxes[:, 3] - boxes[:, 1]) / 6).clamp(min=min_sigma)
    gx = torch.exp(-((centres.view(1, -1) - cx.view(-1, 1)) ** 2) / (2 * sx.view(-1, 1) ** 2))
    gy = torch.exp(-((centres.view(1, -1) - cy.view(-1, 1)) ** 2) / (2 * sy.view(-1, 1) ** 2))
    heat = gy.unsqueeze(2) * gx.unsqueeze(1)
    # the cell holding the centre is exactly 1 (the positive the focal loss looks for)
    ix = (cx * grid).long().clamp(0, grid - 1)
    iy = (cy * grid).long().clamp(0, grid - 1)
    heat[torch.arange(len(boxes)), iy, ix] = 1.0
    return (heat * present.view(-1, 1, 1).to(heat.dtype)).unsqueeze(1)


def focal_heat_loss(logits: torch.Tensor, target: torch.Tensor, alpha: float = 2.0, beta: float = 4.0) -> torch.Tensor:
    """CenterNet's penalty-reduced focal loss: near-centre cells are not punished as hard as far ones."""
    prob = torch.sigmoid(logits).clamp(1e-6, 1 - 1e-6)
    positive = target.eq(1.0)
    pos_loss = -((1 - prob) ** alpha) * torch.log(prob) * positive
    neg_loss = -((1 - target) ** beta) * (prob**alpha) * torch.log(1 - prob) * ~positive
    count = positive.sum().clamp(min=1)
    return (pos_loss.sum() + neg_loss.sum()) / count


def giou_loss(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """1 - GIoU per pair of (…,4) x0,y0,x1,y1 boxes: scale-free and still informative when boxes don't overlap."""
    ix0, iy0 = torch.maximum(pred[..., 0], target[..., 0]), torch.maximum(pred[..., 1], target[..., 1])
    ix1, iy1 = torch.minimum(pred[..., 2], target[..., 2]), torch.minimum(pred[..., 3], target[..., 3])
    inter = (ix1 - ix0).clamp(min=0) * (iy1 - iy0).clamp(min=0)
    area_p = (pred[..., 2] - pred[..., 0]).clamp(min=0) * (pred[..., 3] - pred[..., 1]).clamp(min=0)
    area_t = (target[..., 2] - target[..., 0]) * (target[..., 3] - target[..., 1])
    union = area_p + area_t - inter
    iou = inter / union.clamp(min=1e-9)
    hull = (torch.maximum(pred[..., 2], target[..., 2]) - torch.minimum(pred[..., 0], target[..., 0])) * (
        torch.maximum(pred[..., 3], target[..., 3]) - torch.minimum(pred[..., 1], target[..., 1])
    )
    return 1 - (iou - (hull - union) / hull.clamp(min=1e-9))


def crop_loss(
    heat_logits: torch.Tensor, boxes: torch.Tensor, true_boxes: torch.Tensor, present: torch.Tensor
) -> tuple[torch.Tensor, dict[str, float]]:
    """Focal heatmap loss + (GIoU + L1) on the boxes of cells near the centre, weighted by the target heat."""
    grid = heat_logits.shape[-1]
    target = heat_targets(true_boxes, present, grid)
    heat = focal_heat_loss(heat_logits, target)
    weights = torch.where(target > 0.3, target, torch.zeros_like(target)).squeeze(1)  # (N,H,W)
    expanded = true_boxes.view(-1, 4, 1, 1).expand_as(boxes)
    giou = giou_loss(boxes.permute(0, 2, 3, 1), expanded.permute(0, 2, 3, 1))
    l1 = (boxes - expanded).abs().sum(dim=1)
    total_weight = weights.sum().clamp(min=1e-6)
    box = ((giou + 2.0 * l1) * weights).sum() / total_weight
    loss = heat + 2.0 * box
    return loss, {"heat": float(heat.detach()), "box": float(box.detach())}
