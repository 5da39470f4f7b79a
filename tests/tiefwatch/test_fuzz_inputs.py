"""Fuzzing the one image reader and the verbs over it with the files people actually have.

Every case of the generated corpus (tests/fuzz_corpus.py: every truncation of a small JPEG and PNG, random bytes
behind each format's magic number, wrong extensions, bombs, huge claimed sizes, 16-bit, CMYK, progressive, palette,
alpha, EXIF orientations 1-8, HEIC/AVIF/WebP/TIFF, looping and broken symlinks, FIFOs, undecodable, long and
multi-line names) is either read correctly or skipped with a one-line reason naming the file once; through
``index``, ``search`` and ``crop`` the rest of the batch is unaffected and JSON output stays valid.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from tests.fuzz_corpus import Case, Outcome, corpus, encode, judge, write_corpus, write_special_files
from tests.helpers import draw_watch
from tiefwatch.config import Config
from tiefwatch.images import ImageReadError, display_path, list_images, load_image, load_image_bytes, save_image
from tiefwatch.workspace import Workspace

FAST = ["backbone.image_size=96", "embed.batch_size=8", "embed.engine=torch", "index.views=0"]
# a query's extra crops and zoomed windows multiply its cost; the reader is what is under test here
FAST_SEARCH = [*FAST, "search.extra_crop_scales=[]", "search.zoom_below=0", "crop.alternatives_ratio=0"]
ROOT = Path(__file__).resolve().parents[2]
# What Pillow says about hostile files on the way to refusing them (the reader turns the refusal into its reason)
pytestmark = pytest.mark.filterwarnings(
    "ignore:Corrupt EXIF data:UserWarning", "ignore::PIL.Image.DecompressionBombWarning"
)


def _failures(outcomes: list[Outcome]) -> list[Outcome]:
    return [o for o in outcomes if o.result not in ("read", "skipped")]


# ---------------------------------------------------------------------------------------------- the reader
@pytest.fixture(scope="module")
def cases() -> list[Case]:
    return corpus(seed=0)


def test_every_corpus_file_is_read_correctly_or_skipped_with_one_line_naming_it(
    cases: list[Case], tmp_path: Path
) -> None:
    by_name = write_corpus(tmp_path, cases)
    outcomes = [
        judge(case, lambda name=name: load_image(tmp_path / name), display_path(tmp_path / name))
        for name, case in by_name.items()
    ]
    assert _failures(outcomes) == []
    results = Counter(o.result for o in outcomes)
    assert results["read"] >= 40 and results["skipped"] >= 1000  # the corpus is what it claims to be
    bombs = [o for o in outcomes if o.group == "bomb" and o.case != "claims-zero.png"]
    assert bombs and all(o.detail.startswith("too large: ") and "limit" in o.detail for o in bombs)
    assert any("30000×30000" in o.detail for o in bombs)


def test_bytes_reader_gives_the_same_outcomes(cases: list[Case]) -> None:
    outcomes = [judge(case, lambda case=case: load_image_bytes(case.data, case.name), case.name) for case in cases]
    assert _failures(outcomes) == []


def test_file_system_oddities_are_listed_and_then_read_or_named(tmp_path: Path) -> None:
    special = write_special_files(tmp_path)
    listed = {path.relative_to(tmp_path).as_posix() for path in list_images(tmp_path)}
    assert listed == set(special)  # loops, broken links and the FIFO are listed, so they can be named
    outcomes = [
        judge(case, lambda name=name: load_image(tmp_path / name), display_path(tmp_path / name))
        for name, case in special.items()
    ]
    assert _failures(outcomes) == []
    reasons = {o.case: o.detail for o in outcomes}
    assert reasons["loop.jpg"].startswith("symlink loop") and reasons["ping.jpg"].startswith("symlink loop")
    assert reasons["broken.jpg"].startswith("broken symlink") and reasons["pipe.jpg"] == "not a regular file"
    with pytest.raises(ImageReadError, match="no such file"):
        load_image(tmp_path / "vanished.jpg")  # one failed query, not FileNotFoundError through a batch


def test_a_message_is_one_printable_line_even_for_odd_names(tmp_path: Path) -> None:
    name = os.fsdecode(b"bad\xff\nname.jpg")
    (tmp_path / name).write_bytes(b"not an image")
    with pytest.raises(ImageReadError) as raised:
        load_image(tmp_path / name)
    message = str(raised.value)
    assert "\n" not in message and "\\xff\\nname.jpg" in message
    message.encode("utf-8")  # printable on any UTF-8 terminal: no lone surrogates
    assert message.count(str(tmp_path)) == 1


@settings(max_examples=60, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    magic=st.sampled_from([b"", b"\xff\xd8\xff", b"\x89PNG\r\n\x1a\n", b"RIFF\0\0\0\0WEBP", b"II*\0", b"BM", b"GIF8"]),
    noise=st.binary(min_size=0, max_size=3000),
)
def test_random_bytes_never_escape_as_anything_but_a_read_error(magic: bytes, noise: bytes) -> None:
    try:
        array = load_image_bytes(magic + noise, "fuzz.jpg")
    except ImageReadError as error:
        assert str(error).startswith("fuzz.jpg: ") and "\n" not in str(error)
    else:
        assert array.dtype == np.uint8 and array.ndim == 3 and array.shape[2] == 3


# the modes each format stores (Pillow writes them all, and a user's files come in each)
STORED_MODES = {
    "PNG": ("RGB", "L", "RGBA", "P", "I;16"),
    "TIFF": ("RGB", "L", "RGBA", "P", "I;16", "CMYK"),
    "WEBP": ("RGB", "RGBA"),
    "JPEG": ("RGB", "L", "CMYK"),
    "BMP": ("RGB", "L", "P"),
}


@settings(max_examples=40, deadline=None, database=None)
@given(
    height=st.integers(8, 120),
    width=st.integers(8, 120),
    stored=st.sampled_from([(fmt, mode) for fmt, modes in STORED_MODES.items() for mode in modes]),
    seed=st.integers(0, 2**16),
)
def test_any_size_mode_and_format_reads_as_its_8_bit_reference(
    height: int, width: int, stored: tuple[str, str], seed: int
) -> None:
    """Tones are converted, never clipped: each image reads back within a codec's error of its 8-bit RGB form."""
    fmt, mode = stored
    rng = np.random.default_rng(seed)
    base = np.repeat(np.repeat(rng.integers(0, 256, (4, 4, 3), dtype=np.uint8), 32, 0), 32, 1)[:height, :width]
    base = np.pad(base, ((0, max(0, height - base.shape[0])), (0, max(0, width - base.shape[1])), (0, 0)), "edge")
    if mode == "I;16":
        grey = np.asarray(Image.fromarray(base).convert("L"))
        image, expected = Image.fromarray(grey.astype(np.uint16) * 257), np.repeat(grey[..., None], 3, 2)
    elif mode == "RGBA":
        image, expected = Image.fromarray(np.dstack([base, np.full(base.shape[:2], 255, np.uint8)])), base
    else:
        image = Image.fromarray(base).convert(mode)
        expected = np.asarray(image.convert("RGB"))
    options = {"quality": 95} if fmt in ("JPEG", "WEBP") else {}
    decoded = load_image_bytes(encode(image, fmt, **options), f"case.{fmt.lower()}")
    assert decoded.shape == (height, width, 3)
    tolerance = 12.0 if fmt in ("JPEG", "WEBP") else 0.51
    assert np.abs(decoded.astype(np.float32) - expected.astype(np.float32)).mean() <= tolerance


