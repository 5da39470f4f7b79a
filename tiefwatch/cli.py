"""``tiefwatch`` command line: each verb is a thin entry over a library function.

Global options go before or after the verb: ``tiefwatch --workspace DIR search photo.jpg --set search.k=20``.
Machine-readable output goes to stdout alone; progress and warnings go to stderr. Exit status: 0 success, 1 a
runtime error (no index, an unreadable query among the batch...), 2 a usage error (bad flags or config values).
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import logging
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from tiefwatch import __version__
from tiefwatch.config import Config, ConfigError
from tiefwatch.workspace import Workspace

log = logging.getLogger("tiefwatch")


class CliError(Exception):
    """A usage error found after parsing (a bad value, a refused combination): printed as one line, exit status 2."""


EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2
FORMAT_HELP = {
    "text": "text: for people (tables, one-line summaries; the default)",
    "json": "json: machine-readable, on stdout alone",
    "csv": "csv: one row per result",
}


# ---------------------------------------------------------------------------- verbs
def cmd_index(args: argparse.Namespace, workspace: Workspace) -> int:
    from tiefwatch.index import index_catalog

    indexed = _indexed_root(workspace)
    wanted = Path(args.catalog).resolve()
    if indexed is not None and indexed != wanted and not args.replace:
        raise CliError(
            f"the workspace {workspace.root} indexes {indexed}; indexing {args.catalog} would replace it. Add "
            "--replace to do that, or give the other catalogue its own --workspace"
        )
    summary = index_catalog(
        args.catalog,
        workspace=workspace,
        config=_config(args, workspace),
        show_progress=not args.quiet,
        ray_address=args.ray,
    )
    if args.format == "json":
        _print_json(summary.as_dict())
    else:
        print(
            f"indexed {summary.total} images from {summary.root} in {summary.seconds:.1f}s "
            f"({summary.added} new, {summary.updated} changed, {summary.unchanged} unchanged, "
            f"{summary.removed} removed, {len(summary.skipped)} skipped) -> {summary.index_type} index"
        )
        if summary.rebuilt_reason:
            print(f"rebuilt from scratch: {summary.rebuilt_reason}")
        if summary.with_views:
            views = summary.catalog_views
            print(f"{summary.with_views} photos embedded beside {views} photo-like views of each (index.views)")
        for rel in summary.skipped[:20]:
            print(f"  skipped (unreadable): {rel}")
        if len(summary.skipped) > 20:
            print(f"  ... and {len(summary.skipped) - 20} more")
    return EXIT_OK


def cmd_search(args: argparse.Namespace, workspace: Workspace) -> int:
    from tiefwatch.search import search

    results = search(
        args.queries,
        workspace=workspace,
        k=args.k,
        crop=not args.no_crop,
        rerank=not args.no_rerank,
        config=_config(args, workspace),
        sheet=args.sheet,
        show_progress=not args.quiet,
    )
    if args.format == "json":
        _print_json([r.as_dict() for r in results])
    elif args.format == "csv":
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow(["query", "rank", "path", "score"])
        for result in results:
            for hit in result.results:
                writer.writerow([result.query, hit.rank, hit.path, f"{hit.score:.6f}"])
        sys.stdout.write(buffer.getvalue())
    else:
        _print_results_table(results)
    failed = sum(1 for r in results if r.error)
    if failed:
        print(f"{failed} of {len(results)} queries could not be read", file=sys.stderr)
    if args.sheet:
        print(f"contact sheet: {args.sheet}", file=sys.stderr)
    return EXIT_FAILED if failed else EXIT_OK


def cmd_eval(args: argparse.Namespace, workspace: Workspace) -> int:
    from tiefwatch.evaluation import evaluate

    ks = tuple(sorted({int(k) for k in args.k.split(",") if k.strip()}))
    if not ks or min(ks) < 1:
        raise CliError(f"-k takes positive ranks separated by commas, got {args.k!r}")
    report = evaluate(
        workspace,
        queries=args.queries,
        triplets=args.triplets,
        simulate=args.simulate,
        ks=ks,
        config=_config(args, workspace),
        seed=args.seed,
        show_progress=not args.quiet,
    )
    if args.format == "json":
        _print_json(report.as_dict())
        return EXIT_OK
    from rich.console import Console
    from rich.table import Table

    console = Console()
    if report.retrieval:
        table = Table(
            title=f"{report.queries} queries ({report.query_csv}), true watch searched within the top {report.depth}",
            title_justify="left",
        )
        table.add_column("search")
        for k in ks:
            table.add_column(f"R@{k}", justify="right")
        table.add_column("mAP", justify="right")
        for row in report.retrieval:
            table.add_row(row.name, *(f"{row.recall[k]:.3f}" for k in ks), f"{row.mean_ap:.3f}")
        console.print(table)
        if report.unreadable:
            console.print(f"{report.unreadable} query photos could not be read (counted as misses)")
    if report.triplets:
        t = report.triplets
        trained = "no similarity model" if t["trained"] is None else f"{t['trained']:.3f}"
        console.print(
            f"held-out triplets ({t['count']}, {t['csv']}): accuracy raw backbone {t['raw']:.3f}, trained {trained}"
        )
    return EXIT_OK


def cmd_crop(args: argparse.Namespace, workspace: Workspace) -> int:
    from tiefwatch.crop import crop_images

    results = crop_images(
        args.images, workspace=workspace, out_dir=args.out, overlay=args.overlay, config=_config(args, workspace)
    )
    if args.format == "json":
        _print_json([r.as_dict() for r in results])
    else:
        for r in results:
            if r.error:
                print(f"{r.query}: error: {r.error}")
                continue
            box = ", ".join(f"{v:.0f}" for v in r.box.as_list())
            extra = f" -> {r.crop}" if r.crop else ""
            print(f"{r.query}: box [{box}] confidence {r.confidence:.2f}{extra}")
    return EXIT_FAILED if any(r.error for r in results) else EXIT_OK


def cmd_train_bbox(args: argparse.Namespace, workspace: Workspace) -> int:
    from tiefwatch.crop import train_bbox
    from tiefwatch.evaluation import is_holdout
    from tiefwatch.images import list_images

    exclude: list[str] = []
    if args.holdout and args.catalog:
        exclude = [p.name for p in list_images(args.catalog) if is_holdout(p.name, args.holdout)]
    summary = train_bbox(
        args.catalog,
        workspace=workspace,
        config=_config(args, workspace),
        backgrounds=args.backgrounds or (),
        epochs=args.epochs,
        samples=args.samples,
        hand_boxes=args.boxes,
        exclude=exclude,
        resume=args.resume,
        out=args.out,
        show_progress=not args.quiet,
    )
    _emit(
        args,
        summary.as_dict(),
        f"crop model saved to {summary.model}: validation mean IoU {summary.best_val_mean_iou:.3f}, "
        f"IoU≥0.5 {summary.best_val_iou_at_50:.1%} ({summary.samples} scenes, {summary.seconds:.0f}s)",
    )
    return EXIT_OK


def _held_out_names(fraction: float, workspace: Workspace, config: Config) -> set[str]:
    """File names of the indexed photos in the catalogue's stable held-out ``fraction`` (``--holdout``)."""
    if not fraction:
        return set()
    from tiefwatch.evaluation import is_holdout
    from tiefwatch.index import CatalogIndex

    index = CatalogIndex.load(workspace.index_path, config)
    return {Path(e.path).name for e in index.entries if is_holdout(Path(e.path).name, fraction)}


