"""Scale-out indexing on Ray (``tiefwatch index CATALOG --ray [ADDRESS]``; the optional ``ray`` extra).

Only the embedding moves: the driver lists the catalogue, decides what is new or changed, and saves the index
(``index.build_index``) exactly as a local run does. The new photos become a Ray Data dataset, and
``map_batches`` sends batches to a pool of actors, each of which builds its own ``Pipeline`` once and runs
``index.embed_chunk`` on them: the same decoding, framing, simulated views (seeded by each file's hash) and colour
descriptors as a local run, so the index is the same one (vectors within float rounding, same rows, same
signature). Where the cluster has GPUs, each actor takes one and embeds with torch on it.

Workers read the photos and the workspace's models by path: on a cluster, the catalogue and the workspace must be
on a filesystem every node mounts at the same path, and tiefwatch installed on every node.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from tiefwatch.config import Config
from tiefwatch.images import ImageReadError
from tiefwatch.index import Embedded, EmbedItems, Item, Outcome, embed_chunk, embed_locally
from tiefwatch.pipeline import Pipeline
from tiefwatch.progress import progress_bar
from tiefwatch.workspace import Workspace

log = logging.getLogger(__name__)

CPUS_PER_ACTOR = 1  # one model per core: on CPU, ONNX Runtime gains little from a second thread per image


class RayUnavailableError(RuntimeError):
    """``--ray`` was asked for, but Ray (Ray Data) is not installed here."""


def _import_ray() -> Any:
    try:
        import ray
        import ray.data  # Ray Data comes with the ray[data] extra, not with ray alone
    except ImportError as error:
        raise RayUnavailableError(f"indexing on Ray needs Ray Data ({error}): pip install 'tiefwatch[ray]'") from error
    return ray


class EmbedActor:
    """One model per actor: built once in ``__init__``, then fed batch after batch by ``map_batches``.

    A CPU actor (one core) prepares and embeds each batch in turn (``index.embed_chunk``). A GPU actor has the
    node's cores beside its GPU: it prepares in that many threads while the GPU embeds (``index.embed_locally``,
    a local run's loop), or the photo simulation of ``index.views`` on one core would keep the GPU waiting."""

    def __init__(self, workspace_root: str, config: dict[str, Any], threads: int, gpu: bool = False) -> None:
        from tiefwatch.models import load_cropper

        # Ray gives the actor ``threads`` cores; ONNX Runtime would otherwise size its pool by the whole node.
        os.environ["TIEFWATCH_THREADS"] = str(max(1, threads))
        workspace = Workspace(workspace_root)
        self.config = Config.from_dict(config)
        self.threaded = gpu
        if gpu:
            self.config.embed.decode_workers = max(1, threads)  # how many prepare: the vectors do not depend on it
        cropper = load_cropper(self.config, workspace) if self.config.crop.enabled else None
        self.pipeline = Pipeline.from_config(self.config, cropper, cache_dir=workspace.cache_dir)

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        items: list[Item] = [
            (str(rel), Path(str(path)), int(size), int(mtime), str(sha1), bool(existed))
            for rel, path, size, mtime, sha1, existed in zip(
                batch["rel"], batch["path"], batch["size"], batch["mtime"], batch["sha1"], batch["existed"], strict=True
            )
        ]
        if self.threaded:
            outcomes = [o for _, chunk in embed_locally(self.pipeline, items, show_progress=False) for o in chunk]
        else:
            outcomes = embed_chunk(self.pipeline, items)
        return pack(outcomes, batch["n"], self.pipeline)


def pack(outcomes: list[Outcome], numbers: np.ndarray, pipeline: Pipeline) -> dict[str, np.ndarray]:
    """Outcomes as the columns of a Ray Data batch: vector and colour side by side in one float row (a colour of
    width 0 would be an empty tensor column), boxes as NaN where none, and each error's message and reason."""
    count, dim, colour_dim = len(outcomes), pipeline.embedder.dim, pipeline.colour_dim
    features = np.zeros((count, dim + colour_dim), np.float32)
    boxes = np.full((count, 4), np.nan, np.float64)
    views = np.zeros(count, bool)
    messages, reasons = [""] * count, [""] * count
    for row, outcome in enumerate(outcomes):
        if isinstance(outcome, ImageReadError):
            messages[row], reasons[row] = str(outcome), outcome.reason
            continue
        features[row, :dim], features[row, dim:] = outcome.vector, outcome.colour
        if outcome.box is not None:
            boxes[row] = outcome.box
        views[row] = outcome.with_views
    return {
        "n": np.asarray(numbers, np.int64),
        "features": features,
        "box": boxes,
        "views": views,
        "message": np.array(messages, dtype=object),
        "reason": np.array(reasons, dtype=object),
    }