def test_large_images_are_decoded_reduced_and_bombs_never_decoded(tmp_path: Path) -> None:
    import resource

    from tests.fuzz_corpus import large_jpeg, png_bomb

    (tmp_path / "big.jpg").write_bytes(large_jpeg(6000, 4000))
    (tmp_path / "bomb.png").write_bytes(png_bomb())
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    image = load_image(tmp_path / "big.jpg")
    assert image.shape == (1000, 1500, 3)  # decoded at a quarter of its size
    with pytest.raises(ImageReadError, match=r"bomb.png: too large: 30000×30000, limit [0-9,]+ pixels$"):
        load_image(tmp_path / "bomb.png")
    grown_mb = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
    assert grown_mb < 150  # a full decode of the JPEG alone is 72 MB, the bomb's 900 MB; reduced it is ~20 MB


# ---------------------------------------------------------------------------------------------- the verbs
@pytest.fixture(scope="module")
def fuzz_catalogue(tmp_path_factory: pytest.TempPathFactory, cases: list[Case]) -> tuple[Path, dict[str, Outcome]]:
    """Six drawn watches among a sample of the corpus and every file-system oddity; the truth for each file is
    what the reader itself says (checked above)."""
    root = tmp_path_factory.mktemp("fuzz") / "catalog"
    bulk = ("truncated", "corrupted", "random bytes")
    picked = [case for case in cases if case.group not in bulk and case.expect != "read"]  # every refusal
    groups = {case.group for case in cases if case.expect == "read"} - {"large"}  # large: the reader's tests
    picked += [next(case for case in cases if case.group == group and case.expect == "read") for group in groups]
    for group in bulk:
        picked += [case for case in cases if case.group == group][5::97][:4]
    write_corpus(root, picked)
    write_special_files(root / "odd")
    for number in range(3):
        save_image(root / f"watch-{number}.png", draw_watch(number))
    truth = {}
    for path in list_images(root):
        rel = path.relative_to(root).as_posix()
        case = Case(rel, b"", "any", "catalogue")
        truth[rel] = judge(case, lambda path=path: load_image(path), display_path(path))
    assert _failures(list(truth.values())) == []
    return root, truth


