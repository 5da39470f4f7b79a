"""``tiefwatch train-triplets``: learn the similarity people judge from anchor/near/far triplets.

Triplets name catalogue photos; their backbone vectors are already in the index, so training runs on cached
vectors (seconds, not hours) and the trained network re-ranks FAISS candidates at search time.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch

from ranking.attributes import choose_attribute_blend, fit_with_shots
from ranking.colour import ColourScaling
from ranking.rerank import SimilarityReranker, join_colours, keep_nearest_order, prepare_inputs, sure_of_nearest
from ranking.settings import TripletTrainSettings
from ranking.similarity import SimilarityNet, colour_state, from_checkpoint, to_checkpoint
from ranking.triplet_training import TripletEpochReport, fit_triplets, split_by_anchor
from tiefwatch.attribute_labels import AttributeLabels, index_row, read_attribute_labels
from tiefwatch.config import Config
from tiefwatch.index import CatalogIndex
from tiefwatch.progress import progress_bar, stderr_console
from tiefwatch.storage import torch_save_atomic
from tiefwatch.triplets import read_triplets
from tiefwatch.workspace import Workspace


@dataclass
class TripletTrainSummary:
    model: str
    triplets: int
    duplicates: int
    train_triplets: int
    val_triplets: int
    margin: float
    val_accuracy: float
    backbone_val_accuracy: float
    epochs: list[TripletEpochReport]
    seconds: float
    attributes: dict[str, Any] | None = None  # with --attributes: labelled photos and the cross-validated blend
    held_out_skipped: int = 0  # triplets naming an excluded photo (--holdout)

    def as_dict(self) -> dict[str, Any]:
        return {
            **{k: v for k, v in self.__dict__.items() if k != "epochs"},
            "epochs": [r.as_dict() for r in self.epochs],
        }


def triplet_rows(csv_path: Path, index: CatalogIndex) -> tuple[np.ndarray, int]:
    """The CSV's triplets as index rows; a photo missing from the index is an error naming it."""
    triplet_set = read_triplets(csv_path, catalog_root=index.root)
    row_of = {entry.path: i for i, entry in enumerate(index.entries)}
    rows = []
    for number, triplet in enumerate(triplet_set.triplets, start=1):
        ids = []
        for path in (triplet.anchor, triplet.near, triplet.far):
            row = index_row(path, row_of, index.root)
            if row is None:
                raise ValueError(f"{csv_path}: triplet {number}: {path} is not in the index; run `tiefwatch index`")
            ids.append(row)
        rows.append(ids)
    if not rows:
        raise ValueError(f"{csv_path}: no triplets")
    return np.asarray(rows, np.int64), triplet_set.duplicates


