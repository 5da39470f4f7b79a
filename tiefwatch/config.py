"""One configuration object for the whole pipeline.

Defaults live in the dataclasses below; a user's YAML file and ``--set section.key=value`` flags are merged
on top (timm-style). The resolved config is saved beside every index and model, so a result can always be
traced back to the settings that made it, and a mismatched index is refused instead of returning garbage.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from bbox.settings import TRAINING_MIX, BoxTrainSettings
from ranking.settings import ProjectionTrainSettings, TailTrainSettings, TripletTrainSettings
from tiefwatch.storage import write_text_atomic


class ConfigError(ValueError):
    """A config file or override that cannot be applied; the message says which key and why."""


@dataclass
class BackboneConfig:
    """The pretrained CNN that turns an image into a feature vector."""

    name: str = "efficientnet_lite2"
    image_size: int = 260
    pooling: str = "gem"  # "gap" or "gem": measured in docs/benchmarks.md
    gem_p: float = 3.0
    light_norm: bool = True  # percentile white balance on both sides: phone photos are darker and tinted
    # "photo": the last stages tuned so phone photos land on catalogue shots (ranking/weights/lite2_photo_tail.pt;
    # recall@1 of unseen watches 0.21 -> 0.76, true box); "imagenet": the packaged weights alone; or a path to a
    # state dict (``tiefwatch train --tail-stages`` writes one for a catalogue).
    weights: str = "photo"


@dataclass
class EmbedConfig:
    """How images are pushed through the backbone."""

    device: str = "auto"  # auto | cpu | cuda
    engine: str = "auto"  # auto | torch | onnx ; auto = ONNX Runtime on CPU (same weights, several times faster)
    batch_size: int = 32
    decode_workers: int = 2


@dataclass
class IndexConfig:
    """The FAISS index over catalogue vectors."""

    type: str = "auto"  # auto | flat | hnsw | ivf ; auto = exact flat below `auto_flat_below` items, else ivf
    auto_flat_below: int = 20_000  # flat reads 5 KB a vector per query: ~10 ms at 20k on 2 cores
    hnsw_m: int = 32
    hnsw_ef_construction: int = 80
    hnsw_ef_search: int = 0  # 0 = tuned at build time to `target_recall`
    ivf_nlist: int = 0  # 0 = about 4 * sqrt(N)
    ivf_nprobe: int = 0  # 0 = tuned at build time to `target_recall`
    pca_dim: int = 256  # ivf codes a PCA projection of the vectors down to this size (0 = none)
    ivf_codes: str = "SQ8"  # FAISS code per vector in an ivf index: SQ8 (pca_dim bytes), SQfp16, PQ32 (32 bytes)...
    refine: int = 10  # approximate indexes return k * refine candidates, re-scored exactly
    # Photo-like shots of each catalogue photo (on procedural clutter) embedded beside it and averaged into its
    # vector, so a phone photo meets the watch as a phone would see it: recall@1 of unseen watches 0.74 -> 0.81
    # (benchmarks.md, retrieval-adapted). Each costs an embedding at index time, none at query time; 0 = off.
    views: int = 4
    # The photo conditions the views are drawn from, by weight (bbox.conditions: close-up, far, tilt, glare, lamp,
    # wrist, phone, tiny); {} = the standard scene only. Part of the index signature.
    view_conditions: dict[str, float] = field(default_factory=dict)
    # A colour descriptor of each catalogue photo's crop (ranking.colour), kept beside its vector for the re-ranker
    # (FAISS never sees it): people name colours first, the backbone does not (benchmarks.md, judged section).
    colour: bool = True
    target_recall: float = 0.97  # recall@10 of exact search the build-time tuning aims for
    # the file names taken as photos (images.IMAGE_EXTENSIONS): HEIC/HEIF through pillow-heif, AVIF through Pillow
    extensions: list[str] = field(
        default_factory=lambda: [".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff", ".heic", ".heif", ".avif"]
    )


@dataclass
class CropConfig:
    """Finding the watch in a cluttered photo before embedding it."""

    enabled: bool = True
    model: str = ""  # path to a crop model; empty = the workspace's own, else the packaged default
    min_confidence: float = 0.15  # below this the whole image is used, and the output says so (benchmarks.md)
    pad: float = 0.08  # relative padding around the box before squaring it
    input_size: int = 256  # the whole photo is letterboxed to this for the crop network
    detail_stage: int = 2  # backbone block folded in at stride 8 for small watches (-1: none); train-bbox only
    tower_layers: int = 2  # head depth; train-bbox only (a model records its own)
    # A second look at a zoomed square around a small first box: a watch far away is boxed at the resolution a near
    # one gets (far photos: crop IoU 0.68 -> 0.84, standard 0.83 -> 0.85; benchmarks.md, conditions section).
    refine: bool = True
    refine_pad: float = 1.0  # that square: the box padded by this share of its size on each side (0.3 lost IoU)
    refine_below: float = 0.35  # refine only boxes whose long side is below this share of the photo's (benchmarks)
    # Where the crop network sees a second heat peak at least this share of the first, a search embeds both crops
    # and keeps the one whose best catalogue match is closer; an unsure photo tries its box beside the whole photo
    # (0: neither, the first peak alone). About 3 % of photos have a candidate more (benchmarks.md).
    alternatives_ratio: float = 0.5
    max_alternatives: int = 2
    # Catalogue photos on a plain light background are framed by their product cut-out: the very box the crop
    # model is trained to predict, for a few milliseconds instead of a backbone pass. Others go to the model.
    catalog_cutout: bool = True


@dataclass
class RerankConfig:
    """Re-ordering FAISS candidates with the triplet-trained similarity network."""

    enabled: bool = True
    top_k: int = 100
    model: str = ""  # empty = the workspace's own, else the packaged default
    packaged: bool = True  # use the similarity model shipped with the package when the workspace has none
    # The share of attribute agreement in the score, for a model with attribute heads (train-triplets --attributes);
    # negative: the share the model was trained with. Look-alikes by attribute against the exact watch first: in a
    # fresh workspace recall@1 0.81 at 0, 0.80 at 0.1, 0.74 at 0.5 (benchmarks.md, human-judged section).
    attribute_weight: float = -1.0
    # The backbone's keep_nearest nearest catalogue photos stay within the first keep_within re-ranked results
    # (ranking.rerank.keep_nearest_order): the exact watch is usually among them, and the re-ranker alone pushed it
    # off the first page for 1-2 % of photo queries (benchmarks.md). 5 within 10 leaves the first five places to
    # the re-ranker alone; 0 = plain re-ranked order.
    keep_nearest: int = 5
    keep_within: int = 10
    # Where the backbone's nearest catalogue photo is closer to the query than the next by at least this cosine, it
    # stays first (ranking.rerank.sure_of_nearest): the re-ranker, trained on what people judge alike, put a
    # look-alike above the exact watch for 5 % of held-out photos. 0.02 keeps 4 of those 5 points of recall@1 and
    # leaves the re-ranker's first pick for 37 % of photos of watches the shop lacks (benchmarks.md, session 15).
    # 0 = the re-ranker's order.
    pin_margin: float = 0.02
    # The query is widened by its closest candidates in the re-ranker's space before the final ordering (alpha query
    # expansion; ranking.rerank.expand_query; the raw cosine's share stays the query's own): a phone photo's colours
    # are less sure than a catalogue photo's, and its closest catalogue photo (usually the watch itself) describes it
    # more cleanly. Judged triplets from a photo 0.715 -> 0.738 (benchmarks.md, judged section). 0 = off.
    expand: int = 1
    expand_alpha: float = 3.0


@dataclass
class SearchConfig:
    k: int = 10
    # The crop's box cut again at these sizes (share of the box, about its centre) and the vectors averaged: a box
    # a few percent too tight or loose then matters less. Each costs one embedding per query: recall@1 0.807 ->
    # 0.830 (benchmarks.md, retrieval-adapted) for about twice the query time (50 -> 100 ms warm); [] = fastest.
    extra_crop_scales: list[float] = field(default_factory=lambda: [0.9, 1.1])
    # A query photo the crop network is less sure of than this (by default where it would give up on its box,
    # crop.min_confidence) is looked at again as five zoomed windows (corners and centre, ``zoom_window`` of its
    # sides each): a watch a few pixels tall is seen nearly twice as large, and the first box stays a candidate
    # (0: never). 1-6 % of photos, by crop model; catalogue photos never. 0.35 measured worse (benchmarks.md).
    zoom_below: float = 0.15
    zoom_window: float = 0.6
    # A query's box that comes within this share of its size of both edges of the photo along an axis is stretched
    # edge to edge along it (BoundingBox.spread_to_frame): a photo that is all watch is framed whole, not as the
    # network's fragment of it. Standard photos cut to the watch's box: recall@1 0.803 -> 0.830, crop IoU 0.814 ->
    # 0.949; close-ups 0.887 -> 0.893; standard photos unchanged (benchmarks.md, session 17). 0: never.
    fill_frame_within: float = 0.2
    # A query photo's warm-cool cast (a tungsten lamp, blue shade) is judged from the photo around the watch and
    # taken out of its crops before they are embedded and described (ranking.illuminant): the crop alone cannot tell
    # a gold watch from a steel one under a lamp. Catalogue photos are never corrected (benchmarks.md, conditions).
    correct_light: bool = True
    # A query on a plain light backdrop is framed by its product cut-out, as catalogue photos are, only where the
    # backdrop's light varies along the border by at most this many levels (5th-95th percentile of luminance): a
    # studio shot varies by under 7 (99 % of the dev catalogue), a phone photo on a white desk by 16 and more, and a
    # cut-out there takes the darker corner for the watch (IoU 0.47 on them). Others go to the crop network. 0: any.
    cutout_max_spread: float = 12.0
    # A query whose box covers more than this share of the photo (a close-up) has the whole photo averaged into its
    # vector, weighing as much as the box's crops together: where the watch fills or overflows the frame, the frame
    # shows what the padded, squared box loses. The box stays the framing. Close-ups: recall@1 0.817 -> 0.853 (second
    # simulator), 0.893 -> 0.907 (ours), overflowing ones 0.43 -> 0.50; other rows unchanged within a photo or two
    # (benchmarks.md, session 19). One more embedding for the photos it reaches (about 1 standard photo in 100).
    # 0: never.
    whole_photo_above: float = 0.3


@dataclass
class Config:
    backbone: BackboneConfig = field(default_factory=BackboneConfig)
    embed: EmbedConfig = field(default_factory=EmbedConfig)
    index: IndexConfig = field(default_factory=IndexConfig)
    crop: CropConfig = field(default_factory=CropConfig)
    train_bbox: BoxTrainSettings = field(default_factory=BoxTrainSettings)
    rerank: RerankConfig = field(default_factory=RerankConfig)
    train_triplets: TripletTrainSettings = field(default_factory=TripletTrainSettings)
    train_invariance: ProjectionTrainSettings = field(default_factory=ProjectionTrainSettings)
    # The tail learns from views of every photo condition, as the packaged tail's last stage did (make photo-backbone).
    train_tail: TailTrainSettings = field(default_factory=lambda: TailTrainSettings(conditions=dict(TRAINING_MIX)))
    search: SearchConfig = field(default_factory=SearchConfig)
    seed: int = 0

    # ------------------------------------------------------------------ (de)serialisation
    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def changes(self) -> dict[str, Any]:
        """Only the settings that differ from the defaults, nested as ``to_dict``: what a workspace keeps as its
        own, so that a later release's defaults still reach every setting it never chose."""
        return _difference(self.to_dict(), Config().to_dict())

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> Config:
        """Defaults updated by ``data``; unknown keys are an error, not silently ignored."""
        config = cls()
        if data:
            _merge_into(config, data, prefix="")
        return config

    @classmethod
    def load(cls, path: str | Path) -> Config:
        return cls.from_dict(read_yaml(path))

    def save(self, path: str | Path) -> None:
        write_text_atomic(Path(path), yaml.safe_dump(self.to_dict(), sort_keys=False))

    def merged(self, data: dict[str, Any] | None = None, overrides: list[str] | None = None) -> Config:
        """A copy with a nested dict and then ``key.sub=value`` strings applied."""
        config = Config.from_dict(self.to_dict())
        if data:
            _merge_into(config, data, prefix="")
        for item in overrides or []:
            _merge_into(config, parse_override(item), prefix="")
        return config

    def embedding_signature(self) -> dict[str, Any]:
        """What must match between an index and a query for their vectors to be comparable."""
        b = self.backbone
        return {
            "backbone": b.name,
            "image_size": b.image_size,
            "pooling": b.pooling,
            "gem_p": b.gem_p if b.pooling == "gem" else None,
            "light_norm": b.light_norm,
        }


