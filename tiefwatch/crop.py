"""``tiefwatch crop`` and ``tiefwatch train-bbox``: the crop stage as application verbs.

Training data comes from the catalogue itself (or the built-in drawn watches): each photo is cut from its
white background and pasted into cluttered scenes, so the true box is known without anyone drawing it.
"""

from __future__ import annotations

import copy
import csv
import hashlib
import json
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from bbox.box import BoundingBox
from bbox.netio import CropNetSpec
from bbox.predict import checkpoint_bytes
from bbox.train import CachedFeatures, EpochReport, extract_features, fit, split_rows, synthesise
from tiefwatch.config import Config
from tiefwatch.images import ImageReadError, expand_queries, image_size, list_images, load_image, save_image
from tiefwatch.models import load_cropper
from tiefwatch.pipeline import second_look
from tiefwatch.progress import progress_bar, stderr_console
from tiefwatch.storage import torch_save_atomic, write_bytes_atomic
from tiefwatch.workspace import Workspace

log = logging.getLogger(__name__)


# ---------------------------------------------------------------------------------------------- crop
@dataclass
class CropResult:
    query: str
    box: BoundingBox | None
    confidence: float | None
    crop: str | None
    overlay: str | None = None
    error: str | None = None

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "query": self.query,
            "box": [round(v, 1) for v in self.box.as_list()] if self.box else None,
            "confidence": None if self.confidence is None else round(self.confidence, 4),
            "crop": self.crop,
        }
        if self.overlay:
            out["overlay"] = self.overlay
        if self.error:
            out["error"] = self.error
        return out


def crop_images(
    images: Sequence[str | Path],
    workspace: Workspace | str | Path | None = None,
    out_dir: str | Path | None = None,
    overlay: bool = False,
    config: Config | None = None,
) -> list[CropResult]:
    """Find the watch in each image; write padded square crops (and box overlays) to ``out_dir``."""
    from tiefwatch.sheet import draw_box

    workspace = workspace if isinstance(workspace, Workspace) else Workspace(workspace)
    config = config or workspace.load_config()
    cropper = load_cropper(config, workspace, required=True)
    paths = expand_queries(images, config.index.extensions)
    out = Path(out_dir) if out_dir else None
    results: list[CropResult] = []
    for path in paths:
        try:
            image = load_image(path)
        except ImageReadError as error:
            results.append(CropResult(str(path), None, None, None, error=str(error)))
            continue
        prediction = second_look(cropper, [image], cropper.predict([image]), config.search)[0]  # as a search does
        h, w = image.shape[:2]
        crop_path = overlay_path = None
        if out is not None:
            square = prediction.box.to_square(pad=config.crop.pad, w=w, h=h)
            crop_path = str(out / f"{path.stem}_crop.jpg")
            save_image(crop_path, square.crop(image))
            if overlay:
                overlay_path = str(out / f"{path.stem}_box.jpg")
                save_image(overlay_path, draw_box(image, prediction.box.as_list()))
        box = prediction.box.scale(image_size(path)[0] / w)  # a large photo was read scaled down: its own pixels
        results.append(CropResult(str(path), box, prediction.confidence, crop_path, overlay_path))
    return results


# ---------------------------------------------------------------------------------------- train-bbox
@dataclass
class BoxTrainSummary:
    model: str
    samples: int
    epochs: list[EpochReport]
    best_val_mean_iou: float
    best_val_iou_at_50: float
    seconds: float

    def as_dict(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "samples": self.samples,
            "best_val_mean_iou": round(self.best_val_mean_iou, 4),
            "best_val_iou_at_50": round(self.best_val_iou_at_50, 4),
            "seconds": round(self.seconds, 1),
            "epochs": [r.__dict__ for r in self.epochs],
        }


def read_hand_boxes(path: Path) -> list[tuple[np.ndarray, BoundingBox]]:
    """``path,x0,y0,x1,y1`` rows (paths relative to the CSV); bad rows are an error naming the row."""
    rows = []
    with path.open(newline="") as handle:
        for number, row in enumerate(csv.DictReader(handle), start=2):
            try:
                image_path = Path(row["path"])
                image_path = image_path if image_path.is_absolute() else path.parent / image_path
                box = BoundingBox(*(float(row[k]) for k in ("x0", "y0", "x1", "y1")))
                rows.append((load_image(image_path), box))
            except (KeyError, TypeError, ValueError, FileNotFoundError) as error:
                raise ValueError(f"{path}: row {number}: {error}") from error
    return rows


def _load_sources(catalog_dir: Path | None, exclude: Sequence[str], cache: Path) -> tuple[list[np.ndarray], str]:
    """Catalogue photos to synthesise from; the built-in drawn watches when no catalogue is given."""
    if catalog_dir is None:
        from tiefwatch.synthetic import make_catalog

        items = make_catalog(cache / "builtin-watches", 400, seed=0)
        return [load_image(path) for path, _ in items], "built-in drawn watches (400)"
    excluded = set(exclude)
    paths = [p for p in list_images(catalog_dir) if p.name not in excluded]
    images = []
    for path in paths:
        try:
            images.append(load_image(path))
        except ImageReadError as error:
            log.warning("skipped %s", error)
    if not images:
        raise ValueError(f"no readable catalogue photos in {catalog_dir}")
    return images, f"{catalog_dir} ({len(images)} photos)"


