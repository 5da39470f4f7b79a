"""Find the watch in photos with a trained crop network: boxes in original pixels and a confidence."""

from __future__ import annotations

import hashlib
import io
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from bbox.box import BoundingBox
from bbox.netio import CropNetSpec, decode_peaks, letterbox, normalise
from ranking.backbone import resolve_device, shared_backbone
from ranking.engines import make_engine, onnx_cache_path, write_cache_file

if TYPE_CHECKING:
    from bbox.model import CropHead, CropNet

DEFAULT_MODEL = Path(__file__).resolve().parent / "weights" / "crop_default.pt"


@dataclass(frozen=True)
class BoxPrediction:
    box: BoundingBox  # in the input image's pixels
    confidence: float  # the heatmap peak: ~1 for a clear watch, ~0 for none
    # other heat peaks at least ``alternatives_ratio`` as high as this one, highest first: where the network
    # hesitates between two things, a search can try both (``tiefwatch.search``)
    alternatives: tuple[tuple[BoundingBox, float], ...] = ()


def build_net(spec: CropNetSpec, head_state: dict | None = None) -> CropNet:
    """Trunk on the shared frozen backbone plus a (loaded) head."""
    import torch

    from bbox.model import CropHead, CropNet, CropTrunk

    trunk = CropTrunk(shared_backbone(spec.backbone), spec.c4_stage, spec.c3_stage)
    with torch.no_grad():
        probe = torch.zeros(1, 3, 64, 64, device=next(trunk.parameters()).device)
        c4, c5 = trunk.eval()(probe)
    head = CropHead(c4.shape[1], c5.shape[1], spec.width, spec.tower_layers)
    if head_state is not None:
        head.load_state_dict(head_state)
    return CropNet(trunk, head).eval()


def checkpoint_bytes(head: CropHead, spec: CropNetSpec, meta: dict) -> bytes:
    import torch

    buffer = io.BytesIO()
    torch.save({"kind": "tiefwatch-crop", "spec": spec.as_dict(), "head": head.state_dict(), "meta": meta}, buffer)
    return buffer.getvalue()


class BoxPredictor:
    """Loads a crop checkpoint once; ``predict`` takes any number of RGB images of any size."""

    def __init__(
        self,
        path: str | Path = DEFAULT_MODEL,
        device: str = "auto",
        engine: str = "auto",
        cache_dir: Path | None = None,
        batch_size: int = 16,
        refine: bool = False,
        refine_pad: float = 1.0,
        refine_below: float = 1.0,
        alternatives_ratio: float = 0.0,
        max_alternatives: int = 2,
    ) -> None:
        self.path = Path(path)
        data = self.path.read_bytes()
        self.fingerprint = f"crop:{hashlib.sha256(data).hexdigest()[:16]}"
        # The spec and meta are cached beside the ONNX graph, so a cached crop model opens without torch.
        header_path = onnx_cache_path(cache_dir, self.fingerprint, 0).with_suffix(".crop.json")
        header = _read_header(header_path)
        checkpoint: dict[str, Any] | None = None
        if header is None:
            checkpoint = _load_checkpoint(data, self.path)
            header = {"spec": checkpoint["spec"], "meta": checkpoint.get("meta", {})}
            write_cache_file(header_path, json.dumps(header, default=str).encode())
        self.spec = CropNetSpec(**header["spec"])
        self.meta = header["meta"]
        self.batch_size = batch_size
        self.refine = refine
        self.refine_pad = refine_pad
        self.refine_below = refine_below  # only boxes whose long side is below this share of the image's
        self.alternatives_ratio = alternatives_ratio  # 0: the highest peak alone
        self.max_alternatives = max_alternatives
        self.engine = make_engine(
            lambda: build_net(self.spec, (checkpoint or _load_checkpoint(data, self.path))["head"]),
            self.spec.input_size,
            resolve_device(device),
            engine,
            cache_dir,
            self.fingerprint,
        )

    def predict(self, images: Sequence[np.ndarray]) -> list[BoxPrediction]:
        """One box per image; with ``refine`` a second look at a zoomed square around a first box that is small
        (long side below ``refine_below`` of the image's): a large watch is already seen in full detail."""
        first = self._predict_once(images)
        if not self.refine:
            return first
        out = list(first)
        chosen, regions, crops = [], [], []
        for number, (image, prediction) in enumerate(zip(images, first, strict=True)):
            h, w = image.shape[:2]
            if max(prediction.box.width, prediction.box.height) >= self.refine_below * max(h, w):
                continue
            region = prediction.box.to_square(pad=self.refine_pad, w=w, h=h)
            chosen.append(number)
            regions.append(region)
            crops.append(region.crop(image))
        second = self._predict_once(crops) if crops else []
        for number, region, zoomed in zip(chosen, regions, second, strict=True):
            h, w = images[number].shape[:2]
            box = zoomed.box
            moved = BoundingBox(box.x0 + region.x0, box.y0 + region.y0, box.x1 + region.x0, box.y1 + region.y0)
            out[number] = BoxPrediction(moved.clip(w, h), first[number].confidence, first[number].alternatives)
        return out

    def look_closer(
        self, images: Sequence[np.ndarray], predictions: Sequence[BoxPrediction], below: float, window: float = 0.6
    ) -> list[BoxPrediction]:
        """A second look where the first was unsure (confidence below ``below``): the photo again as five
        overlapping windows (corners and centre, ``window`` of its sides each), so a watch a few pixels tall in
        the letterboxed photo is seen nearly twice as large. A window's peak that is surer than the first look
        becomes the box; the first box and the other windows' peaks stay as alternatives (``closer_look``)."""
        out = list(predictions)
        unsure = [number for number, p in enumerate(predictions) if p.confidence < below]
        if not unsure:
            return out
        placed, crops = [], []
        for number in unsure:
            h, w = images[number].shape[:2]
            for region in zoom_windows(w, h, window):
                placed.append((number, region))
                crops.append(region.crop(images[number]))
        seen: dict[int, list[tuple[BoundingBox, float]]] = {number: [] for number in unsure}
        for (number, region), found in zip(placed, self._predict_once(crops), strict=True):
            h, w = images[number].shape[:2]
            for box, confidence in ((found.box, found.confidence), *found.alternatives):
                moved = BoundingBox(box.x0 + region.x0, box.y0 + region.y0, box.x1 + region.x0, box.y1 + region.y0)
                seen[number].append((moved.clip(w, h), confidence))
        ratio = self.alternatives_ratio
        limit = self.max_alternatives if ratio > 0 else 0
        for number in unsure:
            out[number] = closer_look(predictions[number], seen[number], ratio, limit)
        return out

    def _predict_once(self, images: Sequence[np.ndarray]) -> list[BoxPrediction]:
        out: list[BoxPrediction] = []
        size = self.spec.input_size
        for start in range(0, len(images), self.batch_size):
            chunk = images[start : start + self.batch_size]
            boxed = [letterbox(image, size) for image in chunk]
            heat, boxes = self.engine(normalise(np.stack([b[0] for b in boxed])))
            ratio = self.alternatives_ratio if self.alternatives_ratio > 0 else 1.0
            limit = 1 + (self.max_alternatives if self.alternatives_ratio > 0 else 0)
            peaks = decode_peaks(heat, boxes, ratio=ratio, limit=limit)
            for image, (_, scale, offset), found in zip(chunk, boxed, peaks, strict=True):
                h, w = image.shape[:2]
                placed = [(_to_image(box, size, scale, offset, w, h), heat_) for box, heat_ in found]
                out.append(BoxPrediction(placed[0][0], placed[0][1], tuple(placed[1:])))
        return out