@pytest.fixture(scope="module")
def fuzz_workspace(
    tmp_path_factory: pytest.TempPathFactory, fuzz_catalogue: tuple[Path, dict[str, Outcome]]
) -> tuple[Workspace, Config, dict]:
    from tiefwatch.index import index_catalog

    root, _ = fuzz_catalogue
    workspace = Workspace(tmp_path_factory.mktemp("fuzz-ws"))
    config = Config().merged(overrides=FAST)
    summary = index_catalog(root, workspace, config)
    return workspace, config, summary.as_dict()


def test_index_takes_every_readable_file_and_names_every_other(
    fuzz_catalogue: tuple[Path, dict[str, Outcome]], fuzz_workspace: tuple[Workspace, Config, dict]
) -> None:
    from tiefwatch.index import CatalogIndex

    _, truth = fuzz_catalogue
    workspace, config, summary = fuzz_workspace
    readable = {rel for rel, outcome in truth.items() if outcome.result == "read"}
    unreadable = {display_path(rel) for rel in truth} - {display_path(rel) for rel in readable}
    assert summary["total"] == len(readable) and set(summary["skipped"]) == unreadable
    assert set(summary["skip_reasons"]) == unreadable and summary["skipped_count"] == len(unreadable)
    assert summary["skip_reasons"]["odd/loop.jpg"].startswith("symlink loop")
    assert summary["skip_reasons"]["bomb-30000.png"].startswith("too large: 30000×30000")
    json.loads(json.dumps(summary))
    index = CatalogIndex.load(workspace.index_path, config)
    assert {entry.path for entry in index.entries} == readable
    assert np.isfinite(index.vectors).all()


def test_search_answers_every_query_and_errors_name_the_file_once(
    fuzz_catalogue: tuple[Path, dict[str, Outcome]], fuzz_workspace: tuple[Workspace, Config, dict]
) -> None:
    from tiefwatch.search import Searcher

    root, truth = fuzz_catalogue
    workspace, config, _ = fuzz_workspace
    readable = sorted(rel for rel, outcome in truth.items() if outcome.result == "read")
    unreadable = sorted(rel for rel, outcome in truth.items() if outcome.result != "read")
    queries = [root / rel for rel in unreadable + readable[::5]] + [root / "vanished.jpg", root / "odd" / "folder.jpg"]
    searcher = Searcher(workspace, config.merged(overrides=FAST_SEARCH))
    results = searcher.search_paths(queries, k=3, show_progress=False)
    assert [result.query for result in results] == [str(path) for path in queries]
    for path, result in zip(queries, results, strict=True):
        rel = path.relative_to(root).as_posix()
        readable = rel in truth and truth[rel].result == "read"
        if readable:
            assert result.error is None and len(result.results) == 3, rel
        else:
            assert result.error and result.error.count(display_path(path)) == 1 and "\n" not in result.error, rel
    text = json.dumps([result.as_dict() for result in results], allow_nan=False)
    assert len(json.loads(text)) == len(queries)


def test_crop_answers_every_image(
    tmp_path: Path,
    fuzz_catalogue: tuple[Path, dict[str, Outcome]],
    fuzz_workspace: tuple[Workspace, Config, dict],
) -> None:
    from tiefwatch.crop import crop_images

    root, truth = fuzz_catalogue
    workspace, config, _ = fuzz_workspace
    readable = sorted(rel for rel, outcome in truth.items() if outcome.result == "read")
    chosen = sorted(truth)[::4] + readable[::7] + ["odd/loop.jpg", "odd/pipe.jpg", "bomb-30000.png"]
    crop_config = config.merged(overrides=FAST_SEARCH)
    results = crop_images([root / rel for rel in chosen], workspace, tmp_path / "crops", config=crop_config)
    assert len(results) == len(chosen)
    for rel, result in zip(chosen, results, strict=True):
        if truth[rel].result == "read":
            assert result.error is None and result.crop and Path(result.crop).exists(), rel
        else:
            assert result.error and result.error.count(display_path(root / rel)) == 1, rel
    json.loads(json.dumps([result.as_dict() for result in results], allow_nan=False))


def test_index_cli_on_the_fuzz_catalogue_prints_a_summary_not_a_traceback(
    tmp_path: Path, fuzz_catalogue: tuple[Path, dict[str, Outcome]]
) -> None:
    """The file system's oddities (symlink loops, a FIFO, undecodable and multi-line names) through the real CLI."""
    root, truth = fuzz_catalogue
    sets = [arg for item in FAST for arg in ("--set", item)]
    command = [sys.executable, "-m", "tiefwatch.cli", "-w", str(tmp_path / "ws"), *sets, "index", str(root / "odd")]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run([*command, "--format", "json"], capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0 and "Traceback" not in done.stderr, done.stderr[-2000:]
    summary = json.loads(done.stdout)
    odd = {rel: outcome for rel, outcome in truth.items() if rel.startswith("odd/")}
    assert summary["total"] == sum(outcome.result == "read" for outcome in odd.values()) > 0
    assert summary["skipped_count"] == sum(outcome.result != "read" for outcome in odd.values()) > 0
    assert summary["skip_reasons"]["ping.jpg"].startswith("symlink loop")
