"""Training the crop head from catalogue photos alone: synthesised scenes give true boxes for free.

The backbone stays frozen, so each synthetic scene goes through it once; the head then trains for many epochs
on the cached feature maps in seconds per epoch on two CPU cores.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from bbox.box import BoundingBox
from bbox.conditions import ConditionSimulator
from bbox.model import CropHead, CropTrunk, crop_loss
from bbox.netio import CropNetSpec, decode, letterbox, normalise
from bbox.scenery import procedural_clutter
from bbox.segment import segment_product
from bbox.settings import BoxTrainSettings
from bbox.synth import PhotoSimulator
from ranking.backbone import shared_backbone, weights_fingerprint
from ranking.engines import make_engine


@dataclass
class CachedFeatures:
    c4: np.ndarray  # N x C4 x S/16 x S/16 float16
    c5: np.ndarray  # N x C5 x S/32 x S/32 float16
    boxes: np.ndarray
    present: np.ndarray
    rows: np.ndarray | None = None  # a view: only these rows of the arrays count (see ``view``)

    def __len__(self) -> int:
        return len(self.boxes) if self.rows is None else len(self.rows)

    def _picked(self, rows: np.ndarray) -> np.ndarray:
        return rows if self.rows is None else self.rows[rows]

    def subset(self, rows: np.ndarray) -> CachedFeatures:
        """A copy of the given rows: what one training batch holds."""
        picked = self._picked(rows)
        return CachedFeatures(self.c4[picked], self.c5[picked], self.boxes[picked], self.present[picked])

    def view(self, rows: np.ndarray) -> CachedFeatures:
        """The given rows without copying: 32,000 scenes are 10 GB, and a copied train/val split doubled that."""
        return CachedFeatures(self.c4, self.c5, self.boxes, self.present, self._picked(rows))


@dataclass
class EpochReport:
    epoch: int
    train_loss: float
    val_loss: float
    val_mean_iou: float
    val_iou_at_50: float
    seconds: float = 0.0
    extra: dict = field(default_factory=dict)


def _normalised_box(box: BoundingBox, scale: float, offset: tuple[int, int], size: int) -> np.ndarray:
    ox, oy = offset
    return np.array(
        [(box.x0 * scale + ox) / size, (box.y0 * scale + oy) / size, (box.x1 * scale + ox) / size,
         (box.y1 * scale + oy) / size],
        np.float32,
    )  # fmt: skip


def synthesise(
    sources: Sequence[np.ndarray],
    count: int,
    size: int,
    simulator: PhotoSimulator | ConditionSimulator,
    settings: BoxTrainSettings,
    rng: np.random.Generator,
    hand_boxes: Sequence[tuple[np.ndarray, BoundingBox]] = (),
) -> Iterator[tuple[np.ndarray, np.ndarray, bool]]:
    """Yield (letterboxed image, normalised box, watch present) for ``count`` scenes, then the hand-boxed photos.

    Mix: photo-like scenes of catalogue watches; the catalogue photo itself (so catalogue crops are framed
    like query crops); and empty scenes (so an image without a watch gets a low confidence).
    """
    # Cut each catalogue photo out once; photos that are not on a plain background (worn, boxed) have no
    # reliable cut-out and would teach "the box is a rectangle of photo", so they are left out.
    cut_outs = [(source, segment_product(source)) for source in sources]
    cut_outs = [(source, seg) for source, seg in cut_outs if seg.on_plain_background]
    if not cut_outs:
        raise ValueError("no catalogue photo is on a plain background: nothing to synthesise from")
    for _ in range(count):
        draw = rng.random()
        if draw < settings.negative_fraction:
            h, w = int(rng.integers(240, 480)), int(rng.integers(240, 480))
            if simulator.backgrounds and rng.random() < 0.7:
                photo = simulator.backgrounds[int(rng.integers(len(simulator.backgrounds)))]
                y = int(rng.integers(0, max(1, photo.shape[0] - h)))
                x = int(rng.integers(0, max(1, photo.shape[1] - w)))
                scene = np.ascontiguousarray(photo[y : y + h, x : x + w])
            else:
                scene = procedural_clutter(h, w, rng)
            boxed, _, _ = letterbox(scene, size)
            yield boxed, np.zeros(4, np.float32), False
            continue
        source, segmentation = cut_outs[int(rng.integers(len(cut_outs)))]
        if draw < settings.negative_fraction + settings.catalog_fraction:
            box = BoundingBox.from_mask(segmentation.mask)
            boxed, scale, offset = letterbox(source, size)
            yield boxed, _normalised_box(box, scale, offset, size), True
            continue
        scene = simulator(source, rng, mask=segmentation.mask)
        boxed, scale, offset = letterbox(scene.image, size)
        yield boxed, _normalised_box(scene.box, scale, offset, size), True
    for image, box in hand_boxes:
        boxed, scale, offset = letterbox(image, size)
        yield boxed, _normalised_box(box, scale, offset, size), True


def extract_features(
    scenes: Iterator[tuple[np.ndarray, np.ndarray, bool]],
    count: int,
    spec: CropNetSpec,
    engine: str = "auto",
    cache_dir=None,
    batch_size: int = 32,
    progress: Callable[[int], None] | None = None,
) -> CachedFeatures:
    """Run the frozen trunk once over every scene; keep the two feature maps in float16."""
    trunk = CropTrunk(shared_backbone(spec.backbone), spec.c4_stage, spec.c3_stage).eval()
    runner = make_engine(
        lambda: trunk,
        spec.input_size,
        "cpu",
        engine,
        cache_dir,
        f"crop-trunk:{weights_fingerprint(spec.backbone)}:{spec}",
    )
    c4s, c5s, boxes, present = [], [], [], []
    images: list[np.ndarray] = []

    def flush() -> None:
        if images:
            c4, c5 = runner(normalise(np.stack(images)))
            c4s.append(c4.astype(np.float16))
            c5s.append(c5.astype(np.float16))
            if progress is not None:
                progress(len(images))
            images.clear()

    for image, box, has_watch in scenes:
        images.append(image)
        boxes.append(box)
        present.append(has_watch)
        if len(images) == batch_size:
            flush()
    flush()
    return CachedFeatures(np.concatenate(c4s), np.concatenate(c5s), np.stack(boxes), np.array(present, bool))


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Row-wise IoU of (N,4) x0,y0,x1,y1 arrays."""
    iw = np.clip(np.minimum(a[:, 2], b[:, 2]) - np.maximum(a[:, 0], b[:, 0]), 0, None)
    ih = np.clip(np.minimum(a[:, 3], b[:, 3]) - np.maximum(a[:, 1], b[:, 1]), 0, None)
    inter = iw * ih
    union = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1]) + (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1]) - inter
    return inter / np.maximum(union, 1e-12)