def unpack(batch: dict[str, np.ndarray], items: list[Item], dim: int) -> tuple[list[Item], list[Outcome]]:
    """``pack``'s columns back into the chunk of items they answer and their outcomes."""
    chunk: list[Item] = []
    outcomes: list[Outcome] = []
    for n, features, box, views, message, reason in zip(
        batch["n"], batch["features"], batch["box"], batch["views"], batch["message"], batch["reason"], strict=True
    ):
        item = items[int(n)]
        chunk.append(item)
        if message:
            outcomes.append(ImageReadError(str(message), str(item[1]), str(reason)))
            continue
        features = np.asarray(features, np.float32)
        box = None if np.isnan(box[0]) else tuple(float(v) for v in box)
        outcomes.append(Embedded(features[:dim], features[dim:], box, bool(views)))  # type: ignore[arg-type]
    return chunk, outcomes


def actor_resources(resources: dict[str, float]) -> tuple[int, dict[str, float]]:
    """Pool size and each actor's resources for a cluster's totals: one actor per GPU where there are GPUs (the
    model runs on it, and the cores are shared among them for preparing photos), else one per ``CPUS_PER_ACTOR``
    cores."""
    gpus = int(resources.get("GPU", 0))
    if gpus:
        return gpus, {"num_cpus": max(1, int(resources.get("CPU", 1) // gpus)), "num_gpus": 1}
    return max(1, int(resources.get("CPU", 1) // CPUS_PER_ACTOR)), {"num_cpus": CPUS_PER_ACTOR}


def ray_embedder(workspace: Workspace, config: Config, address: str = "") -> EmbedItems:
    """An ``index.build_index`` embedding step that runs on Ray at ``address`` ("" for Ray's default: the
    ``RAY_ADDRESS`` cluster, else a local Ray). A Ray this process already started (``ray.init``) is used as it
    is, and left running."""
    ray = _import_ray()  # before any work: a missing extra is a one-line error, not a traceback later

    def embed(pipeline: Pipeline, items: list[Item], show_progress: bool) -> Iterator[tuple[list[Item], list[Outcome]]]:
        if not items:
            return
        started_here = not ray.is_initialized()
        if started_here:
            ray.init(address=address or None, include_dashboard=False, log_to_driver=False, configure_logging=False)
        try:
            yield from _run(ray, workspace, config, pipeline, items, show_progress)
        finally:
            if started_here:
                ray.shutdown()

    return embed


def _run(
    ray: Any, workspace: Workspace, config: Config, pipeline: Pipeline, items: list[Item], show_progress: bool
) -> Iterator[tuple[list[Item], list[Outcome]]]:
    context = ray.data.DataContext.get_current()
    context.enable_progress_bars = False  # ours counts photos
    size, resources = actor_resources(ray.cluster_resources())
    batch_size = max(1, config.embed.batch_size)
    rows = [
        {"n": n, "rel": rel, "path": str(path), "size": size_, "mtime": mtime, "sha1": sha1, "existed": existed}
        for n, (rel, path, size_, mtime, sha1, existed) in enumerate(items)
    ]
    log.info("embedding %d photos on Ray: %d actors, %s each", len(items), size, resources)
    threads, gpu = int(resources["num_cpus"]), "num_gpus" in resources
    dataset = ray.data.from_items(rows, override_num_blocks=max(1, min(len(rows), size * 4))).map_batches(
        EmbedActor,
        fn_constructor_args=(str(workspace.root.resolve()), config.to_dict(), threads, gpu),
        batch_size=batch_size * (2 * threads if gpu else 1),  # a GPU actor's threads look a few batches ahead
        batch_format="numpy",
        compute=ray.data.ActorPoolStrategy(size=size),
        **resources,
    )
    answered: dict[int, Outcome] = {}
    with progress_bar("Embedding catalogue on Ray", total=len(items), enabled=show_progress) as advance:
        for batch in dataset.iter_batches(batch_size=None, batch_format="numpy"):
            chunk, outcomes = unpack(batch, items, pipeline.embedder.dim)
            answered.update(zip((int(n) for n in batch["n"]), outcomes, strict=True))
            advance(len(chunk))
    if len(answered) != len(items):  # nothing is saved from a partial answer
        raise RuntimeError(f"Ray returned {len(answered)} of {len(items)} photos; the index was left as it was")
    # in the catalogue's order, as a local run reports them (batches come back in any order)
    yield items, [answered[n] for n in range(len(items))]