def train_triplets(
    csv_path: str | Path,
    workspace: Workspace | str | Path | None = None,
    config: Config | None = None,
    epochs: int | None = None,
    resume: bool = False,
    out: str | Path | None = None,
    verbose: bool = True,
    fine_tune: bool = False,
    views: int | None = None,
    attributes: str | Path | None = None,
    exclude: Collection[str] = frozenset(),
) -> TripletTrainSummary:
    """Train the re-ranking network on the workspace index's vectors and save it beside the index.

    ``views`` (default ``train_triplets.views``) photo-like shots of every training anchor are also used as the
    anchor of that anchor's triplets, plus one "its own catalogue photo beats its closest look-alike" triplet per
    shot: a user's query is a photo, not a catalogue shot, and the exact watch must stay first.

    ``fine_tune`` starts from the workspace's current similarity model (e.g. the photo-invariance projection of
    ``tiefwatch train``) instead of a fresh one; the held-out triplets decide whether the result is kept better.

    ``attributes`` (an attribute CSV, ``tiefwatch.attribute_labels``) adds attribute heads to the model; how
    strongly they count in the score is cross-validated over the labelled photos (``ranking.attributes``), among the
    shares that keep the exact watch first for photo-like shots of other catalogue watches (``IdentityCheck``).

    ``exclude`` names catalogue photos (file names) kept out of the training data: triplets and labels naming one
    are skipped and counted, and no shot is taken of one (a benchmark's query watches). They stay in the index,
    so they can still be a FAISS candidate or the look-alike of another watch's identity triplet.

    Where the index keeps colour descriptors (``index.colour``) and ``train_triplets.colour_weight`` is above 0,
    the model compares them too (``ranking.colour``); a fine-tuned or resumed model keeps its own choice.
    """
    workspace = workspace if isinstance(workspace, Workspace) else Workspace(workspace)
    config = config or workspace.load_config()
    started = time.perf_counter()
    index = CatalogIndex.load(workspace.index_path, config)
    rows, duplicates = triplet_rows(Path(csv_path), index)
    labelled = read_attribute_labels(attributes, index) if attributes is not None else None  # fail before training
    held_out = np.array([i for i, e in enumerate(index.entries) if Path(e.path).name in exclude], np.int64)
    kept = ~np.isin(rows, held_out).any(axis=1)
    rows, skipped = rows[kept], int((~kept).sum())
    if not len(rows):
        raise ValueError(f"{csv_path}: every triplet names a photo that is held out")
    if labelled is not None:
        labelled = labelled.without(held_out)
        if not len(labelled.rows):
            raise ValueError(f"{attributes}: every labelled photo is held out")
    settings = copy.deepcopy(config.train_triplets)  # the flags below must not change the caller's config
    if epochs is not None:
        settings.epochs = epochs
    train, val = split_by_anchor(rows, settings.val_fraction, settings.seed)
    views = settings.views if views is None else views
    checkpoint_path = workspace.models_dir / "similarity.ckpt"
    model_path = Path(out) if out else workspace.similarity_model_path

    net: SimilarityNet | None = None
    start_epoch, state = 0, None
    colour = colour_scaling(index, settings.colour_weight)
    if fine_tune and not resume:
        if not workspace.similarity_model_path.exists():
            raise FileNotFoundError("--fine-tune needs a similarity model in the workspace: run `tiefwatch train`")
        start = torch.load(workspace.similarity_model_path, map_location="cpu", weights_only=True)
        net, colour = from_checkpoint(start), _stored_colour(start)
    if resume and checkpoint_path.exists():
        saved = torch.load(checkpoint_path, map_location="cpu", weights_only=False)
        net, start_epoch, state = from_checkpoint(saved["net"]), int(saved["epoch"]), saved["state"]
        colour = _stored_colour(saved["net"])
        if verbose:
            stderr_console().print(f"resuming after epoch {start_epoch}")
    colour_dict = colour.to_state() if colour is not None else None
    catalog = join_colours(index.vectors, index.colours, colour)  # the index's rows as the model takes them
    inputs, view_owners = catalog, np.zeros(0, np.int64)
    if views > 0:
        inputs, train, view_owners = with_photo_anchors(index, train, views, config, workspace, verbose, colour)

    def on_epoch(report: TripletEpochReport, current: SimilarityNet, training_state: dict) -> None:
        if verbose:
            stderr_console().print(
                f"epoch {report.epoch}: margin {report.margin}, loss {report.train_loss:.4f}, held-out triplet "
                f"accuracy {report.val_accuracy:.3f} (raw backbone {report.backbone_val_accuracy:.3f})"
            )
        torch_save_atomic(
            {"net": to_checkpoint(current, colour=colour_dict), "epoch": report.epoch, "state": training_state},
            checkpoint_path,
        )

    raw_dim = index.vectors.shape[1]
    prepared = prepare_inputs(inputs, colour)
    net, reports = fit_triplets(prepared, train, val, settings, net, start_epoch, state, on_epoch, raw_dim)
    best = max(reports, key=lambda r: (r.val_accuracy, -r.val_loss)) if reports else None
    meta = {
        "signature": index.signature,
        "triplets": len(rows),
        "photo_views": views,
        "raw_weight": settings.raw_weight,
        "colour_weight": settings.colour_weight if colour is not None else 0.0,
        "val_accuracy": best.val_accuracy if best else None,
        "backbone_val_accuracy": best.backbone_val_accuracy if best else None,
        "margin": best.margin if best else None,
        "config": config.to_dict(),
    }
    heads_state, attribute_report = None, None
    if labelled is not None:
        identity = None
        if settings.identity_views > 0:
            pool = np.setdiff1d(np.arange(len(index)), held_out)
            busy = np.union1d(rows.ravel(), labelled.rows)
            identity = IdentityCheck.shoot(
                index,
                _query_pipeline(config, workspace),
                pool,
                busy,
                settings.identity_views,
                config.rerank.top_k,
                settings.seed + 1,
                verbose,
                keep=(config.rerank.keep_nearest, config.rerank.keep_within),  # ordered as the search orders
                pin_margin=config.rerank.pin_margin,
                conditions=settings.view_conditions,
            )
        shots = (inputs[len(index) :], view_owners) if settings.attribute_shots else None
        from tiefwatch.models import with_query_expansion

        base = with_query_expansion(SimilarityReranker.from_net(net, colour), config)  # ranked as a search ranks
        heads_state, attribute_report = _attribute_heads(base, catalog, labelled, settings, identity, verbose, shots)
        meta |= {"attribute_weight": attribute_report["weight"], "attribute_training": attribute_report}
    torch_save_atomic(to_checkpoint(net, meta, heads_state, colour_dict), model_path)
    config.save(model_path.with_suffix(".config.yaml"))
    SimilarityReranker.load(model_path, workspace.cache_dir)  # its numpy form, so searches need no torch
    return TripletTrainSummary(
        str(model_path),
        len(rows),
        duplicates,
        len(train),
        len(val),
        best.margin if best else float("nan"),
        best.val_accuracy if best else float("nan"),
        best.backbone_val_accuracy if best else float("nan"),
        reports,
        time.perf_counter() - started,
        attribute_report,
        skipped,
    )