def new_head(features: CachedFeatures, spec: CropNetSpec) -> CropHead:
    return CropHead(features.c4.shape[1], features.c5.shape[1], spec.width, spec.tower_layers)


@torch.no_grad()
def evaluate(head: CropHead, features: CachedFeatures, batch_size: int = 128) -> tuple[float, np.ndarray, np.ndarray]:
    """Mean loss, IoU of each scene that has a watch, and the confidence of every scene."""
    head.eval()
    losses, ious, confidences = [], [], []
    for start in range(0, len(features), batch_size):
        part = features.subset(np.arange(start, min(start + batch_size, len(features))))
        heat, boxes = head(torch.from_numpy(part.c4).float(), torch.from_numpy(part.c5).float())
        true = torch.from_numpy(part.boxes)
        loss, _ = crop_loss(heat, boxes, true, torch.from_numpy(part.present))
        losses.append(float(loss) * len(part))
        decoded, confidence = decode(heat.numpy(), boxes.numpy())
        confidences.append(confidence)
        if part.present.any():
            ious.append(box_iou(decoded[part.present], part.boxes[part.present]))
    iou = np.concatenate(ious) if ious else np.zeros(0)
    return sum(losses) / max(len(features), 1), iou, np.concatenate(confidences)


def fit(
    train: CachedFeatures,
    val: CachedFeatures,
    spec: CropNetSpec,
    settings: BoxTrainSettings,
    head: CropHead | None = None,
    start_epoch: int = 0,
    optimizer_state: dict | None = None,
    on_epoch: Callable[[EpochReport, CropHead, dict], None] | None = None,
    on_step: Callable[[int], None] | None = None,
) -> tuple[CropHead, list[EpochReport]]:
    """AdamW with cosine decay on the cached features; keeps the head with the best validation IoU.

    ``on_epoch(report, head, optimizer_state)`` is where the caller checkpoints; passing its saved head,
    ``start_epoch`` and ``optimizer_state`` back resumes exactly where it stopped.
    """
    import time

    torch.manual_seed(settings.seed + start_epoch)
    head = head if head is not None else new_head(train, spec)
    optimizer = torch.optim.AdamW(head.parameters(), lr=settings.lr, weight_decay=settings.weight_decay)
    if optimizer_state:
        optimizer.load_state_dict(optimizer_state)
    steps_per_epoch = math.ceil(len(train) / settings.batch_size)
    total = max(1, settings.epochs * steps_per_epoch)

    def lr_at(step: int) -> float:
        warmup = min(200, total // 10)
        if step < warmup:
            return settings.lr * (step + 1) / warmup
        return settings.lr * 0.5 * (1 + math.cos(math.pi * (step - warmup) / max(1, total - warmup)))

    rng = np.random.default_rng(settings.seed)
    for _ in range(start_epoch):
        rng.permutation(len(train))  # same shuffles after a resume as without one
    best: tuple[float, dict] | None = None
    reports: list[EpochReport] = []
    step = start_epoch * steps_per_epoch
    for epoch in range(start_epoch, settings.epochs):
        started = time.perf_counter()
        head.train()
        order = rng.permutation(len(train))
        running = 0.0
        for start in range(0, len(order), settings.batch_size):
            part = train.subset(np.sort(order[start : start + settings.batch_size]))
            for group in optimizer.param_groups:
                group["lr"] = lr_at(step)
            heat, boxes = head(torch.from_numpy(part.c4).float(), torch.from_numpy(part.c5).float())
            loss, _ = crop_loss(heat, boxes, torch.from_numpy(part.boxes), torch.from_numpy(part.present))
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            running += loss.item() * len(part)
            step += 1
            if on_step is not None:
                on_step(len(part))
        val_loss, iou, _ = evaluate(head, val)
        report = EpochReport(
            epoch + 1,
            running / len(train),
            val_loss,
            float(iou.mean()) if len(iou) else 0.0,
            float((iou >= 0.5).mean()) if len(iou) else 0.0,
            time.perf_counter() - started,
        )
        reports.append(report)
        if best is None or report.val_mean_iou >= best[0]:
            best = (report.val_mean_iou, copy.deepcopy(head.state_dict()))
        if on_epoch is not None:
            on_epoch(report, head, optimizer.state_dict())
    if best is not None:
        head.load_state_dict(best[1])
    return head.eval(), reports


def split_rows(count: int, val_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    order = np.random.default_rng(seed + 7).permutation(count)
    n_val = max(1, round(count * val_fraction)) if count > 1 else 0
    return np.sort(order[n_val:]), np.sort(order[:n_val])