def _difference(values: dict[str, Any], defaults: dict[str, Any]) -> dict[str, Any]:
    """The entries of ``values`` that differ from ``defaults``, recursing into sections; lists compare whole."""
    out: dict[str, Any] = {}
    for key, value in values.items():
        default = defaults.get(key)
        if isinstance(value, dict) and isinstance(default, dict):
            if nested := _difference(value, default):
                out[key] = nested
        elif value != default:
            out[key] = value
    return out


def parse_override(item: str) -> dict[str, Any]:
    """``"crop.min_confidence=0.3"`` -> ``{"crop": {"min_confidence": 0.3}}`` (value parsed as YAML)."""
    if "=" not in item:
        raise ConfigError(f"override {item!r} is not of the form section.key=value")
    key, raw = item.split("=", 1)
    value: Any = yaml.safe_load(raw) if raw.strip() else ""
    nested: dict[str, Any] = {}
    cursor = nested
    parts = key.strip().split(".")
    for part in parts[:-1]:
        cursor = cursor.setdefault(part, {})
    cursor[parts[-1]] = value
    return nested


# Keys earlier versions wrote into saved configs; read and dropped so old workspaces and indexes still load.
RETIRED_KEYS = {"index.pq_m"}


def _merge_into(target: Any, data: dict[str, Any], prefix: str) -> None:
    if not isinstance(data, dict):
        raise ConfigError(f"{prefix or 'config'} must be a mapping, got {type(data).__name__}")
    fields = {f.name: f for f in dataclasses.fields(target)}
    for key, value in data.items():
        name = f"{prefix}{key}"
        if name in RETIRED_KEYS:
            continue
        if key not in fields:
            raise ConfigError(f"unknown config key {name!r} (known: {', '.join(sorted(fields))})")
        current = getattr(target, key)
        if dataclasses.is_dataclass(current):
            _merge_into(current, value, prefix=f"{name}.")
            continue
        setattr(target, key, _coerce(name, current, value))


