"""The GPU path, checked on a machine that has one: the same photos give the same vectors and boxes on CUDA as on
the CPU, a search runs end to end with ``--device cuda``, and the crop trainer runs a few steps there.

Nothing in tiefwatch needs a GPU; this is the check to run when one is at hand::

    python tools/gpu_check.py CATALOG_DIR --out report.json
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from bbox.predict import DEFAULT_MODEL, BoxPredictor
from ranking.features import Embedder
from tiefwatch.crop import train_bbox
from tiefwatch.images import list_images, load_image
from tiefwatch.index import index_catalog
from tiefwatch.search import search
from tiefwatch.workspace import Workspace


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("catalog", type=Path)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)
    if not torch.cuda.is_available():
        print("gpu_check: no CUDA device here", file=sys.stderr)
        return 2
    report: dict = {"device": torch.cuda.get_device_name(0), "torch": torch.__version__}
    images = [load_image(path) for path in list_images(args.catalog)[:64]]

    vectors = {}
    for device in ("cpu", "cuda"):
        embedder = Embedder(device=device, engine="torch", batch_size=32)
        embedder.embed(images[:8])
        started = time.perf_counter()
        vectors[device] = embedder.embed(images)
        report[f"embed_ms_per_image_{device}"] = (time.perf_counter() - started) / len(images) * 1000
    cosine = np.sum(vectors["cpu"] * vectors["cuda"], axis=1)
    report["embed_cosine_min"] = float(cosine.min())

    boxes = {
        device: BoxPredictor(DEFAULT_MODEL, device=device, engine="torch").predict(images[:32])
        for device in ("cpu", "cuda")
    }
    report["crop_iou_cpu_vs_cuda_min"] = min(a.box.iou(b.box) for a, b in zip(boxes["cpu"], boxes["cuda"], strict=True))

    root = Path(tempfile.mkdtemp(prefix="tiefwatch-gpu-"))
    workspace = Workspace(root / "ws")
    config = workspace.load_config(overrides=["embed.device=cuda", "embed.engine=torch"])
    summary = index_catalog(args.catalog, workspace, config)
    results = search([list_images(args.catalog)[0]], workspace=workspace, config=config, k=5)
    report["index_images_per_s_cuda"] = summary.embedded_per_second
    report["search_top1_is_itself"] = Path(results[0].results[0].path).name == list_images(args.catalog)[0].name

    config = config.merged(overrides=["train_bbox.samples=256", "train_bbox.epochs=2"])
    started = time.perf_counter()
    trained = train_bbox(args.catalog, workspace, config, show_progress=False)
    report["train_bbox_seconds_cuda"] = time.perf_counter() - started
    report["train_bbox_val_mean_iou"] = trained.best_val_mean_iou

    text = json.dumps(report, indent=1, default=float)
    if args.out:
        args.out.write_text(text)
    print(text)
    ok = report["embed_cosine_min"] >= 0.999 and report["crop_iou_cpu_vs_cuda_min"] >= 0.95
    return 0 if ok and report["search_top1_is_itself"] else 1


if __name__ == "__main__":
    sys.exit(main())