def cmd_train_triplets(args: argparse.Namespace, workspace: Workspace) -> int:
    from tiefwatch.train_ranking import train_triplets

    config = _config(args, workspace)
    exclude = _held_out_names(args.holdout, workspace, config)
    summary = train_triplets(
        args.triplets,
        workspace=workspace,
        config=config,
        epochs=args.epochs,
        resume=args.resume,
        out=args.out,
        verbose=not args.quiet,
        fine_tune=args.fine_tune,
        views=args.views,
        attributes=args.attributes,
        exclude=exclude,
    )
    attributes = summary.attributes
    _emit(
        args,
        summary.as_dict(),
        f"similarity model saved to {summary.model}: held-out triplet accuracy {summary.val_accuracy:.3f} "
        f"(raw backbone {summary.backbone_val_accuracy:.3f}), margin {summary.margin}, "
        f"{summary.train_triplets} train / {summary.val_triplets} held-out triplets "
        f"({summary.duplicates} duplicates ignored"
        + (f", {summary.held_out_skipped} naming a held-out photo skipped" if summary.held_out_skipped else "")
        + f"), {summary.seconds:.0f}s"
        + (
            f"; attribute heads from {attributes['labelled']} labelled photos, weight {attributes['weight']:g}"
            if attributes
            else ""
        ),
    )
    if summary.val_accuracy <= summary.backbone_val_accuracy:
        print("warning: the trained model is no better than the raw backbone on held-out anchors", file=sys.stderr)
    return EXIT_OK


