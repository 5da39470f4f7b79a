"""The FastAPI app: the search page at ``/``, the JSON API under ``/api``, the labelling page under ``/label/``.

Each worker process loads one ``Searcher`` (index and models) when it starts (the lifespan) and answers requests
concurrently from a thread pool: the loaded models are only read. Every request passes ``Guard`` first: the access
check of ``security``, a body-size limit, and the same security headers on every answer. Errors are JSON
``{"status": 413, "error": "one line"}``.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from http import HTTPStatus
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

from fastapi import FastAPI, File, Form, Request, UploadFile
from fastapi import Path as PathParam
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from fastapi_offline import FastAPIOffline
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from tiefwatch import __version__
from tiefwatch.config import Config
from tiefwatch.images import ImageReadError, load_image_bytes
from tiefwatch.label import MAX_BODY_BYTES as LABEL_BODY_BYTES
from tiefwatch.label import CatalogThumbnails, LabelApp
from tiefwatch.web.schemas import Error, Health, SearchResult
from tiefwatch.web.security import AccessDenied, AccessPolicy, check_token, is_loopback, suggest_token
from tiefwatch.workspace import Workspace

if TYPE_CHECKING:
    from tiefwatch.search import Searcher

log = logging.getLogger(__name__)

STATIC_DIR = Path(__file__).with_name("static")
MAX_UPLOAD_BYTES = 10 * 1024 * 1024  # a phone photo is 2-6 MB
MAX_K = 100
THUMBNAIL_SIDE = 320
LARGE_SIDE = 1024
SETTINGS_ENV = "TIEFWATCH_SERVE_SETTINGS"
PUBLIC_PATHS = ("/static/", "/static-offline-docs/")  # the page's own script and style, the docs' bundle
PUBLIC_EXACT = {"/docs", "/redoc", "/openapi.json", "/favicon.ico"}
PAGE_POLICY = (
    "default-src 'none'; img-src 'self' blob:; connect-src 'self'; script-src 'self'; style-src 'self'; "
    "base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
SECURITY_HEADERS = [
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),  # the token may be in the page's URL
    (b"x-frame-options", b"DENY"),
]


# ---------------------------------------------------------------------------- state
@dataclass
class WebState:
    """What one worker holds: settings, and the searcher and labelling app once loaded."""

    workspace: Workspace
    config: Config
    policy: AccessPolicy
    search: bool = True
    max_upload_bytes: int = MAX_UPLOAD_BYTES
    searcher: Searcher | None = None  # imported when loaded
    label_app: LabelApp | None = None
    thumbnails: CatalogThumbnails | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def load(self) -> None:
        """Load the searcher once (a lifespan that runs again, as in tests, reuses it)."""
        with self._lock:
            if self.search and self.searcher is None:
                from tiefwatch.search import Searcher

                self.searcher = Searcher(self.workspace, self.config)
                log.info("worker %d: loaded %d catalogue photos", os.getpid(), len(self.searcher))
            if self.searcher is not None and self.thumbnails is None:
                self.thumbnails = CatalogThumbnails(self.searcher.index)


# ---------------------------------------------------------------------------- the guard
class BodyTooLarge(StarletteHTTPException):
    def __init__(self, limit: int) -> None:
        super().__init__(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, f"request body over {limit} bytes")


class Guard:
    """Access check, body limit (declared and actually sent) and security headers, before any route runs."""

    def __init__(self, app: ASGIApp, state: WebState) -> None:
        self.app = app
        self.state = state

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request = Request(scope)
        path: str = scope["path"]
        public = path in PUBLIC_EXACT or path.startswith(PUBLIC_PATHS)
        try:
            self.state.policy.check(request, need_token=not public)
        except AccessDenied as denied:
            await error_response(denied.status, denied.message)(scope, receive, send)
            return
        limit = LABEL_BODY_BYTES if path.startswith("/label/") else self.state.max_upload_bytes
        declared = request.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > limit:
            # refused unread: the connection is closed rather than reused for the rest of the body
            response = error_response(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, f"request body over {limit} bytes")
            response.headers["Connection"] = "close"
            await response(scope, receive, send)
            return
        received = 0
        started = False

        async def counted() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise BodyTooLarge(limit)
            return message

        async def with_headers(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                headers = list(message.get("headers", []))
                present = {name.lower() for name, _ in headers}
                headers += [(name, value) for name, value in SECURITY_HEADERS if name not in present]
                if b"cache-control" not in present:
                    headers.append((b"cache-control", b"no-store"))
                message = {**message, "headers": headers}
            await send(message)

        try:
            await self.app(scope, counted, with_headers)
        except BodyTooLarge as error:
            if started:
                raise
            await error_response(error.status_code, str(error.detail))(scope, receive, with_headers)


def error_response(status: int, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"status": int(status), "error": message}, status_code=int(status), headers=headers)


# ---------------------------------------------------------------------------- the app
def create_app(
    workspace: Workspace | str | Path | None = None,
    config: Config | None = None,
    *,
    token: str | None = None,
    host: str = "127.0.0.1",
    search: bool = True,
    label_triplets: str | Path | None = None,
    max_upload_bytes: int = MAX_UPLOAD_BYTES,
    searcher: Searcher | None = None,
) -> FastAPI:
    """The web app over a workspace. ``search=False`` serves the labelling page alone (``tiefwatch label``);
    ``label_triplets`` adds it under ``/label/``, appending to that CSV; ``searcher``: one already loaded (else
    each worker loads its own at startup). ``host`` is where it will listen: without a token, only a loopback
    server checks Host headers (an address elsewhere may be reached under any name)."""
    workspace = workspace if isinstance(workspace, Workspace) else Workspace(workspace)
    config = config or workspace.load_config()
    check_token(token)
    state = WebState(
        workspace,
        config,
        AccessPolicy(token, loopback_only=token is None and is_loopback(host)),
        search=search,
        max_upload_bytes=max_upload_bytes,
        searcher=searcher,
    )
    if label_triplets is not None:
        if token is None and not is_loopback(host):
            raise ValueError(
                f"binding to {host} exposes the labelling tool to the network; give a token, e.g. "
                f"--token {suggest_token()}"
            )
        state.label_app = LabelApp(workspace, config, Path(label_triplets), token=token)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await run_in_threadpool(state.load)
        yield

    app = FastAPIOffline(
        title="tiefwatch",
        version=__version__,
        description="Find the catalogue watches most similar to a photo. POST a photo to /api/search.",
        lifespan=lifespan,
        responses={400: {"model": Error}, 401: {"model": Error}, 403: {"model": Error}, 413: {"model": Error}},
    )
    app.state.tiefwatch = state
    app.add_middleware(Guard, state=state)
    _add_error_handlers(app)
    _add_search_routes(app, state)
    if state.label_app is not None:
        from tiefwatch.web.label_routes import label_router

        app.include_router(label_router(state.label_app))
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    return app


def _add_error_handlers(app: FastAPI) -> None:
    from tiefwatch.label import RequestError

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, error: StarletteHTTPException) -> JSONResponse:
        return error_response(error.status_code, str(error.detail), error.headers)

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, error: RequestValidationError) -> JSONResponse:
        first = error.errors()[0] if error.errors() else {}
        where = ".".join(str(part) for part in first.get("loc", ()) if part not in ("body", "query", "path"))
        message = f"{where}: {first.get('msg', 'invalid request')}" if where else first.get("msg", "invalid request")
        return error_response(HTTPStatus.UNPROCESSABLE_ENTITY, message)

    @app.exception_handler(RequestError)
    async def refused(request: Request, error: RequestError) -> JSONResponse:
        return error_response(error.status, error.message)

    @app.exception_handler(Exception)
    async def failed(request: Request, error: Exception) -> JSONResponse:
        log.error("%s %s failed", request.method, request.url.path, exc_info=error)
        return error_response(HTTPStatus.INTERNAL_SERVER_ERROR, "internal error; see the server log")


def _add_search_routes(app: FastAPI, state: WebState) -> None:
    def searcher() -> Searcher:
        if state.searcher is None:
            raise StarletteHTTPException(HTTPStatus.NOT_FOUND, "search is not served here")
        return state.searcher

    @app.get("/", include_in_schema=False)
    def page(request: Request) -> Response:
        if not state.search:  # `tiefwatch label`: its page, where its old address pointed
            if state.label_app is None:
                raise StarletteHTTPException(HTTPStatus.NOT_FOUND, "search is not served here")
            return RedirectResponse("/label/" + (f"?{request.url.query}" if request.url.query else ""))
        return FileResponse(STATIC_DIR / "index.html", headers={"Content-Security-Policy": PAGE_POLICY})

    @app.get("/api/health", response_model=Health, summary="Is the server up, and what does it serve")
    def health() -> Health:
        loaded = state.searcher
        index = loaded.index if loaded is not None else getattr(state.label_app, "index", None)
        return Health(
            version=__version__,
            catalogue=len(index) if index is not None else 0,
            crop=bool(loaded is not None and loaded.pipeline.cropper is not None),
            rerank=bool(loaded is not None and loaded.reranker is not None),
            label=state.label_app is not None,
            max_upload_bytes=state.max_upload_bytes,
        )

    @app.post(
        "/api/search",
        response_model=SearchResult,
        response_model_exclude_unset=True,
        summary="The most similar catalogue watches for one photo",
        description="The same object as `tiefwatch search --format json` prints for each query.",
    )
    def api_search(
        image: Annotated[UploadFile, File(description="the photo (JPEG, PNG, WebP, BMP)")],
        k: Annotated[int | None, Form(ge=1, le=MAX_K, description="results (default: config search.k)")] = None,
        rerank: Annotated[bool, Form(description="re-rank with the similarity model")] = True,
        crop: Annotated[bool, Form(description="crop the watch first (false: the whole photo)")] = True,
    ) -> dict[str, Any]:
        loaded = searcher()
        name = Path(image.filename or "upload").name[:200] or "upload"
        data = image.file.read()
        if not data:
            raise StarletteHTTPException(HTTPStatus.BAD_REQUEST, f"{name}: empty upload")
        try:
            array = load_image_bytes(data, name)
        except ImageReadError as error:
            too_large = error.reason.startswith("too large")
            status = HTTPStatus.REQUEST_ENTITY_TOO_LARGE if too_large else HTTPStatus.BAD_REQUEST
            raise StarletteHTTPException(status, str(error)) from error
        return loaded.search_images([array], [name], k, crop=crop, rerank=rerank)[0].as_dict()

    @app.get(
        "/api/catalog/{id}",
        response_class=Response,
        summary="A catalogue photo, by the index row a search result names",
        responses={200: {"content": {"image/jpeg": {}}}},
    )
    def catalog_image(
        id: Annotated[int, PathParam(ge=0, description="`id` of a search result")],
        large: bool = False,
    ) -> Response:
        searcher()
        assert state.thumbnails is not None
        data = state.thumbnails.get(id, LARGE_SIDE if large else THUMBNAIL_SIDE)
        return Response(data, media_type="image/jpeg", headers={"Cache-Control": "private, max-age=3600"})


# ---------------------------------------------------------------------------- running it
def app_from_env() -> FastAPI:
    """The app each uvicorn worker builds (``--workers N``): settings come from the parent via the environment."""
    settings = json.loads(os.environ[SETTINGS_ENV])
    return create_app(
        settings["workspace"],
        Config.from_dict(settings["config"]),
        token=settings["token"],
        host=settings["host"],
        label_triplets=settings["label_triplets"],
        max_upload_bytes=settings["max_upload_bytes"],
    )


def serve(
    workspace: Workspace | str | Path | None = None,
    config: Config | None = None,
    host: str = "127.0.0.1",
    port: int = 8000,
    workers: int = 1,
    token: str | None = None,
    label_triplets: str | Path | None = None,
    max_upload_bytes: int = MAX_UPLOAD_BYTES,
    open_browser: bool = False,
    access_log: bool = False,
) -> None:
    """Library form of ``tiefwatch serve``: serve until interrupted (Ctrl-C). One worker loads the models here
    before listening, so a missing index fails at once; more workers each load their own."""
    import uvicorn

    from tiefwatch.web.server import WebServer

    workspace = workspace if isinstance(workspace, Workspace) else Workspace(workspace)
    config = config or workspace.load_config()
    check_token(token)
    if workers < 1:
        raise ValueError(f"--workers must be at least 1, got {workers}")
    if not is_loopback(host) and token is None:
        print(
            f"tiefwatch serve: warning: listening on {host} without a token: anyone who can reach this machine "
            f"can search the catalogue and see its photos. Give --token (e.g. --token {suggest_token()}) or "
            "bind 127.0.0.1 behind a proxy.",
            file=sys.stderr,
        )
    if workers == 1:
        from tiefwatch.search import Searcher

        app = create_app(
            workspace, config, token=token, host=host, label_triplets=label_triplets,
            max_upload_bytes=max_upload_bytes, searcher=Searcher(workspace, config),
        )  # fmt: skip
        server = WebServer(app, host, port, access_log=access_log)
        _announce(server.url(token), app.state.tiefwatch, workers, open_browser)
        try:
            server.serve_forever()
        finally:
            server.server_close()
        return
    if not workspace.index_path.exists():
        raise FileNotFoundError(f"no index at {workspace.index_path}; run `tiefwatch index CATALOG_DIR` first")
    WebServer.check_port(host, port)
    os.environ[SETTINGS_ENV] = json.dumps(
        {
            "workspace": str(workspace.root),
            "config": config.to_dict(),
            "token": token,
            "host": host,
            "label_triplets": None if label_triplets is None else str(label_triplets),
            "max_upload_bytes": max_upload_bytes,
        }
    )
    url = WebServer.format_url(host, port, token)
    print(f"tiefwatch serve: {workers} workers at {url} (API docs: /docs; Ctrl-C stops)", file=sys.stderr)
    if open_browser:
        import webbrowser

        webbrowser.open(url)
    uvicorn.run(
        "tiefwatch.web.app:app_from_env", factory=True, host=host.strip("[]"), port=port, workers=workers,
        log_level="warning", access_log=access_log,
    )  # fmt: skip


def _announce(url: str, state: WebState, workers: int, open_browser: bool) -> None:
    searcher = state.searcher
    what = f"searching {len(searcher)} catalogue photos of {state.workspace.root}" if searcher else "labelling"
    label = f"; labelling page {url.split('?')[0].rstrip('/')}/label/" if state.label_app and searcher else ""
    print(f"tiefwatch serve: {what} at {url} (API docs: /docs{label}; Ctrl-C stops)", file=sys.stderr)
    if open_browser:
        import webbrowser

        webbrowser.open(url)
