"""The HTTP API's request and response bodies (pydantic models; they are the OpenAPI schema of ``mfrec serve``).

Ids are strings or integers, as the model file has them. Every request body refuses unknown keys (422 naming
the key). Response bodies are built as JSON bytes by the service (``mfrec.serve``) for speed; these models
describe them, and ``tests/test_serve_api.py`` validates real answers against them.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

Id = str | int

#: largest magnitude of a fold-in value the API takes (a rating, count or weight; 1e300 made scores infinite)
MAX_FOLD_IN_VALUE = 1e6


class ItemScore(BaseModel):
    item: Id = Field(..., description="item id")
    score: float = Field(..., description="the model's score (a predicted rating for explicit models)")
    title: str | None = Field(None, description="the item's title, when the model file has titles")


class UserScore(BaseModel):
    user: Id
    score: float


class UserRecommendations(BaseModel):
    """``GET /users/{user}/recommendations``."""

    user: Id
    items: list[ItemScore]


class ItemUsers(BaseModel):
    """``GET /items/{item}/users``: the users most likely to want the item."""

    item: Id
    title: str | None = None
    users: list[UserScore]


class SimilarItems(BaseModel):
    """``GET /items/{item}/similar``: cosine of the item factors, the item itself left out."""

    item: Id
    title: str | None = None
    items: list[ItemScore]


class SimilarUsers(BaseModel):
    """``GET /users/{user}/similar``."""

    user: Id
    users: list[UserScore]


class NewUserRecommendations(BaseModel):
    """``POST /recommendations``: fold-in recommendations for a user the model has not seen."""

    items: list[ItemScore]


class UserHistory(BaseModel):
    """``GET /users/{user}/history``: the user's training items (value = rating, count or confidence)."""

    user: Id
    total: int = Field(..., description="how many items the user has in the training data")
    items: list[dict[str, Any]] = Field(..., description="``item``, ``value`` and ``title`` (when known), "
                                                         "largest value first, at most ``k``")


class IdSearch(BaseModel):
    """``GET /search/users`` and ``GET /search/items``: ids (and titles) starting with or containing a text."""

    results: list[dict[str, Any]]


class Health(BaseModel):
    status: str
    model_class: str
    created: str | None = None
    model_digest: str | None = None
    worker: int


class Reloaded(BaseModel):
    status: str
    created: str | None = None


class Error(BaseModel):
    """Every error answer: ``detail`` is a sentence, or for a malformed request a list of
    ``{"loc": [...], "msg": ..., "type": ...}`` (the body or query key at fault is the last entry of ``loc``)."""

    detail: str | list[dict[str, Any]]


def new_user_body(max_k: int) -> type[BaseModel]:
    """The body of ``POST /recommendations`` with ``k`` capped at ``max_k``."""

    class NewUser(BaseModel):
        model_config = ConfigDict(extra="forbid")

        items: list[Id] = Field(..., min_length=1, max_length=10000, description="item ids the user interacted with")
        values: list[float] | None = Field(
            None, description=f"one value per item (rating, count...), |value| <= {MAX_FOLD_IN_VALUE:g}; default 1")
        k: int = Field(10, ge=1, le=max_k, description=f"number of results (1..{max_k})")

        @field_validator("values")
        @classmethod
        def _bounded(cls, values: list[float] | None) -> list[float] | None:
            for v in values or ():
                if not (abs(v) <= MAX_FOLD_IN_VALUE):  # also refuses NaN
                    raise ValueError(f"each value must be finite with |value| <= {MAX_FOLD_IN_VALUE:g}, got {v!r}")
            return values

    return NewUser
