"""``tiefwatch train --tail-stages N``: tune the backbone's last stages on this catalogue's watches.

Once per catalogue. Each catalogue photo is shot ``views`` times by the photo simulator; the frozen trunk's output
of every view and catalogue photo is cached, and the last stages learn (``ranking.finetune``) to put each view on
its own catalogue photo. The tuned tensors go to ``models/backbone.pt`` and the workspace's ``backbone.weights``
names them, so the next ``tiefwatch index`` embeds the catalogue with them (the index must be rebuilt: its
vectors change).
"""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from tiefwatch.config import Config
from tiefwatch.index import CatalogIndex
from tiefwatch.workspace import Workspace


@dataclass
class TailTuneSummary:
    weights: str
    items: int
    views: int
    stages: int
    val_items: int
    val_recall_at_1_before: float | None  # None when nothing was held out (check_fraction 0)
    val_recall_at_1_tuned: float | None
    seconds: float
    moved_similarity_model: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def train_backbone_tail(
    workspace: Workspace | str | Path | None = None,
    config: Config | None = None,
    stages: int | None = None,
    views: int | None = None,
    epochs: int | None = None,
    exclude: set[str] | frozenset[str] = frozenset(),
    out: str | Path | None = None,
    show_progress: bool = True,
    check_fraction: float = 0.1,
) -> TailTuneSummary:
    """Tune the last ``stages`` of the backbone so photo-like views of this catalogue's watches land on their
    catalogue photos. ``check_fraction`` of the watches (at least one) is held out to report recall@1 before and
    after; 0 tunes every watch, as a shop wants once it trusts the recipe, and reports none. ``exclude`` names
    catalogue files never used (benchmark queries). Starts from the configured ``backbone.weights``."""
    from bbox.conditions import scene_simulator
    from ranking.backbone import create_backbone, get_spec, resolve_device, weights_fingerprint
    from ranking.engines import make_engine
    from ranking.features import backbone_pixels, to_network_input
    from ranking.finetune import fit_tail, split_backbone, tail_state_dict, tail_vectors
    from ranking.triplet_training import recall_at_1
    from tiefwatch.images import load_image
    from tiefwatch.progress import progress_bar
    from tiefwatch.storage import torch_save_atomic
    from tiefwatch.views import catalogue_crop, photo_view_crops

    workspace = workspace if isinstance(workspace, Workspace) else Workspace(workspace)
    config = config or workspace.load_config()
    settings = copy.deepcopy(config.train_tail)
    settings.stages = stages if stages is not None else settings.stages
    settings.views = views if views is not None else settings.views
    settings.epochs = epochs if epochs is not None else settings.epochs
    started = time.perf_counter()
    index = CatalogIndex.load(workspace.index_path, config)
    rows = np.array([i for i, e in enumerate(index.entries) if Path(e.path).name not in exclude], np.int64)
    if len(rows) < 2:
        raise ValueError("tuning needs at least 2 catalogue photos outside the excluded ones")
    if not 0.0 <= check_fraction < 1.0:
        raise ValueError(f"check_fraction must be in [0, 1), not {check_fraction}")
    order = np.random.default_rng(config.seed).permutation(rows)
    val_rows = np.sort(order[: max(1, int(len(order) * check_fraction))] if check_fraction else [])

    device = resolve_device(config.embed.device)
    base_weights = config.backbone.weights
    model = create_backbone(config.backbone.name, weights=base_weights)
    trunk, tail = split_backbone(model, settings.stages)
    spec, size, light = get_spec(config.backbone.name), config.backbone.image_size, config.backbone.light_norm
    mean, inv_std = np.float32(spec.mean) * 255.0, 1.0 / (np.float32(spec.std) * 255.0)

    # The frozen trunk runs where the embedder would (ONNX Runtime on a CPU: four times eager torch's speed there)
    key = f"tail-trunk:{settings.stages}:{weights_fingerprint(config.backbone.name, base_weights)}"
    run_trunk = make_engine(lambda: trunk, size, device, config.embed.engine, workspace.cache_dir, key)

    def trunk_maps(crops: list[np.ndarray]) -> np.ndarray:
        """The trunk's output for crops, preprocessed as the embedder does, as float16 to halve the cache."""
        pixels = to_network_input(np.stack([backbone_pixels(c, size, light) for c in crops]), mean, inv_std)
        return run_trunk(pixels)[0].astype(np.float16)

    simulator = scene_simulator(settings.conditions, settings.seed)
    rng = np.random.default_rng(settings.seed)
    pad = config.crop.pad
    batch = max(1, config.embed.batch_size)
    catalog_maps: list[np.ndarray] = []
    view_maps: list[np.ndarray] = []
    owners: list[int] = []
    pending: list[np.ndarray] = []
    with progress_bar(
        "Photo-like views", total=len(index) + len(rows) * settings.views, enabled=show_progress
    ) as advance:
        for start in range(0, len(index), batch):
            images = [load_image(index.path_of(i)) for i in range(start, min(start + batch, len(index)))]
            catalog_maps.append(trunk_maps([catalogue_crop(im, pad) for im in images]))
            advance(len(images))
        for row in rows.tolist():
            pending += photo_view_crops(
                load_image(index.path_of(row)), settings.views, simulator, rng, pad, settings.jitter
            )
            owners += [row] * settings.views
            if len(pending) >= batch:
                view_maps.append(trunk_maps(pending))
                advance(len(pending))
                pending = []
        if pending:
            view_maps.append(trunk_maps(pending))
            advance(len(pending))
    catalog = np.concatenate(catalog_maps)
    all_views, all_owners = np.concatenate(view_maps), np.asarray(owners, np.int64)
    is_val = np.isin(all_owners, val_rows)

    def held_out_recall(net) -> float | None:
        if not is_val.any():
            return None
        return recall_at_1(
            tail_vectors(net, all_views[is_val], settings.gem_p, device), all_owners[is_val],
            tail_vectors(net, catalog, settings.gem_p, device),
        )  # fmt: skip

    before = held_out_recall(tail)
    steps = settings.epochs * max(1, int((~is_val).sum()) // settings.batch_size)
    with progress_bar("Tuning the backbone's last stages", total=steps, enabled=show_progress) as advance:
        tuned = fit_tail(
            all_views[~is_val], all_owners[~is_val], catalog, tail, settings, device,
            on_step=lambda _epoch, _step, _loss: advance(1),
        )  # fmt: skip
    after = held_out_recall(tuned)

    weights_path = Path(out) if out else workspace.models_dir / "backbone.pt"
    # the tuned tail is ``model``'s; stages the starting weights had tuned are kept with it
    torch_save_atomic(tail_state_dict(model, settings.stages, base_weights), weights_path)
    tuned_config = copy.deepcopy(config)
    tuned_config.backbone.weights = str(weights_path.resolve())
    tuned_config.save(weights_path.with_suffix(".config.yaml"))
    moved = None
    if out is None:
        workspace.save_config(tuned_config, sections=("backbone",))  # the workspace now embeds with the tuned tail
        stale = workspace.similarity_model_path
        if stale.exists():  # trained on the old vectors: kept, but out of the way of searches
            target = stale.with_name("similarity.before-tail.pt")
            stale.replace(target)
            moved = str(target)
    return TailTuneSummary(
        str(weights_path),
        len(rows) - len(val_rows),
        settings.views,
        settings.stages,
        len(val_rows),
        before,
        after,
        time.perf_counter() - started,
        moved,
    )
