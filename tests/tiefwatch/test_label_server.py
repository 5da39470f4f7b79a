"""The labelling server (the web app's /label/ pages): only catalogue images are served, bad requests change nothing,
tokens are enforced, questions avoid what was asked, a new model is picked up live, and parallel annotators never
lose or double a row."""

from __future__ import annotations

import csv
import http.client
import json
import multiprocessing
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from itertools import permutations
from pathlib import Path
from typing import Any
from urllib.parse import quote

import numpy as np
import pytest

from tests.helpers import draw_watch
from tiefwatch.config import Config
from tiefwatch.images import save_image
from tiefwatch.index import CatalogIndex, Entry
from tiefwatch.label import LabelApp, make_server
from tiefwatch.triplets import COLUMNS, Triplet, TripletWriter, read_triplets
from tiefwatch.web.server import WebServer
from tiefwatch.workspace import Workspace

TOKEN = "s3cret-token-for-tests"


@pytest.fixture
def labelled_workspace(tmp_path: Path, catalog_dir: Path) -> tuple[Workspace, Config, Path]:
    """An index over the six test watches plus ``evil.png``, a symlink in the catalogue pointing outside it.

    Vectors are random unit rows: the server only needs an index, not the backbone, so these tests stay fast."""
    secret = tmp_path / "secret.png"
    save_image(secret, draw_watch(99))
    (catalog_dir / "evil.png").symlink_to(secret)
    paths = sorted(p.relative_to(catalog_dir).as_posix() for p in catalog_dir.rglob("*.png"))
    entries = [Entry(path, 1, 1, "0" * 40) for path in paths]
    vectors = np.random.default_rng(0).normal(size=(len(paths), 16)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    workspace = Workspace(tmp_path / "ws")
    config = Config()
    CatalogIndex(catalog_dir.resolve(), entries, vectors, {}, config).save(workspace.index_path)
    return workspace, config, tmp_path / "labels" / "triplets.csv"


@contextmanager
def serving(server: WebServer) -> Iterator[int]:
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def request(
    port: int,
    method: str,
    path: str,
    body: Any = None,
    headers: dict[str, str] | None = None,
    raw: bytes | None = None,
) -> tuple[int, bytes]:
    """One request on a fresh connection; ``path`` goes on the wire exactly as given (no normalisation)."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    sent = dict(headers or {})
    data = raw
    if body is not None:
        data = json.dumps(body).encode()
        sent.setdefault("Content-Type", "application/json")
    try:
        connection.request(method, path, body=data, headers=sent)
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


def entry_paths(workspace: Workspace) -> list[str]:
    return [entry.path for entry in CatalogIndex.load(workspace.index_path).entries]


# ---------------------------------------------------------------------------- the page and a question
def test_page_question_and_image(labelled_workspace: tuple[Workspace, Config, Path]) -> None:
    workspace, config, csv_path = labelled_workspace
    server, app = make_server(workspace, config, csv_path, port=0)
    with serving(server) as port:
        status, page = request(port, "GET", "/label/")
        assert status == 200 and b"Which watch is " in page and b"name-dialog" in page
        status, body = request(port, "GET", "/label/api/next?annotator=alice")
        question = json.loads(body)
        assert status == 200 and not question["done"]
        shown = [question["anchor"]["path"]] + [c["path"] for c in question["candidates"]]
        assert len(set(shown)) == len(shown) == len(app.index)  # 7 photos: the anchor and its 6 neighbours
        assert question["model"] == "raw features (cosine)"
        status, image = request(port, "GET", f"/label/image/{app.row_of['w0.png']}")
        assert status == 200 and image[:3] == b"\xff\xd8\xff"  # a JPEG thumbnail
        status, _ = request(port, "GET", "/label/image?path=" + quote("sub/w5.png"))
        assert status == 200


# ---------------------------------------------------------------------------- only catalogue images
def test_path_traversal_and_outside_symlinks_are_refused(labelled_workspace: tuple[Workspace, Config, Path]) -> None:
    workspace, config, csv_path = labelled_workspace
    server, app = make_server(workspace, config, csv_path, port=0)
    secret = (app.index.root.parent / "secret.png").read_bytes()
    evil_row = app.row_of["evil.png"]
    refused = [
        "/label/image/../../secret.png",
        "/label/image/..%2f..%2fsecret.png",
        "/label/image/%2e%2e/secret.png",
        "/label/image?path=../secret.png",
        "/label/image?path=%2e%2e%2fsecret.png",
        "/label/image?path=" + quote(str(app.index.root.parent / "secret.png")),
        "/label/image?path=/etc/passwd",
        "/label/image?path=" + quote(str(app.index.root / "w0.png")),  # absolute, even inside the catalogue
        "/label/image?path=./w0.png",
        "/label/image?path=sub/../w0.png",
        "/label/image?path=w0.png&path=w1.png",
        "/label/image?path=",
        "/label/image/99",
        "/label/image/-1",
        "/label/image/1e3",
        "/../secret.png",
        "//etc/passwd",
        "/label_page.html",
        "/label/label_page.html",
        "/tiefwatch/label.py",
        "/label/../tiefwatch/label.py",
        "/api/catalog/0",  # the search API is not served by the labelling tool
        "/label/image?path=evil.png",  # in the index, but a symlink to a file outside the catalogue
        f"/label/image/{evil_row}",
    ]
    with serving(server) as port:
        for path in refused:
            status, body = request(port, "GET", path)
            assert 400 <= status < 500, (path, status)
            assert secret not in body and b"PNG" not in body, path
        assert request(port, "GET", f"/label/image/{evil_row}")[0] == 403
        assert request(port, "GET", "/")[0] == 307  # no search page: the old address leads to /label/


# ---------------------------------------------------------------------------- malformed requests
def test_malformed_requests_are_4xx_and_change_nothing(labelled_workspace: tuple[Workspace, Config, Path]) -> None:
    workspace, config, csv_path = labelled_workspace
    a, b, c = entry_paths(workspace)[:3]
    TripletWriter(csv_path).append(Triplet(a, b, c, "alice"))
    before = csv_path.read_bytes()
    server, _ = make_server(workspace, config, csv_path, port=0)
    good = {"annotator": "bob", "anchor": a, "near": c, "far": b}
    json_header = {"Content-Type": "application/json"}
    cases: list[tuple[str, str, dict[str, Any]]] = [
        ("POST", "/label/api/triplet", {"raw": b"{not json", "headers": json_header}),
        ("POST", "/label/api/triplet", {"raw": b"\xff\xfe", "headers": json_header}),
        ("POST", "/label/api/triplet", {"body": [a, b, c]}),
        ("POST", "/label/api/triplet", {"body": {"annotator": "bob", "anchor": a, "near": b}}),
        ("POST", "/label/api/triplet", {"body": {**good, "far": ""}}),
        ("POST", "/label/api/triplet", {"body": {**good, "far": 3}}),
        ("POST", "/label/api/triplet", {"body": {**good, "far": c}}),  # near == far
        ("POST", "/label/api/triplet", {"body": {**good, "near": a}}),  # anchor == near
        ("POST", "/label/api/triplet", {"body": {**good, "far": "../secret.png"}}),
        ("POST", "/label/api/triplet", {"body": {**good, "far": "not-in-index.png"}}),
        ("POST", "/label/api/triplet", {"body": {**good, "annotator": ""}}),
        ("POST", "/label/api/triplet", {"body": {**good, "annotator": "=cmd|' /C calc'!A0"}}),
        ("POST", "/label/api/triplet", {"body": {**good, "annotator": "x" * 65}}),
        ("POST", "/label/api/triplet", {"raw": json.dumps(good).encode(), "headers": {"Content-Type": "text/plain"}}),
        ("POST", "/label/api/triplet", {"raw": b"x" * 10_000, "headers": json_header}),  # oversized
        ("POST", "/label/api/triplet", {"raw": b"[" * 2000 + b"]" * 2000, "headers": json_header}),  # nested deep
        ("POST", "/label/api/triplet", {"body": {**good, "near": [[[[[[a]]]]]]}}),  # nested value
        (
            "POST",
            "/label/api/triplet",
            {"raw": b'{"annotator": "bob", "anchor": 1' + b"0" * 4000 + b"}", "headers": json_header},
        ),  # a 4000-digit number
        ("POST", "/label/api/triplet", {"body": good, "headers": {"Origin": "http://evil.example"}}),
        ("POST", "/label/api/triplet", {"body": good, "headers": {"Host": "evil.example:80"}}),  # DNS rebinding
        ("GET", "/label/api/triplet", {}),
        ("PUT", "/label/api/triplet", {"body": good}),
        ("DELETE", "/label/api/undo", {}),
        ("POST", "/label/api/undo", {"body": {"annotator": "al,ice"}}),
        ("POST", "/label/api/undo", {"body": {}}),
        ("POST", "/label/api/skip", {"body": {"annotator": "bob", "anchor": "nope.png"}}),
        ("POST", "/label/api/nothing", {"body": good}),
        ("GET", "/label/api/next", {}),
        ("GET", "/label/api/next?annotator=a%0Ab", {}),
        ("GET", "/label/api/next?" + "&".join(f"x{i}=1" for i in range(40)), {}),
    ]
    with serving(server) as port:
        for method, path, options in cases:
            status, body = request(port, method, path, **options)
            assert 400 <= status < 500, (method, path, options, status)
            assert json.loads(body)["error"], (method, path)  # every refusal says why, as JSON
        for raw in (b"[" * 2000 + b"]" * 2000, b'{"annotator": "bob", "anchor": 1' + b"0" * 4000 + b"}"):
            assert request(port, "POST", "/label/api/triplet", raw=raw, headers=json_header)[0] == 400
        # a request without Content-Length, written by hand
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        connection.putrequest("POST", "/label/api/triplet")
        connection.putheader("Content-Type", "application/json")
        connection.endheaders()
        assert connection.getresponse().status == 411
        connection.close()
        assert csv_path.read_bytes() == before
        # and the same request, well-formed, does change it
        status, body = request(port, "POST", "/label/api/triplet", body=good)
        assert status == 200 and json.loads(body)["written"] is True
    assert len(read_triplets(csv_path)) == 2


# ---------------------------------------------------------------------------- tokens
def test_token_required_off_loopback(labelled_workspace: tuple[Workspace, Config, Path]) -> None:
    workspace, config, csv_path = labelled_workspace
    with pytest.raises(ValueError, match="token"):
        make_server(workspace, config, csv_path, host="0.0.0.0", port=0)
    with pytest.raises(ValueError, match="at least"):
        make_server(workspace, config, csv_path, host="0.0.0.0", port=0, token="short")
    server, app = make_server(workspace, config, csv_path, host="0.0.0.0", port=0, token=TOKEN)
    a, b, c = entry_paths(workspace)[:3]
    with serving(server) as port:
        for path in ("/label/", f"/label/image/{app.row_of['w0.png']}", "/label/api/next?annotator=x"):
            assert request(port, "GET", path)[0] == 401
            assert request(port, "GET", path + ("&" if "?" in path else "?") + "token=wrong-token-guess")[0] == 401
            assert request(port, "GET", path, headers={"X-Tiefwatch-Token": TOKEN[:-1]})[0] == 401
            assert request(port, "GET", path + ("&" if "?" in path else "?") + f"token={TOKEN}")[0] == 200
            assert request(port, "GET", path, headers={"X-Tiefwatch-Token": TOKEN})[0] == 200
        body = {"annotator": "x", "anchor": a, "near": b, "far": c}
        assert request(port, "POST", "/label/api/triplet", body=body)[0] == 401
        assert not csv_path.exists()
        assert request(port, "POST", "/label/api/triplet", body=body, headers={"X-Tiefwatch-Token": TOKEN})[0] == 200
    # a token on loopback is enforced as well
    server, _ = make_server(workspace, config, csv_path, port=0, token=TOKEN)
    with serving(server) as port:
        assert request(port, "GET", "/label/")[0] == 401
        with pytest.raises(RuntimeError, match="cannot listen"):
            make_server(workspace, config, csv_path, port=port)


# ---------------------------------------------------------------------------- what is asked
def test_never_asks_a_pair_already_in_the_csv(labelled_workspace: tuple[Workspace, Config, Path]) -> None:
    workspace, config, csv_path = labelled_workspace
    paths = entry_paths(workspace)
    writer = TripletWriter(csv_path)
    left_open = (paths[2], paths[4], paths[0])  # anchor, and the one pair nobody answered yet
    for anchor in paths:
        others = [p for p in paths if p != anchor]
        for index, (near, far) in enumerate((x, y) for x, y in permutations(others, 2) if x < y):
            if (anchor, {near, far}) == (left_open[0], set(left_open[1:])):
                continue
            writer.append(Triplet(anchor, *((near, far) if index % 2 else (far, near)), annotator="seed"))
    app = LabelApp(workspace, config, csv_path)
    question = app.next_question("alice")
    assert question["anchor"]["path"] == left_open[0]
    shown = {c["path"] for c in question["candidates"]}
    assert set(left_open[1:]) <= shown
    asked = {frozenset(pair) for pair in question["asked"]}
    assert frozenset(left_open[1:]) not in asked
    assert len(asked) == len(shown) * (len(shown) - 1) // 2 - 1
    app.submit("alice", left_open[0], left_open[2], left_open[1])
    assert app.next_question("bob")["done"] is True
    app.undo("alice")
    assert app.next_question("bob")["anchor"]["path"] == left_open[0]


def test_anchors_spread_and_skips_move_on(labelled_workspace: tuple[Workspace, Config, Path]) -> None:
    workspace, config, csv_path = labelled_workspace
    app = LabelApp(workspace, config, csv_path)
    seen = []
    for _ in range(len(app.index)):
        anchor = app.next_question("alice")["anchor"]["path"]
        seen.append(anchor)
        app.skip("alice", anchor)
    assert len(set(seen)) == len(app.index)  # every photo is an anchor once before any comes back
    # two annotators at once are not shown the same anchor
    first = app.next_question("alice")["anchor"]["path"]
    assert app.next_question("bob")["anchor"]["path"] != first


def test_new_model_is_picked_up_without_restart(
    labelled_workspace: tuple[Workspace, Config, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    workspace, config, csv_path = labelled_workspace
    loads: list[int] = []

    class FakeReranker:
        def __init__(self, version: int) -> None:
            self.fingerprint = f"fake-{version}"

        def score(self, query: np.ndarray, candidates: np.ndarray) -> np.ndarray:
            return -(candidates @ query)  # the reverse of cosine: a visibly different ranking

    def fake_load(config: Config, workspace: Workspace, index_signature: dict | None = None) -> FakeReranker | None:
        if not workspace.similarity_model_path.exists():
            return None
        if workspace.similarity_model_path.read_bytes() == b"broken":
            raise RuntimeError("truncated checkpoint")
        loads.append(1)
        return FakeReranker(len(loads))

    monkeypatch.setattr("tiefwatch.label.load_reranker", fake_load)
    app = LabelApp(workspace, config, csv_path)
    assert app.next_question("alice")["model"] == "raw features (cosine)"
    model = workspace.similarity_model_path
    model.parent.mkdir(parents=True, exist_ok=True)
    model.write_bytes(b"v1")
    assert app.next_question("alice")["model"] == "similarity model fake-1"
    assert app.next_question("alice")["model"] == "similarity model fake-1"
    assert len(loads) == 1  # not reloaded while the file is unchanged
    model.write_bytes(b"broken")
    os.utime(model, ns=(1, 1))
    assert app.next_question("alice")["model"] == "similarity model fake-1"  # a bad file keeps the last good model
    model.write_bytes(b"v2")
    assert app.next_question("alice")["model"] == "similarity model fake-2"


# ---------------------------------------------------------------------------- concurrency
def _append_from_process(csv_path: str, keys: list[tuple[str, str, str]], start: Any, name: str) -> None:
    start.wait(30)
    writer = TripletWriter(csv_path)
    for key in keys:
        writer.append(Triplet(*key, annotator=name))


def test_parallel_annotators_and_processes_lose_and_double_nothing(
    labelled_workspace: tuple[Workspace, Config, Path],
) -> None:
    workspace, config, csv_path = labelled_workspace
    paths = entry_paths(workspace)
    all_keys = list(permutations(paths, 3))
    rng = np.random.default_rng(1)
    http_keys = all_keys[:80]
    process_keys = all_keys[60:140]  # overlaps the HTTP ones: the same judgement from both sides lands once
    # Fork the writer processes first, while this process has no server threads yet.
    context = multiprocessing.get_context("fork")
    start = context.Event()
    processes = [
        context.Process(
            target=_append_from_process,
            args=(str(csv_path), [process_keys[i] for i in rng.permutation(len(process_keys))], start, f"proc{n}"),
        )
        for n in range(2)
    ]
    for process in processes:
        process.start()
    server, _ = make_server(workspace, config, csv_path, port=0)
    statuses: list[int] = []

    def annotate(name: str, order: np.ndarray) -> None:
        start.wait(30)
        for i in order:
            anchor, near, far = http_keys[i]
            body = {"annotator": name, "anchor": anchor, "near": near, "far": far}
            statuses.append(request(port, "POST", "/label/api/triplet", body=body)[0])

    with serving(server) as port:
        threads = [threading.Thread(target=annotate, args=(f"t{n}", rng.permutation(len(http_keys)))) for n in range(4)]
        for thread in threads:
            thread.start()
        start.set()
        for thread in threads:
            thread.join(60)
        for process in processes:
            process.join(60)
            assert process.exitcode == 0
    assert statuses == [200] * (4 * len(http_keys))
    raw = csv_path.read_bytes()
    assert raw.endswith(b"\n")
    with open(csv_path, newline="", encoding="utf-8") as handle:
        rows = list(csv.reader(handle))
    assert rows[0] == list(COLUMNS)
    assert all(len(row) == len(COLUMNS) and all(row) for row in rows[1:])  # every line whole
    keys = [tuple(row[:3]) for row in rows[1:]]
    assert len(keys) == len(set(keys))  # nothing doubled
    assert set(keys) == set(http_keys) | set(process_keys)  # nothing lost
    assert read_triplets(csv_path, catalog_root=CatalogIndex.load(workspace.index_path).root).duplicates == 0


def test_model_scores_rank_candidates_as_a_search_of_the_anchors_catalogue_photo_would(
    labelled_workspace: tuple[Workspace, Config, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A search widens its query by its closest candidate (rerank.expand); a catalogue photo's closest is itself,
    so the labelling tool's ranking of other watches for it must not lean toward any one of them."""
    from ranking.rerank import SimilarityReranker

    workspace, config, csv_path = labelled_workspace
    reranker = SimilarityReranker(np.random.default_rng(3).normal(size=(8, 16)).astype(np.float32), "real")
    reranker.expand = 1
    monkeypatch.setattr("tiefwatch.label.load_reranker", lambda *args, **kwargs: reranker)
    workspace.similarity_model_path.parent.mkdir(parents=True, exist_ok=True)
    workspace.similarity_model_path.write_bytes(b"model")
    app = LabelApp(workspace, config, csv_path)
    candidates = np.arange(1, len(app.index))
    widened = app.model_scores(0, candidates)
    assert app.model_note == "similarity model real"
    embedded = reranker.embed(app.index.vectors)
    assert np.allclose(widened, embedded[candidates] @ embedded[0], atol=1e-5)  # as it is, not leaning
