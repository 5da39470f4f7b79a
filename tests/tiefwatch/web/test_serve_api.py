"""The HTTP API: the same JSON as the CLI, thumbnails by index row only, JSON errors, body limits, the access
checks, and concurrent clients on a real server answered without errors."""

from __future__ import annotations

import http.client
import json
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from tiefwatch.config import Config
from tiefwatch.web.app import create_app
from tiefwatch.web.server import WebServer
from tiefwatch.workspace import Workspace

TOKEN = "s3cret-token-for-tests"


def upload(client: TestClient, data: bytes, name: str = "photo.png", **form: str):
    return client.post("/api/search", files={"image": (name, data, "image/png")}, data=form)


def test_search_returns_the_cli_json_and_thumbnails_by_row(
    client: TestClient, searcher, served_workspace: tuple[Workspace, Config, Path], png_bytes: Callable[..., bytes]
) -> None:
    _, _, catalog = served_workspace
    response = upload(client, (catalog / "w2.png").read_bytes(), name="w2.png", k="4")
    assert response.status_code == 200, response.text
    data = response.json()
    expected = searcher.search_paths([catalog / "w2.png"], k=4, show_progress=False)[0].as_dict()
    assert data == {**expected, "query": "w2.png"}  # the object `search --format json` prints for this photo
    assert [hit["rank"] for hit in data["results"]] == [1, 2, 3, 4]
    assert data["size"] == [96, 96] and data["results"][0]["path"] == str((catalog / "w2.png").resolve())
    first = data["results"][0]["id"]
    image = client.get(f"/api/catalog/{first}")
    assert image.status_code == 200 and image.content[:3] == b"\xff\xd8\xff"
    assert image.headers["content-type"] == "image/jpeg"
    assert client.get(f"/api/catalog/{first}?large=true").status_code == 200
    for bad in ("/api/catalog/6", "/api/catalog/-1", "/api/catalog/1e3", "/api/catalog/..%2Fw1.png"):
        refused = client.get(bad)
        assert 400 <= refused.status_code < 500 and "error" in refused.json(), bad
    health = client.get("/api/health").json()
    assert health["status"] == "ok" and health["catalogue"] == 6 and health["label"] is False


def test_options_and_errors_are_json_with_one_line(client: TestClient, png_bytes: Callable[..., bytes]) -> None:
    photo = png_bytes(3, 128)
    data = upload(client, photo, k="2", rerank="false", crop="false").json()
    assert len(data["results"]) == 2 and data["reranked"] is False and data["box"] is None
    assert upload(client, png_bytes(3, 128, "JPEG"), name="x.jpg").status_code == 200
    cases = [
        (upload(client, photo, k="0"), 422),
        (upload(client, photo, k="many"), 422),
        (upload(client, b"not an image", name="evil.png"), 400),
        (upload(client, b"", name="empty.png"), 400),
        (client.post("/api/search", data={"k": "3"}), 422),  # no image
        (client.get("/api/search"), 405),
        (client.get("/nothing"), 404),
    ]
    for response, status in cases:
        body = response.json()
        assert response.status_code == status and body["status"] == status, (status, body)
        assert body["error"] and "\n" not in body["error"]
    assert "evil.png: not a recognised image format" in cases[2][0].json()["error"]
    assert "k" in cases[0][0].json()["error"]


def test_page_docs_and_security_headers(client: TestClient) -> None:
    page = client.get("/")
    assert page.status_code == 200 and 'id="file"' in page.text and 'capture="environment"' in page.text
    assert "script-src 'self'" in page.headers["content-security-policy"]
    for asset in (page.text, client.get("/static/search.js").text, client.get("/static/search.css").text):
        assert "http://" not in asset and "https://" not in asset and "//cdn" not in asset  # nothing from elsewhere
    assert page.headers["x-content-type-options"] == "nosniff" and page.headers["x-frame-options"] == "DENY"
    assert client.get("/static/search.js").status_code == 200
    docs = client.get("/docs")
    assert docs.status_code == 200 and "cdn." not in docs.text  # works offline
    schema = client.get("/openapi.json").json()
    assert {"/api/search", "/api/health", "/api/catalog/{id}"} <= set(schema["paths"])


def test_body_limit(served_workspace: tuple[Workspace, Config, Path], searcher, png_bytes) -> None:
    workspace, config, _ = served_workspace
    app = create_app(workspace, config, searcher=searcher, max_upload_bytes=20_000)
    with TestClient(app, base_url="http://127.0.0.1") as small:
        assert upload(small, png_bytes(1)).status_code == 200
        big = upload(small, b"\x89PNG" + b"0" * 30_000)
        assert big.status_code == 413 and big.json()["error"] == "request body over 20000 bytes"

        def chunks():  # no Content-Length: counted as it arrives
            yield b'--x\r\nContent-Disposition: form-data; name="image"; filename="a.png"\r\n\r\n' + b"0" * 15_000
            yield b"0" * 15_000

        multipart = {"Content-Type": "multipart/form-data; boundary=x"}
        chunked = small.post("/api/search", content=chunks(), headers=multipart)
        assert chunked.status_code == 413


