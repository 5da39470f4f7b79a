"""The labelling page (``tiefwatch label``) under ``/label/``: the HTTP side of ``tiefwatch.label.LabelApp``.

Routes only validate and hand over; ``LabelApp`` chooses questions and writes triplets. Every refusal is a 4xx
``{"status", "error"}`` that changes nothing: at most 16 query parameters, exact catalogue paths or index rows for
images, JSON bodies with a Content-Length of at most ``label.MAX_BODY_BYTES`` (``Guard`` refuses longer ones
unread), annotator names without commas, quotes or control characters.
"""

from __future__ import annotations

import json
import secrets
from http import HTTPStatus
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi import Path as PathParam
from fastapi.responses import RedirectResponse, Response
from starlette.concurrency import run_in_threadpool

from tiefwatch.label import LabelApp, RequestError, annotator_name, text_field

MAX_QUERY_FIELDS = 16


def _few_query_fields(request: Request) -> None:
    if len(request.query_params.multi_items()) > MAX_QUERY_FIELDS:
        raise RequestError(HTTPStatus.BAD_REQUEST, "too many query parameters")


def _single(request: Request, name: str) -> str:
    values = request.query_params.getlist(name)
    if len(values) != 1:
        raise RequestError(HTTPStatus.BAD_REQUEST, f"query parameter {name!r} required once")
    return values[0]


async def _json_body(request: Request) -> dict[str, Any]:
    headers = request.headers
    if headers.get("transfer-encoding"):
        raise RequestError(HTTPStatus.LENGTH_REQUIRED, "send a Content-Length, not a chunked body")
    length = headers.get("content-length")
    if length is None:
        raise RequestError(HTTPStatus.LENGTH_REQUIRED, "Content-Length required")
    if not length.isdigit():
        raise RequestError(HTTPStatus.BAD_REQUEST, "bad Content-Length")
    raw = await request.body()  # Guard has refused anything over MAX_BODY_BYTES
    if headers.get("content-type", "").split(";")[0].strip().lower() != "application/json":
        raise RequestError(HTTPStatus.UNSUPPORTED_MEDIA_TYPE, "send application/json")
    try:
        body = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):  # RecursionError: [[[[...]]]] nested too deep
        raise RequestError(HTTPStatus.BAD_REQUEST, "body is not valid JSON") from None
    if not isinstance(body, dict):
        raise RequestError(HTTPStatus.BAD_REQUEST, "body must be a JSON object")
    return body


def label_router(app: LabelApp) -> APIRouter:
    router = APIRouter(prefix="/label", tags=["labelling"], dependencies=[Depends(_few_query_fields)])

    @router.get("", include_in_schema=False)
    def to_page(request: Request) -> RedirectResponse:
        query = f"?{request.url.query}" if request.url.query else ""
        return RedirectResponse(f"/label/{query}")

    @router.get("/", include_in_schema=False)
    @router.get("/index.html", include_in_schema=False)
    def page() -> Response:
        nonce = secrets.token_urlsafe(16)
        policy = (
            "default-src 'none'; img-src 'self'; connect-src 'self'; "
            f"script-src 'nonce-{nonce}'; style-src 'nonce-{nonce}'; "
            "base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
        )
        return Response(app.page(nonce), media_type="text/html; charset=utf-8",
                        headers={"Content-Security-Policy": policy})  # fmt: skip

    def image_response(row: int) -> Response:
        return Response(app.image(row), media_type="image/jpeg", headers={"Cache-Control": "private, max-age=3600"})

    @router.get("/image/{row}", summary="A catalogue thumbnail by index row")
    def image_by_row(row: Annotated[int, PathParam(ge=0, le=999_999_999)]) -> Response:
        return image_response(row)

    @router.get("/image", summary="A catalogue thumbnail by its exact index path")
    def image_by_path(request: Request) -> Response:
        row = app.row_of.get(_single(request, "path"))  # exact index paths only; nothing is joined or resolved
        if row is None:
            raise RequestError(HTTPStatus.NOT_FOUND, "no such catalogue image")
        return image_response(row)

    @router.get("/api/next", summary="The next question for this annotator")
    def next_question(request: Request) -> dict[str, Any]:
        return app.next_question(annotator_name(_single(request, "annotator")))

    @router.post("/api/triplet", summary="Record a triplet: anchor, the nearer and the farther watch")
    async def triplet(request: Request) -> dict[str, Any]:
        body = await _json_body(request)
        fields = [text_field(body, name) for name in ("anchor", "near", "far")]
        return await run_in_threadpool(app.submit, annotator_name(body.get("annotator")), *fields)

    @router.post("/api/undo", summary="Remove this annotator's last triplet")
    async def undo(request: Request) -> dict[str, Any]:
        body = await _json_body(request)
        return await run_in_threadpool(app.undo, annotator_name(body.get("annotator")))

    @router.post("/api/skip", summary="Pass on this anchor for now")
    async def skip(request: Request) -> dict[str, Any]:
        body = await _json_body(request)
        return await run_in_threadpool(app.skip, annotator_name(body.get("annotator")), text_field(body, "anchor"))

    return router
