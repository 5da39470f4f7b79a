"""The HTTP API's typed bodies: what ``/docs`` shows and what responses are checked against.

``SearchResult`` is the object ``tiefwatch search --format json`` prints for each query (README: the JSON)."""

from __future__ import annotations

from pydantic import BaseModel, Field


class Hit(BaseModel):
    rank: int = Field(description="1 is the most similar")
    id: int = Field(description="index row of the catalogue photo; GET /api/catalog/{id} serves it")
    path: str = Field(description="the catalogue photo's file")
    score: float = Field(description="the final score (re-ranker's when reranked, else cosine), higher is closer")
    faiss_score: float = Field(description="cosine similarity of the backbone vectors, -1..1")
    kept_nearest: bool | None = Field(
        None, description="placed on the first page for being among the backbone's nearest, not for its score"
    )


class SearchResult(BaseModel):
    query: str = Field(description="the query's file name (the upload's name on the web)")
    size: list[int] | None = Field(description="[width, height] of the photo as searched (EXIF rotation applied)")
    box: list[float] | None = Field(description="[x0, y0, x1, y1] of the crop in those pixels; null: whole photo")
    crop_confidence: float | None = Field(None, description="the crop network's confidence in the box, 0..1")
    note: str | None = Field(None, description="how the crop was chosen among several, where it was")
    reranked: bool = Field(description="true when the similarity model ordered the results")
    error: str | None = Field(None, description="why this query could not be searched (results then empty)")
    results: list[Hit]


class Health(BaseModel):
    status: str = "ok"
    version: str
    catalogue: int = Field(description="photos in the index")
    crop: bool = Field(description="a crop model frames queries")
    rerank: bool = Field(description="a similarity model re-ranks results")
    label: bool = Field(description="the labelling page is served under /label/")
    max_upload_bytes: int


class Error(BaseModel):
    status: int
    error: str = Field(description="one line saying what went wrong")