# Counts that mean nothing below these: ``search.k=0`` would return no result and say nothing about why.
MINIMUMS = {"search.k": 1, "rerank.top_k": 1, "embed.batch_size": 1, "embed.decode_workers": 1}


def _coerce(name: str, current: Any, value: Any) -> Any:
    """Keep each key's type (a typo like ``k=ten`` fails here, not deep inside FAISS) and its range."""
    value = _coerce_type(name, current, value)
    minimum = MINIMUMS.get(name)
    if minimum is not None and value < minimum:
        raise ConfigError(f"{name} must be at least {minimum}, got {value!r}")
    return value


def _coerce_type(name: str, current: Any, value: Any) -> Any:
    if isinstance(current, bool):
        if isinstance(value, bool):
            return value
        raise ConfigError(f"{name} must be true or false, got {value!r}")
    if isinstance(current, int) and not isinstance(value, bool):
        if isinstance(value, int):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        raise ConfigError(f"{name} must be an integer, got {value!r}")
    if isinstance(current, float):
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        raise ConfigError(f"{name} must be a number, got {value!r}")
    if isinstance(current, str):
        return "" if value is None else str(value)
    if isinstance(current, list):
        if not isinstance(value, list):
            raise ConfigError(f"{name} must be a list, got {value!r}")
        return value
    return value


def read_yaml(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except FileNotFoundError as error:
        raise ConfigError(f"config file not found: {path}") from error
    except yaml.YAMLError as error:
        raise ConfigError(f"config file {path} is not valid YAML: {error}") from error
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path} must hold a mapping")
    return data