def cmd_train(args: argparse.Namespace, workspace: Workspace) -> int:
    from tiefwatch.train_ranking import train_invariance

    config = _config(args, workspace)
    exclude = _held_out_names(args.holdout, workspace, config)
    if args.tail_stages:
        return _train_tail(args, workspace, config, exclude)
    summary = train_invariance(
        workspace, config, views=args.views or 4, exclude=exclude, epochs=args.epochs, out=args.out,
        show_progress=not args.quiet,
    )  # fmt: skip
    _emit(
        args,
        summary.as_dict(),
        f"similarity model saved to {summary.model}: photo->catalogue recall@1 on {summary.val_items} held-out "
        f"watches {summary.val_recall_at_1_raw:.3f} raw -> {summary.val_recall_at_1_trained:.3f} trained "
        f"({summary.items} watches x {summary.views} views, {summary.seconds:.0f}s)",
    )
    if summary.val_recall_at_1_trained <= summary.val_recall_at_1_raw:
        print(
            f"warning: the projection is no better than the backbone on held-out watches; searches would re-rank "
            f"with it. Remove {summary.model} to search without it, or tune the backbone (--tail-stages 2)",
            file=sys.stderr,
        )
    return EXIT_OK


def _train_tail(args: argparse.Namespace, workspace: Workspace, config: Config, exclude: set[str]) -> int:
    from tiefwatch.train_backbone import train_backbone_tail

    summary = train_backbone_tail(
        workspace, config, stages=args.tail_stages, views=args.views, epochs=args.epochs, exclude=exclude,
        out=args.out, show_progress=not args.quiet, check_fraction=args.check,
    )  # fmt: skip
    checked = (
        f"photo->catalogue recall@1 on {summary.val_items} held-out watches "
        f"{summary.val_recall_at_1_before:.3f} -> {summary.val_recall_at_1_tuned:.3f}"
        if summary.val_items
        else "every watch tuned, none held out to check"
    )
    moved = (
        f"; the old similarity model is now {summary.moved_similarity_model}" if summary.moved_similarity_model else ""
    )
    _emit(
        args,
        summary.as_dict(),
        f"tuned backbone saved to {summary.weights}: {checked} "
        f"({summary.items} watches x {summary.views} views, last {summary.stages} stages, {summary.seconds:.0f}s). "
        f"Re-run `tiefwatch index` to embed the catalogue with it{moved}.",
    )
    return EXIT_OK