def zoom_windows(w: int, h: int, window: float) -> list[BoundingBox]:
    """Four corner windows and a centre one, each ``window`` of the photo's width and height, in its pixels."""
    tw, th = max(1, round(w * window)), max(1, round(h * window))
    corners = [(0, 0), (w - tw, 0), (0, h - th), (w - tw, h - th), ((w - tw) // 2, (h - th) // 2)]
    return [BoundingBox(float(x), float(y), float(x + tw), float(y + th)) for x, y in corners]


def closer_look(
    first: BoxPrediction, found: Sequence[tuple[BoundingBox, float]], ratio: float, limit: int, same: float = 0.5
) -> BoxPrediction:
    """Merge a second look's peaks (``found``, in photo pixels) into the first prediction: the surest peak wins
    where it is surer than the first; alternatives are the other peaks at least ``ratio`` as sure, then the first
    box and its own alternatives, without near-duplicates (IoU above ``same``), at most ``limit`` of them."""
    ranked = sorted(found, key=lambda item: -item[1])
    if not ranked or ranked[0][1] <= first.confidence:
        return first
    best_box, best = ranked[0]
    pool = [(b, c) for b, c in ranked[1:] if c >= ratio * best] + [(first.box, first.confidence), *first.alternatives]
    kept: list[tuple[BoundingBox, float]] = []
    for box, confidence in pool:
        if len(kept) >= limit:
            break
        if all(box.iou(other) <= same for other, _ in [(best_box, best), *kept]):
            kept.append((box, confidence))
    return BoxPrediction(best_box, best, tuple(kept))


def _to_image(box: np.ndarray, size: int, scale: float, offset: tuple[int, int], w: int, h: int) -> BoundingBox:
    """A 0..1 letterbox box -> the original image's pixels, clipped to it."""
    ox, oy = offset
    x0, y0, x1, y1 = (box * size - np.array([ox, oy, ox, oy])) / scale
    x0, x1 = sorted((float(np.clip(x0, 0, w)), float(np.clip(x1, 0, w))))
    y0, y1 = sorted((float(np.clip(y0, 0, h)), float(np.clip(y1, 0, h))))
    return BoundingBox(x0, y0, x1, y1)


def _load_checkpoint(data: bytes, path: Path) -> dict[str, Any]:
    import torch

    checkpoint = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    if not isinstance(checkpoint, dict) or checkpoint.get("kind") != "tiefwatch-crop":
        raise ValueError(f"{path} is not a tiefwatch crop model")
    return checkpoint


def _read_header(path: Path) -> dict[str, Any] | None:
    try:
        header = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return header if isinstance(header, dict) and "spec" in header and "meta" in header else None