def colour_scaling(index: CatalogIndex, weight: float) -> ColourScaling | None:
    """How a new model weighs colour descriptors, from this catalogue's own; None where the index keeps none or
    ``weight`` is 0."""
    if weight <= 0 or not index.colours.shape[1] or not len(index):
        return None
    return ColourScaling.fit(index.colours, weight)


def _stored_colour(checkpoint: dict[str, Any]) -> ColourScaling | None:
    state = colour_state(checkpoint)
    return None if state is None else ColourScaling.from_state(state)


def _attribute_heads(
    base: SimilarityReranker,
    catalog: np.ndarray,
    labelled: AttributeLabels,
    settings: TripletTrainSettings,
    identity: IdentityCheck | None,
    verbose: bool,
    shots: tuple[np.ndarray, np.ndarray] | None = None,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Attribute heads on the labelled photos' index rows (``catalog``: as ``base`` takes them), their
    regularisation and weight in the score chosen by cross-validated top-5 attribute agreement (the trained
    projection's cosine blend as the rest of it), among the weights that keep the exact watch first
    (``identity``). ``shots`` (rows as ``base`` takes them, each one's catalogue row): photo-like shots the heads
    also learn from where their watch is labelled (``train_triplets.attribute_shots``)."""
    base.raw_weight = settings.raw_weight
    labelled_vectors = base.prepare(catalog[labelled.rows])  # heads see what the projection sees
    labelled_shots = None
    if shots is not None:
        position = {int(row): number for number, row in enumerate(labelled.rows)}
        mine = np.array([int(owner) in position for owner in shots[1]], bool)
        owners = np.array([position[int(owner)] for owner in shots[1][mine]], np.int64)
        labelled_shots = (base.prepare(shots[0][mine]), owners)
    folds = 5
    with progress_bar("Attribute heads", total=len(settings.attribute_cs) * folds, enabled=verbose) as advance:
        choice = choose_attribute_blend(
            labelled_vectors,
            labelled.labels,
            base.cosines_prepared,
            cs=settings.attribute_cs,
            weights=settings.attribute_weights,
            folds=folds,
            seed=settings.seed,
            on_fit=advance,
            shots=labelled_shots,
        )
    identity_report: dict[str, Any] = {}
    if identity is not None and len(identity.owners):
        faiss_order = copy.copy(base)  # the raw cosine alone: what a search without re-ranking returns
        faiss_order.raw_weight, faiss_order.expand = 1.0, 0
        unranked = identity.recall(faiss_order.score, catalog, base.inputs)
        recall = {0.0: identity.recall(base.score, catalog, base.inputs)}
        for weight in sorted({w for w in settings.attribute_weights if w > 0}):
            heads = fit_with_shots(labelled_vectors, labelled.labels, choice.best_c(weight), shots=labelled_shots)
            recall[weight] = identity.recall(base.with_attributes(heads, weight).score, catalog, base.inputs)
        kept = [
            w
            for w, at in recall.items()
            if all(at[k] >= recall[0.0][k] - settings.identity_tolerance - 1e-9 for k in IdentityCheck.KS)
        ]
        choice = choice.within(kept)
        identity_report = {
            "identity_views": len(identity.owners),
            "identity_tolerance": settings.identity_tolerance,
            # the shares are checked against share 0; what the learned projection itself costs is shown beside
            "identity_recall_faiss_order": {f"at_{k}": round(unranked[k], 4) for k in IdentityCheck.KS},
            **{
                f"identity_recall_at_{k}": {f"{w:g}": round(at[k], 4) for w, at in recall.items()}
                for k in IdentityCheck.KS
            },
        }
    heads = fit_with_shots(labelled_vectors, labelled.labels, choice.c, shots=labelled_shots)
    report = {
        "labelled": len(labelled.rows),
        "labelled_shots": 0 if labelled_shots is None else len(labelled_shots[1]),
        "duplicates": labelled.duplicates,
        "attributes": heads.names,
        **choice.as_dict(),
        **identity_report,
    }
    if verbose:
        without = choice.scores.get((choice.c, 0.0), float("nan"))
        chosen = choice.scores[(choice.c, choice.weight)]
        guard = ""
        if identity_report:
            recalls = ", ".join(
                f"{w} {r:.3f} / {identity_report['identity_recall_at_10'][w]:.3f}"
                for w, r in identity_report["identity_recall_at_1"].items()
            )
            faiss = identity_report["identity_recall_faiss_order"]
            guard = (
                f"; recall@1 / @10 of {identity_report['identity_views']} photo-like shots at weight {recalls} "
                f"(FAISS order {faiss['at_1']:.3f} / {faiss['at_10']:.3f})"
            )
        stderr_console().print(
            f"attributes: {len(labelled.rows)} labelled photos, {len(heads.names)} attributes; weight "
            f"{choice.weight:g} (C {choice.c:g}) by {choice.folds}-fold top-5 agreement {chosen:.3f} "
            f"(without attributes {without:.3f}){guard}"
        )
    return heads.to_state(), report


@dataclass
class IdentityCheck:
    """Photo-like shots of catalogue watches with their FAISS candidates: does a re-ranking score keep each shot's
    own catalogue photo first, and in the first ten? The attribute heads' share is chosen only among those that do."""

    KS: ClassVar[tuple[int, ...]] = (1, 10)  # first, and on the first page of results

    vectors: np.ndarray  # (n, D) the shots, embedded as queries are
    owners: np.ndarray  # (n,) each shot's catalogue row
    candidates: np.ndarray  # (n, K) FAISS candidates, -1 padded
    keep: tuple[int, int] = (0, 0)  # the search's rerank.keep_nearest and keep_within (ranking.rerank)
    colours: np.ndarray | None = None  # (n, C) the shots' colour descriptors, where the pipeline makes them
    nearest: np.ndarray | None = None  # (n, K) the candidates' FAISS scores, for the search's rerank.pin_margin
    pin_margin: float = 0.0

    @classmethod
    def shoot(
        cls,
        index: CatalogIndex,
        pipeline: Any,
        pool: np.ndarray,
        busy: np.ndarray,
        count: int,
        top_k: int,
        seed: int,
        show_progress: bool = True,
        keep: tuple[int, int] = (0, 0),
        conditions: Mapping[str, float] | None = None,
        pin_margin: float = 0.0,
    ) -> IdentityCheck:
        """``count`` watches drawn from ``pool``, avoiding ``busy`` rows (anchors, labelled) while others remain;
        ``keep``: ``rerank.keep_nearest`` and ``keep_within``, for ranking the shots as a search does;
        ``conditions``: the photo conditions the shots are drawn from (none: the standard scene); ``pin_margin``:
        ``rerank.pin_margin``."""
        rng = np.random.default_rng(seed)
        free = np.setdiff1d(pool, busy)
        source = free if len(free) else np.asarray(pool, np.int64)
        rows = np.sort(rng.choice(source, size=min(count, len(source)), replace=False))
        vectors, owners, colours = simulated_view_vectors(index, rows, 1, pipeline, seed, show_progress, conditions)
        nearest, candidates = index.search(vectors, top_k)
        return cls(vectors, owners, candidates, keep, colours, nearest, pin_margin)

    def recall(
        self,
        score: Callable[[np.ndarray, np.ndarray], np.ndarray],
        catalog: np.ndarray,
        inputs: Callable[[np.ndarray, np.ndarray | None], np.ndarray] | None = None,
    ) -> dict[int, float]:
        """Share of shots whose own catalogue row is among the first k of their candidates by ``score``, per k in
        ``KS``: first, and on the first page of results. ``catalog`` rows are as ``score`` takes them; ``inputs``
        (``SimilarityReranker.inputs``) makes the shots' rows likewise from their vectors and colours."""
        queries = self.vectors if inputs is None else inputs(self.vectors, self.colours)
        hits = dict.fromkeys(self.KS, 0)
        nearest = np.zeros(self.candidates.shape, np.float32) if self.nearest is None else self.nearest
        for vector, owner, rows, near in zip(queries, self.owners, self.candidates, nearest, strict=True):
            valid = rows >= 0
            rows = rows[valid]
            if not len(rows):
                continue
            pin = sure_of_nearest(near[valid], self.pin_margin)
            ranked = rows[keep_nearest_order(score(vector, catalog[rows]), *self.keep, pin_nearest=pin)]  # as searched
            place = np.flatnonzero(ranked == owner)
            for k in self.KS:
                hits[k] += bool(len(place)) and int(place[0]) < k
        return {k: hits[k] / max(len(self.owners), 1) for k in self.KS}


def _query_pipeline(config: Config, workspace: Workspace) -> Any:
    """Crop and embed as ``tiefwatch search`` does, for simulated photos."""
    from tiefwatch.models import load_cropper
    from tiefwatch.pipeline import Pipeline

    cropper = load_cropper(config, workspace) if config.crop.enabled else None
    return Pipeline.from_config(config, cropper, cache_dir=workspace.cache_dir)


def with_photo_anchors(
    index: CatalogIndex,
    train: np.ndarray,
    views: int,
    config: Config,
    workspace: Workspace,
    show_progress: bool,
    colour: ColourScaling | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Index rows with simulated photos of the training anchors appended, the training triplets with
    (photo, near, far) copies and (photo, own catalogue photo, look-alike) identity triplets added, and each
    appended photo's catalogue row. With ``colour`` each row is the vector with its colour descriptor after it."""
    from ranking.triplet_training import hard_negative_triplets

    pipeline = _query_pipeline(config, workspace)
    anchors = np.unique(train[:, 0])
    view_vecs, owners, view_colours = simulated_view_vectors(
        index, anchors, views, pipeline, config.seed, show_progress, config.train_triplets.view_conditions
    )
    offset = len(index)
    views_of: dict[int, list[int]] = {}
    for number, owner in enumerate(owners.tolist()):
        views_of.setdefault(owner, []).append(offset + number)
    photo_triplets = [[view, near, far] for anchor, near, far in train.tolist() for view in views_of[anchor]]
    identity = hard_negative_triplets(
        view_vecs, owners, index.vectors, k=5, rng=np.random.default_rng(config.seed), anchor_offset=offset
    )
    vectors = np.vstack([index.vectors, view_vecs]).astype(np.float32)
    vectors = join_colours(vectors, np.vstack([index.colours, view_colours]), colour)
    return vectors, np.vstack([train, np.asarray(photo_triplets, np.int64).reshape(-1, 3), identity]), owners


# ------------------------------------------------------------------------------------- photo invariance
@dataclass
class InvarianceSummary:
    model: str
    items: int
    views: int
    val_items: int
    val_recall_at_1_raw: float
    val_recall_at_1_trained: float
    seconds: float

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def simulated_view_vectors(
    index: CatalogIndex,
    rows: np.ndarray,
    views: int,
    pipeline: Any,
    seed: int,
    show_progress: bool = True,
    conditions: Mapping[str, float] | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``views`` photo-like shots of each catalogue row, framed and embedded exactly as a query would be:
    (vectors, owners, colour descriptors). ``conditions`` draws each shot's photo condition by weight (none: the
    standard scene)."""
    from bbox.conditions import scene_simulator
    from tiefwatch.images import load_image
    from tiefwatch.progress import progress_bar

    simulator = scene_simulator(conditions, seed)
    rng = np.random.default_rng(seed)
    vectors, owners, colours = [], [], []
    pending: list[np.ndarray] = []
    pending_rows: list[int] = []
    batch = pipeline.config.embed.batch_size

    def flush() -> None:
        if pending:
            embedded, described, _ = pipeline.describe_images(pending)
            vectors.append(embedded)
            colours.append(described)
            owners.extend(pending_rows)
            pending.clear()
            pending_rows.clear()

    with progress_bar("Photo-like views", total=len(rows) * views, enabled=show_progress) as advance:
        for row in rows:
            image = load_image(index.path_of(int(row)))
            for _ in range(views):
                pending.append(simulator(image, rng).image)
                pending_rows.append(int(row))
                if len(pending) >= batch:
                    advance(len(pending))
                    flush()
        advance(len(pending))
        flush()
    return np.concatenate(vectors), np.asarray(owners, np.int64), np.concatenate(colours)


def train_invariance(
    workspace: Workspace | str | Path | None = None,
    config: Config | None = None,
    views: int = 4,
    exclude: set[str] | frozenset[str] = frozenset(),
    epochs: int | None = None,
    out: str | Path | None = None,
    show_progress: bool = True,
) -> InvarianceSummary:
    """Teach the similarity network that a phone photo of a watch equals its catalogue shot.

    Each indexed catalogue photo is shot ``views`` times by the photo simulator and embedded like a query; a
    projection is trained with InfoNCE so each view lands on its own catalogue vector. A tenth of the items is
    held out to report recall@1 against the whole catalogue, raw and trained. ``exclude`` names catalogue
    files never used (benchmark queries).
    """
    from ranking.triplet_training import fit_projection_infonce, recall_at_1
    from tiefwatch.models import load_cropper
    from tiefwatch.pipeline import Pipeline

    workspace = workspace if isinstance(workspace, Workspace) else Workspace(workspace)
    config = config or workspace.load_config()
    started = time.perf_counter()
    index = CatalogIndex.load(workspace.index_path, config)
    cropper = load_cropper(config, workspace) if config.crop.enabled else None
    pipeline = Pipeline.from_config(config, cropper, cache_dir=workspace.cache_dir)
    index.check_compatible(pipeline.signature())
    usable = np.array([i for i, e in enumerate(index.entries) if Path(e.path).name not in exclude], np.int64)
    order = np.random.default_rng(config.seed).permutation(usable)
    n_val = max(1, len(order) // 10)
    val_rows, train_rows = np.sort(order[:n_val]), np.sort(order[n_val:])

    view_vecs, owners, _ = simulated_view_vectors(index, usable, views, pipeline, config.seed, show_progress)
    is_val = np.isin(owners, val_rows)
    settings = copy.deepcopy(config.train_invariance)
    if epochs is not None:
        settings.epochs = epochs
    net = fit_projection_infonce(view_vecs[~is_val], owners[~is_val], index.vectors, settings)
    raw = recall_at_1(view_vecs[is_val], owners[is_val], index.vectors)
    trained = recall_at_1(net.embed(view_vecs[is_val]), owners[is_val], net.embed(index.vectors))
    model_path = Path(out) if out else workspace.similarity_model_path
    meta = {
        "signature": index.signature,
        "kind": "photo-invariance",
        "views": views,
        "items": len(train_rows),
        "val_recall_at_1_raw": raw,
        "val_recall_at_1_trained": trained,
        "config": config.to_dict(),
    }
    torch_save_atomic(to_checkpoint(net, meta), model_path)
    config.save(model_path.with_suffix(".config.yaml"))
    SimilarityReranker.load(model_path, workspace.cache_dir)  # its numpy form, so searches need no torch
    return InvarianceSummary(
        str(model_path), len(train_rows), views, len(val_rows), raw, trained, time.perf_counter() - started
    )