def cmd_label(args: argparse.Namespace, workspace: Workspace) -> int:
    import os

    from tiefwatch.label import serve_labelling

    token = args.token or os.environ.get("TIEFWATCH_LABEL_TOKEN")
    _check_web_flags(args.host, token, labelling=True)
    serve_labelling(
        workspace,
        _config(args, workspace),
        args.triplets,
        host=args.host,
        port=args.port,
        token=token,
        open_browser=args.open,
    )
    return EXIT_OK


def cmd_serve(args: argparse.Namespace, workspace: Workspace) -> int:
    import os

    from tiefwatch.web.app import serve

    if args.workers < 1:
        raise CliError(f"--workers must be at least 1, got {args.workers}")
    if args.max_upload_mb <= 0:
        raise CliError(f"--max-upload-mb must be positive, got {args.max_upload_mb}")
    token = args.token or os.environ.get("TIEFWATCH_TOKEN")
    _check_web_flags(args.host, token, labelling=args.label is not None)
    serve(
        workspace,
        _config(args, workspace),
        host=args.host,
        port=args.port,
        workers=args.workers,
        token=token,
        label_triplets=args.label,
        max_upload_bytes=int(args.max_upload_mb * 1024 * 1024),
        open_browser=args.open,
        access_log=args.verbose,
    )
    return EXIT_OK


def cmd_demo(args: argparse.Namespace, workspace: Workspace) -> int:
    from tiefwatch.demo import run_demo

    run_demo(workspace, size=args.catalog_size, queries=args.queries, show_progress=not args.quiet)
    return EXIT_OK


def cmd_config(args: argparse.Namespace, workspace: Workspace) -> int:
    import yaml

    config = _config(args, workspace)
    if args.save:  # --set overrides become the workspace's own settings
        workspace.save_config(config)
        print(f"saved to {workspace.config_path}", file=sys.stderr)
    if args.format == "json":
        _print_json(config.to_dict())
    else:
        print(yaml.safe_dump(config.to_dict(), sort_keys=False), end="")
    return EXIT_OK


# ---------------------------------------------------------------------------- plumbing
def _check_web_flags(host: str, token: str | None, labelling: bool) -> None:
    """Refused flag combinations of ``serve`` and ``label`` are usage errors (exit 2), found before models load."""
    from tiefwatch.web.security import MIN_TOKEN_LENGTH, is_loopback, suggest_token

    if token is not None and len(token) < MIN_TOKEN_LENGTH:
        raise CliError(f"the token must be at least {MIN_TOKEN_LENGTH} characters")
    if labelling and token is None and not is_loopback(host):
        raise CliError(
            f"binding to {host} exposes the labelling tool to the network; give a token, e.g. --token {suggest_token()}"
        )


def _indexed_root(workspace: Workspace) -> Path | None:
    """The catalogue folder the workspace's index was built from (its metadata alone is read), or None."""
    import numpy as np

    if not workspace.index_path.exists():
        return None
    try:
        with np.load(workspace.index_path, allow_pickle=False) as data:
            return Path(json.loads(bytes(data["meta"]).decode())["root"])
    except Exception:  # an unreadable index is rebuilt by `index` anyway, and says so
        return None


def _config(args: argparse.Namespace, workspace: Workspace):
    overrides = list(args.set or [])
    if getattr(args, "device", None):
        overrides.append(f"embed.device={args.device}")
    if getattr(args, "engine", None):
        overrides.append(f"embed.engine={args.engine}")
    return workspace.load_config(args.config, overrides)


def _emit(args: argparse.Namespace, data: Any, text: str) -> None:
    """``--format json`` prints ``data``; text output prints the one-line summary."""
    if args.format == "json":
        _print_json(data)
    else:
        print(text)


def _print_json(data: Any) -> None:
    json.dump(data, sys.stdout, indent=2)
    sys.stdout.write("\n")