def train_bbox(
    catalog_dir: str | Path | None = None,
    workspace: Workspace | str | Path | None = None,
    config: Config | None = None,
    backgrounds: Sequence[str | Path] = (),
    epochs: int | None = None,
    samples: int | None = None,
    hand_boxes: str | Path | None = None,
    exclude: Sequence[str] = (),
    resume: bool = False,
    out: str | Path | None = None,
    show_progress: bool = True,
) -> BoxTrainSummary:
    """Train the crop head on synthesised scenes of ``catalog_dir`` and save it to the workspace.

    ``exclude`` lists catalogue file names kept out of training (benchmarks query them). ``resume`` continues
    from the workspace's checkpoint with the same data.
    """
    from bbox.conditions import ConditionSimulator
    from bbox.scenery import load_backgrounds
    from bbox.synth import PhotoSimulator

    workspace = workspace if isinstance(workspace, Workspace) else Workspace(workspace)
    config = config or workspace.load_config()
    started = time.perf_counter()
    settings = copy.deepcopy(config.train_bbox)  # the flags below must not change the caller's config
    if epochs is not None:
        settings.epochs = epochs
    if samples is not None:
        settings.samples = samples
    spec = CropNetSpec(
        backbone=config.backbone.name,
        input_size=config.crop.input_size,
        c3_stage=config.crop.detail_stage,
        tower_layers=config.crop.tower_layers,
    )
    checkpoint_path = workspace.models_dir / "crop.ckpt"
    model_path = Path(out) if out else workspace.crop_model_path

    catalog = Path(catalog_dir) if catalog_dir else None
    features_key = json.dumps(
        [str(catalog), sorted(exclude), [str(b) for b in backgrounds], str(hand_boxes), settings.samples,
         settings.seed, settings.negative_fraction, settings.catalog_fraction, spec.as_dict(),
         sorted(settings.conditions.items()), settings.scene_long_side_cap]
    )  # fmt: skip
    cache_file = workspace.cache_dir / f"bbox-features-{hashlib.sha1(features_key.encode()).hexdigest()[:16]}.npz"
    features = _load_cached(cache_file, features_key)
    if features is None:
        sources, described = _load_sources(catalog, exclude, workspace.cache_dir)
        stderr_console().print(f"synthesising {settings.samples} training scenes from {described}")
        scenery = load_backgrounds(backgrounds)
        simulator = (
            ConditionSimulator(scenery, settings.conditions, settings.seed, settings.scene_long_side_cap)
            if settings.conditions
            else PhotoSimulator(scenery, seed=settings.seed)
        )
        extra = read_hand_boxes(Path(hand_boxes)) if hand_boxes else []
        rng = np.random.default_rng(settings.seed)
        total = settings.samples + len(extra)
        with progress_bar("Synthesising + backbone", total=total, enabled=show_progress) as advance:
            scenes = synthesise(sources, settings.samples, spec.input_size, simulator, settings, rng, extra)
            features = extract_features(scenes, total, spec, config.embed.engine, workspace.cache_dir, progress=advance)
        _save_cached(cache_file, features_key, features)

    samples = len(features)
    train_rows, val_rows = split_rows(samples, settings.val_fraction, settings.seed)
    train, val = features.view(train_rows), features.view(val_rows)

    head, start_epoch, optimizer_state = None, 0, None
    if resume and checkpoint_path.exists():
        state = torch.load(checkpoint_path, map_location="cpu", weights_only=True)
        if state.get("features_key") != features_key:
            raise ValueError("the checkpoint was made with other training data; train without --resume")
        from bbox.train import new_head

        head = new_head(train, spec)
        head.load_state_dict(state["head"])
        start_epoch, optimizer_state = int(state["epoch"]), state["optimizer"]
        stderr_console().print(f"resuming after epoch {start_epoch}")

    def on_epoch(report: EpochReport, current, optimizer: dict) -> None:
        stderr_console().print(
            f"epoch {report.epoch}/{settings.epochs}: train loss {report.train_loss:.4f}, val loss "
            f"{report.val_loss:.4f}, val IoU {report.val_mean_iou:.3f}, IoU≥0.5 {report.val_iou_at_50:.1%} "
            f"({report.seconds:.1f}s)"
        )
        torch_save_atomic(
            {"head": current.state_dict(), "epoch": report.epoch, "optimizer": optimizer, "features_key": features_key},
            checkpoint_path,
        )

    remaining = max(0, settings.epochs - start_epoch) * len(train)
    with progress_bar("Training crop head", total=remaining, enabled=show_progress) as advance:
        head, reports = fit(train, val, spec, settings, head, start_epoch, optimizer_state, on_epoch, advance)
    best = max(reports, key=lambda r: r.val_mean_iou) if reports else EpochReport(0, 0, 0, 0, 0)
    meta = {
        "trained_on": str(catalog) if catalog else "built-in drawn watches",
        "samples": samples,
        "settings": settings.__dict__,
        "val_mean_iou": best.val_mean_iou,
        "val_iou_at_50": best.val_iou_at_50,
        "config": config.to_dict(),
    }
    write_bytes_atomic(model_path, checkpoint_bytes(head, spec, meta))
    config.save(model_path.with_suffix(".config.yaml"))
    return BoxTrainSummary(
        str(model_path), samples, reports, best.val_mean_iou, best.val_iou_at_50, time.perf_counter() - started
    )


def _load_cached(path: Path, key: str) -> CachedFeatures | None:
    if not path.exists():
        return None
    try:
        with np.load(path, allow_pickle=False) as data:
            if str(data["key"]) != key:
                return None
            return CachedFeatures(data["c4"], data["c5"], data["boxes"], data["present"])
    except (OSError, ValueError, KeyError):
        return None


def _save_cached(path: Path, key: str, features: CachedFeatures) -> None:
    from tiefwatch.storage import write_atomic

    arrays = {"key": np.array(key), "c4": features.c4, "c5": features.c5, "boxes": features.boxes,
              "present": features.present}  # fmt: skip
    write_atomic(path, lambda handle: np.savez(handle, **arrays))