def test_decompression_bombs_are_refused(client: TestClient, png_bytes, monkeypatch: pytest.MonkeyPatch) -> None:
    import tiefwatch.images

    monkeypatch.setattr(tiefwatch.images, "MAX_PIXELS", 64 * 64)  # the reader's limit, respected: 96 x 96 is over it
    refused = upload(client, png_bytes(2))
    assert refused.status_code == 413 and "too large" in refused.json()["error"]


def test_token_host_and_origin(served_workspace: tuple[Workspace, Config, Path], searcher, png_bytes) -> None:
    workspace, config, _ = served_workspace
    with pytest.raises(ValueError, match="at least"):
        create_app(workspace, config, searcher=searcher, token="short")
    app = create_app(workspace, config, searcher=searcher, token=TOKEN, host="0.0.0.0")
    with TestClient(app, base_url="http://shop.example") as client:
        assert client.get("/api/health").status_code == 401
        assert client.get("/api/health", headers={"Authorization": "Bearer wrong-token-guess"}).status_code == 401
        assert client.get("/api/health", headers={"Authorization": f"Bearer {TOKEN}"}).status_code == 200
        assert client.get("/api/health", headers={"X-Tiefwatch-Token": TOKEN}).status_code == 200
        assert client.get(f"/api/catalog/0?token={TOKEN}").status_code == 200  # <img> tags cannot send headers
        assert upload(client, png_bytes(1)).status_code == 401
        assert client.get("/static/search.css").status_code == 200  # public: no catalogue data in it
        foreign = {"Authorization": f"Bearer {TOKEN}", "Origin": "http://evil.example"}
        assert client.get("/api/health", headers=foreign).status_code == 403
    # without a token, a loopback server answers loopback Host names only (no DNS rebinding)
    with TestClient(create_app(workspace, config, searcher=searcher), base_url="http://evil.example") as client:
        response = client.get("/api/health")
        assert response.status_code == 403 and response.json()["error"] == "this server answers only to localhost"


def test_concurrent_clients_on_a_real_server(
    served_workspace: tuple[Workspace, Config, Path], searcher, png_bytes: Callable[..., bytes]
) -> None:
    """8 clients x 3 searches on one worker: every answer 200 and right (the full 8 x 50 is tools/bench_serve.py)."""
    workspace, config, _ = served_workspace
    server = WebServer(create_app(workspace, config, searcher=searcher), port=0)
    server.start()
    port = server.server_address[1]
    photos = {seed: png_bytes(seed) for seed in range(6) if seed != 5}
    outcomes: list[tuple[int, int, str]] = []

    def client(number: int) -> None:
        for attempt in range(3):
            seed = (number + attempt) % 5
            boundary = "tiefwatchtest"
            body = (
                (
                    f'--{boundary}\r\nContent-Disposition: form-data; name="image"; filename="w{seed}.png"\r\n'
                    f"Content-Type: image/png\r\n\r\n"
                ).encode()
                + photos[seed]
                + f"\r\n--{boundary}--\r\n".encode()
            )
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
            connection.request(
                "POST", "/api/search", body, {"Content-Type": f"multipart/form-data; boundary={boundary}"}
            )
            response = connection.getresponse()
            data = json.loads(response.read())
            first = Path(data["results"][0]["path"]).name if data.get("results") else ""
            outcomes.append((response.status, seed, first))
            connection.close()

    started = time.perf_counter()
    threads = [threading.Thread(target=client, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    server.shutdown()
    server.server_close()
    assert len(outcomes) == 24 and all(status == 200 for status, _, _ in outcomes)
    assert all(first == f"w{seed}.png" for _, seed, first in outcomes)  # each photo finds its own watch
    assert time.perf_counter() - started < 120


def test_serve_warns_off_loopback_and_refuses_labelling_without_a_token(
    served_workspace: tuple[Workspace, Config, Path],
    searcher,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
) -> None:
    from tiefwatch.cli import main
    from tiefwatch.web.app import serve

    workspace, config, _ = served_workspace
    served: list[tuple[str, int]] = []
    monkeypatch.setattr("tiefwatch.search.Searcher", lambda *args, **kwargs: searcher)
    monkeypatch.setattr(WebServer, "serve_forever", lambda self, poll_interval=None: served.append(self.server_address))
    serve(workspace, config, host="127.0.0.1", port=0)
    assert "warning" not in capsys.readouterr().err
    serve(workspace, config, host="0.0.0.0", port=0)
    err = capsys.readouterr().err
    assert "warning: listening on 0.0.0.0 without a token" in err and "--token" in err
    serve(workspace, config, host="0.0.0.0", port=0, token=TOKEN)
    assert "warning" not in capsys.readouterr().err and len(served) == 3
    with pytest.raises(ValueError, match="labelling tool to the network"):
        serve(workspace, config, host="0.0.0.0", port=0, label_triplets=tmp_path / "t.csv")
    for argv, message in [
        (["--workers", "0"], "--workers must be at least 1"),
        (["--token", "short"], "at least 12 characters"),
        (["--host", "0.0.0.0", "--label", str(tmp_path / "t.csv")], "give a token"),
    ]:
        assert main(["serve", "-w", str(workspace.root), *argv]) == 2  # usage errors, before any model loads
        assert message in capsys.readouterr().err
    assert main(["label", "-w", str(workspace.root), "--host", "0.0.0.0"]) == 2
    assert "give a token" in capsys.readouterr().err