def _print_results_table(results: Sequence) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console()
    for result in results:
        if result.error:
            console.print(f"[red]{result.query}: {result.error}[/red]")
            continue
        framing = "whole image"
        if result.box:
            framing = f"box {result.box} (confidence {result.framing.confidence:.2f})"
        elif result.framing is not None and result.framing.note:
            framing = f"whole image ({result.framing.note})"
        table = Table(title=f"{result.query} — {framing}", title_justify="left")
        table.add_column("rank", justify="right")
        table.add_column("score", justify="right")
        table.add_column("catalogue photo")
        for hit in result.results:
            table.add_row(str(hit.rank), f"{hit.score:.3f}", hit.path)
        console.print(table)


GLOBAL_NAMES = ("workspace", "config", "set", "device", "engine", "quiet", "verbose")


def _add_global_options(group: Any, prefix: str) -> None:
    """The options every verb takes. After the verb they land in ``late_*`` names, merged by ``_merge_globals``:
    a subparser's defaults would otherwise overwrite what was given before the verb."""
    late = {"default": None} if prefix else {}
    group.add_argument(
        "--workspace",
        "-w",
        dest=f"{prefix}workspace",
        metavar="DIR",
        help="state folder (default ./.tiefwatch or $TIEFWATCH_WORKSPACE)",
    )
    group.add_argument(
        "--config",
        "-c",
        dest=f"{prefix}config",
        metavar="FILE",
        help="YAML file merged over the defaults and the workspace config",
    )
    group.add_argument(
        "--set", action="append", dest=f"{prefix}set", metavar="KEY=VALUE",
        help="override one config value, e.g. search.k=20 (repeatable)",
    )  # fmt: skip
    group.add_argument(
        "--device", dest=f"{prefix}device", choices=["auto", "cpu", "cuda"], help="where the networks run"
    )
    group.add_argument(
        "--engine", dest=f"{prefix}engine", choices=["auto", "torch", "onnx"], help="CPU inference engine (auto: onnx)"
    )
    group.add_argument("--quiet", "-q", dest=f"{prefix}quiet", action="store_true", help="no progress bars", **late)
    group.add_argument("--verbose", "-v", dest=f"{prefix}verbose", action="store_true", help="debug logging", **late)


class _Verbs:
    """``add_subparsers`` whose parsers also take the global options."""

    def __init__(self, action: Any) -> None:
        self.action = action

    def add_parser(self, name: str, **kwargs: Any) -> argparse.ArgumentParser:
        parser = self.action.add_parser(name, **kwargs)
        _add_global_options(parser.add_argument_group("global options (also accepted before the verb)"), "late_")
        return parser


def _merge_globals(args: argparse.Namespace) -> None:
    for name in GLOBAL_NAMES:
        late = getattr(args, f"late_{name}", None)
        if name == "set":
            args.set = [*(args.set or []), *(late or [])]
        elif name in ("quiet", "verbose"):
            setattr(args, name, bool(getattr(args, name) or late))
        elif late is not None:
            setattr(args, name, late)


def _format(value: str) -> str:
    return "text" if value == "table" else value  # ``table``: the name search and eval used before


def _add_format(parser: argparse.ArgumentParser, *choices: str) -> None:
    choices = choices or ("text", "json")
    parser.add_argument(
        "--format", type=_format, choices=choices, default="text",
        help="output: " + "; ".join(FORMAT_HELP[c] for c in choices),
    )  # fmt: skip


