"""Contact sheets: a person judges a ranking faster from pictures than from a table of paths."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np

from tiefwatch.images import ImageReadError, load_image, save_image

TILE = 144
LABEL_H = 18
GAP = 4
KEPT_COLOUR = (200, 60, 0)  # orange (the sheets are RGB): a result kept on the page by rerank.keep_nearest


def thumbnail(image: np.ndarray, side: int = TILE) -> np.ndarray:
    """Fit into a white square tile without distorting the watch."""
    h, w = image.shape[:2]
    scale = side / max(h, w)
    resized = cv2.resize(image, (max(1, round(w * scale)), max(1, round(h * scale))), interpolation=cv2.INTER_AREA)
    tile = np.full((side, side, 3), 255, np.uint8)
    top, left = (side - resized.shape[0]) // 2, (side - resized.shape[1]) // 2
    tile[top : top + resized.shape[0], left : left + resized.shape[1]] = resized
    return tile


def draw_box(image: np.ndarray, box: Sequence[float], colour: tuple[int, int, int] = (255, 40, 40)) -> np.ndarray:
    out = image.copy()
    thickness = max(2, round(max(image.shape[:2]) / 200))
    x0, y0, x1, y1 = (round(v) for v in box)
    cv2.rectangle(out, (x0, y0), (x1 - 1, y1 - 1), colour, thickness, cv2.LINE_AA)
    return out


def labelled(tile: np.ndarray, text: str, colour: tuple[int, int, int] = (30, 30, 30)) -> np.ndarray:
    band = np.full((LABEL_H, tile.shape[1], 3), 255, np.uint8)
    cv2.putText(band, text[:24], (3, LABEL_H - 5), cv2.FONT_HERSHEY_SIMPLEX, 0.42, colour, 1, cv2.LINE_AA)
    return np.vstack([tile, band])


def grid(rows: Sequence[Sequence[np.ndarray]], background: int = 235) -> np.ndarray:
    """Stack rows of equal-size cells with gaps; short rows are padded."""
    cell_h, cell_w = rows[0][0].shape[:2]
    columns = max(len(row) for row in rows)
    sheet = np.full((len(rows) * (cell_h + GAP) + GAP, columns * (cell_w + GAP) + GAP, 3), background, np.uint8)
    for r, row in enumerate(rows):
        for c, cell in enumerate(row):
            y, x = GAP + r * (cell_h + GAP), GAP + c * (cell_w + GAP)
            sheet[y : y + cell_h, x : x + cell_w] = cell
    return sheet


def _safe_load(path: str) -> np.ndarray:
    try:
        return load_image(path)
    except (ImageReadError, FileNotFoundError):
        return np.full((TILE, TILE, 3), 200, np.uint8)


def write_search_sheet(results: Sequence, out: Path, max_results: int = 10, pad: float = 0.08) -> Path:
    """One row per query: the photo with its box, the crop that was embedded (``pad`` = ``crop.pad``), then the
    top results."""
    from bbox.box import BoundingBox

    rows = []
    for result in results:
        if result.error:
            continue
        query = _safe_load(result.query)
        row = [labelled(thumbnail(draw_box(query, result.box) if result.box else query), "query")]
        if result.box:
            crop = BoundingBox.from_list(result.box).to_square(pad, query.shape[1], query.shape[0]).crop(query)
            row.append(labelled(thumbnail(crop), f"crop {result.framing.confidence:.2f}"))
        else:
            note = result.framing.note if result.framing is not None else ""
            row.append(labelled(np.full((TILE, TILE, 3), 250, np.uint8), note or "whole image"))
        for hit in result.results[:max_results]:
            tile, text = thumbnail(_safe_load(hit.path)), f"#{hit.rank} {hit.score:.3f}"
            if getattr(hit, "kept_nearest", False):  # on the page as one of the backbone's nearest, not by score
                row.append(labelled(tile, f"{text} kept", KEPT_COLOUR))
            else:
                row.append(labelled(tile, text))
        rows.append(row)
    if not rows:
        raise ValueError("nothing to draw: every query failed")
    out.parent.mkdir(parents=True, exist_ok=True)
    save_image(out, grid(rows))
    return out