def _positive_int(value: str) -> int:
    try:
        number = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {value!r}") from None
    if number < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {number}")
    return number


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tiefwatch", description="Find the catalogue watches most similar to a photo."
    )
    parser.add_argument("--version", action="version", version=f"tiefwatch {__version__}")
    _add_global_options(parser.add_argument_group("global options (before or after the verb)"), "")
    verbs = _Verbs(parser.add_subparsers(dest="verb", required=True, metavar="VERB"))

    p = verbs.add_parser("index", help="embed a catalogue folder into the workspace index (incremental)")
    p.add_argument("catalog", type=Path, help="folder of catalogue photos (searched recursively)")
    p.add_argument(
        "--replace", action="store_true",
        help="index this folder although the workspace indexes another one (its index is replaced)",
    )  # fmt: skip
    p.add_argument(
        "--ray", nargs="?", const="", default=None, metavar="ADDRESS",
        help="embed on Ray (pip install 'tiefwatch[ray]'): the cluster at ADDRESS, or without one RAY_ADDRESS's "
        "cluster else a local Ray; GPU actors where the cluster has GPUs. Writes the index a local run writes",
    )  # fmt: skip
    _add_format(p)
    p.set_defaults(run=cmd_index)

    p = verbs.add_parser("search", help="the most similar catalogue watches for each query photo")
    p.add_argument("queries", nargs="+", help="image files or folders")
    p.add_argument(
        "-k", type=_positive_int, default=None, help="results per query, at least 1 (default: config search.k)"
    )
    _add_format(p, "text", "json", "csv")
    p.add_argument("--sheet", type=Path, help="write a contact sheet (query, crop, results) to this image")
    p.add_argument("--no-crop", action="store_true", help="embed the whole photo (any index)")
    p.add_argument("--no-rerank", action="store_true", help="keep the FAISS order (any index)")
    p.set_defaults(run=cmd_search)

    p = verbs.add_parser("eval", help="recall@k / mAP on queries with known answers; held-out triplet accuracy")
    p.add_argument("queries", type=Path, nargs="?", help="CSV query,truth (query photo, its catalogue photo)")
    p.add_argument("--simulate", type=int, default=0, help="instead: N photo-like queries of catalogue watches")
    p.add_argument("--triplets", type=Path, help="held-out anchor,near,far CSV: triplet accuracy")
    p.add_argument("-k", default="1,5,10", help="recall ranks, comma-separated")
    p.add_argument("--seed", type=int, default=0, help="for --simulate")
    _add_format(p)
    p.set_defaults(run=cmd_eval)

    p = verbs.add_parser("crop", help="find the watch in photos; write square crops and box overlays")
    p.add_argument("images", nargs="+", help="image files or folders")
    p.add_argument("--out", type=Path, help="folder for crops (and overlays)")
    p.add_argument("--overlay", action="store_true", help="also write each image with its box drawn")
    _add_format(p)
    p.set_defaults(run=cmd_crop)

    p = verbs.add_parser("train-bbox", help="train the crop model on scenes synthesised from a catalogue")
    p.add_argument("catalog", type=Path, nargs="?", help="catalogue folder (default: built-in drawn watches)")
    p.add_argument("--backgrounds", type=Path, action="append", help="folder of background photos (repeatable)")
    p.add_argument("--epochs", type=int)
    p.add_argument("--samples", type=int, help="synthesised scenes (default: config train_bbox.samples)")
    p.add_argument("--boxes", type=Path, help="CSV path,x0,y0,x1,y1 of hand-boxed photos to add")
    p.add_argument("--holdout", type=float, default=0.0, help="keep this stable fraction of the catalogue out")
    p.add_argument("--resume", action="store_true", help="continue from the workspace's checkpoint")
    p.add_argument("--out", type=Path, help="write the model here instead of the workspace")
    _add_format(p)
    p.set_defaults(run=cmd_train_bbox)

    p = verbs.add_parser("train-triplets", help="train the re-ranking network on anchor,near,far triplets")
    p.add_argument("triplets", type=Path, help="CSV with header anchor,near,far (paths relative to the catalogue)")
    p.add_argument("--epochs", type=int)
    p.add_argument("--resume", action="store_true", help="continue from the workspace's checkpoint")
    p.add_argument("--fine-tune", action="store_true", help="start from the workspace's current similarity model")
    p.add_argument(
        "--views", type=int, help="photo-like shots per training anchor, also used as anchors (train_triplets.views)"
    )
    p.add_argument(
        "--attributes", type=Path,
        help="CSV with a `file` column and one column per attribute (shape, colours...): adds attribute heads",
    )  # fmt: skip
    p.add_argument(
        "--holdout", type=float, default=0.0,
        help="keep this stable fraction of the catalogue out (triplets and labels naming it skipped, never shot)",
    )  # fmt: skip
    p.add_argument("--out", type=Path, help="write the model here instead of the workspace")
    _add_format(p)
    p.set_defaults(run=cmd_train_triplets)

    p = verbs.add_parser("train", help="once per catalogue: learn photo->catalogue invariance from simulated photos")
    p.add_argument("--views", type=int, help="simulated photos per catalogue watch (default 4)")
    p.add_argument("--epochs", type=int)
    p.add_argument(
        "--tail-stages", type=int, default=0, metavar="N",
        help="tune the backbone's last N stages instead of training a projection (then re-run index)",
    )  # fmt: skip
    p.add_argument("--holdout", type=float, default=0.0, help="keep this stable fraction of the catalogue out")
    p.add_argument(
        "--check", type=float, default=0.1, metavar="FRACTION",
        help="--tail-stages: watches held out of tuning to report recall before and after (0: tune every watch)",
    )  # fmt: skip
    p.add_argument("--out", type=Path, help="write the model here instead of the workspace")
    _add_format(p)
    p.set_defaults(run=cmd_train)

    p = verbs.add_parser("label", help="web page (/label/) where annotators add triplets (anchor, near, far)")
    p.add_argument("--triplets", type=Path, default=Path("triplets.csv"), help="CSV to append to")
    p.add_argument("--host", default="127.0.0.1", help="bind address (a token is required off loopback)")
    p.add_argument("--port", type=int, default=8765)
    p.add_argument("--token", help="access token (or $TIEFWATCH_LABEL_TOKEN)")
    p.add_argument("--open", action="store_true", help="open the page in a browser")
    p.set_defaults(run=cmd_label)

    p = verbs.add_parser("serve", help="search page, HTTP API (/docs) and optionally the labelling page, on the web")
    p.add_argument("--host", default="127.0.0.1", help="bind address (default: this machine only)")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--workers", type=int, default=1, help="processes, each with the models loaded once")
    p.add_argument("--token", help="require this bearer token on every request (or $TIEFWATCH_TOKEN)")
    p.add_argument("--label", type=Path, metavar="CSV", help="also serve the labelling page at /label/, into CSV")
    p.add_argument("--max-upload-mb", type=float, default=10.0, help="largest photo accepted (MB)")
    p.add_argument("--open", action="store_true", help="open the page in a browser")
    p.set_defaults(run=cmd_serve)

    p = verbs.add_parser("demo", help="the whole pipeline on a built-in catalogue of drawn watches")
    p.add_argument("--catalog-size", type=int, default=240)
    p.add_argument("--queries", type=int, default=6)
    p.set_defaults(run=cmd_demo)

    p = verbs.add_parser("config", help="print the resolved config")
    p.add_argument("--save", action="store_true", help="write it (with --set overrides) to the workspace's config.yaml")
    _add_format(p)
    p.set_defaults(run=cmd_config)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    _merge_globals(args)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.WARNING,
        format="%(levelname)s: %(message)s",
        stream=sys.stderr,
    )
    workspace = Workspace(args.workspace)
    run: Callable[[argparse.Namespace, Workspace], int] = args.run
    try:
        return run(args, workspace)
    except (CliError, ConfigError) as error:
        print(f"tiefwatch {args.verb}: error: {error}", file=sys.stderr)
        return EXIT_USAGE
    except (OSError, ValueError, RuntimeError) as error:
        print(f"tiefwatch {args.verb}: error: {error}", file=sys.stderr)
        return EXIT_FAILED
    except KeyboardInterrupt:
        print("interrupted; nothing was left half-written", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
