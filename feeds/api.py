"""Starlette routes for Stream's v1.0 feed API; ``feed_routes(service)`` is mounted at ``/api/v1.0``.

Each handler authenticates (see :mod:`feeds.auth`), parses, calls :class:`~feeds.service.FeedService`
and renders JSON with a ``duration`` field, as Stream does.  Errors are rendered in Stream's shape,
``{"detail", "status_code", "code", "exception", "duration"}``, with the error's HTTP status; Stream's
clients map ``code`` to their exception classes.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from feeds.apps import App
from feeds.errors import FeedError, InputError
from feeds.keys import FeedRef
from feeds.reads import ReadParams
from feeds.service import FeedService

log = logging.getLogger(__name__)
Handler = Callable[[Request], Awaitable[Any]]


def _json(body: dict[str, Any], started: float, status: int = 200) -> Response:
    body["duration"] = f"{(time.perf_counter() - started) * 1000:.2f}ms"
    return Response(orjson.dumps(body), status_code=status, media_type="application/json")


def error_response(exc: FeedError, started: float) -> Response:
    body = {"detail": exc.detail, "status_code": exc.status, "code": exc.code, "exception": exc.exception}
    return _json(body, started, exc.status)


def _endpoint(fn: Handler) -> Callable[[Request], Awaitable[Response]]:
    async def endpoint(request: Request) -> Response:
        started = time.perf_counter()
        try:
            result = await fn(request)
        except FeedError as exc:
            return error_response(exc, started)
        except Exception:  # task boundary: a bug becomes a Stream-shaped 500, and is logged
            log.exception("feed API error on %s %s", request.method, request.url.path)
            return error_response(FeedError("internal server error"), started)
        return _json(result if isinstance(result, dict) else {}, started)

    return endpoint


async def _body(request: Request) -> Any:
    raw = await request.body()
    if not raw:
        return {}
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise InputError("request body is not valid JSON") from None


def _flag(value: str | None) -> bool:
    return value in ("1", "true", "True")


def _copy_limit(raw: Any) -> int | None:
    if raw in (None, ""):
        return None
    try:
        return int(raw)
    except (TypeError, ValueError):
        raise InputError("activity_copy_limit must be an integer") from None


def _pairs(data: Any, what: str) -> list[dict[str, Any]]:
    if not isinstance(data, list) or not all(
        isinstance(d, dict) and "source" in d and "target" in d for d in data
    ):
        raise InputError(f"{what} expects a list of {{source, target}} objects")
    return data


class _Api:
    def __init__(self, service: FeedService) -> None:
        self.svc = service

    def _auth(self, request: Request, resource: str, action: str, feed_id: str | None = "*") -> App:
        return self.svc.auth.authenticate(
            request.query_params, request.headers, resource=resource, action=action, feed_id=feed_id
        )

    def _feed(self, request: Request, resource: str, action: str) -> tuple[App, FeedRef]:
        group, user_id = request.path_params["group"], request.path_params["user_id"]
        app = self._auth(request, resource, action, f"{group}{user_id}")
        return app, self.svc.feed(app, group, user_id)

    async def add(self, request: Request) -> dict[str, Any]:
        app, feed = self._feed(request, "feed", "write")
        data = await _body(request)
        if isinstance(data, dict) and "activities" in data:
            if not isinstance(data["activities"], list):
                raise InputError("'activities' must be a list")
            return {"activities": await self.svc.add_activities(app, feed, data["activities"])}
        (stored,) = await self.svc.add_activities(app, feed, [data])
        return stored

    async def read(self, request: Request) -> dict[str, Any]:
        app, feed = self._feed(request, "feed", "read")
        return await self.svc.read(app, feed, ReadParams.from_query(request.query_params))

    async def remove(self, request: Request) -> dict[str, Any]:
        app, feed = self._feed(request, "feed", "delete")
        ident = request.path_params["activity_id"]
        by_fid = _flag(request.query_params.get("foreign_id"))
        await self.svc.remove_activity(app, feed, ident, by_foreign_id=by_fid)
        return {"removed": ident}

    async def follow(self, request: Request) -> dict[str, Any]:
        app, feed = self._feed(request, "follower", "write")
        data = await _body(request)
        if not isinstance(data, dict) or not isinstance(data.get("target"), str):
            raise InputError("follow needs a 'target' feed id")
        target = self.svc.parse_feed(app, data["target"])
        await self.svc.follow(app, feed, target, _copy_limit(data.get("activity_copy_limit")))
        return {}

    async def unfollow(self, request: Request) -> dict[str, Any]:
        app, feed = self._feed(request, "follower", "delete")
        target = self.svc.parse_feed(app, request.path_params["target"])
        keep = _flag(request.query_params.get("keep_history"))
        await self.svc.unfollow(app, feed, target, keep_history=keep)
        return {}

    async def _follows(self, request: Request, *, followers: bool) -> dict[str, Any]:
        _, feed = self._feed(request, "follower", "read")
        q = request.query_params
        limit, offset = _int(q.get("limit"), 25), _int(q.get("offset"), 0)
        only = [f for f in (q.get("filter") or "").split(",") if f]
        return {
            "results": await self.svc.follows(
                feed, followers=followers, offset=offset, limit=limit, only=only
            )
        }

    async def followers(self, request: Request) -> dict[str, Any]:
        return await self._follows(request, followers=True)

    async def following(self, request: Request) -> dict[str, Any]:
        return await self._follows(request, followers=False)

    async def follow_many(self, request: Request) -> dict[str, Any]:
        app = self._auth(request, "follower", "write")
        limit = _copy_limit(request.query_params.get("activity_copy_limit"))
        pairs = _pairs(await _body(request), "follow_many")
        refs = [(self.svc.parse_feed(app, p["source"]), self.svc.parse_feed(app, p["target"])) for p in pairs]
        for source, target in refs:
            await self.svc.follow(app, source, target, limit)
        return {}

    async def unfollow_many(self, request: Request) -> dict[str, Any]:
        app = self._auth(request, "follower", "delete")
        pairs = _pairs(await _body(request), "unfollow_many")
        for p in pairs:
            source, target = self.svc.parse_feed(app, p["source"]), self.svc.parse_feed(app, p["target"])
            await self.svc.unfollow(app, source, target, keep_history=bool(p.get("keep_history")))
        return {}

    async def add_to_many(self, request: Request) -> dict[str, Any]:
        app = self._auth(request, "feed", "write")
        data = await _body(request)
        if not isinstance(data, dict) or not isinstance(data.get("feeds"), list):
            raise InputError("add_to_many needs 'activity' and a list of 'feeds'")
        await self.svc.add_to_many(app, data.get("activity"), [str(f) for f in data["feeds"]])
        return {}

    async def to_targets(self, request: Request) -> dict[str, Any]:
        app, feed = self._feed(request, "feed_targets", "write")
        data = await _body(request)
        if not isinstance(data, dict):
            raise InputError("expected an object with foreign_id, time and targets")
        return await self.svc.update_to_targets(app, feed, data)

    async def get_activities(self, request: Request) -> dict[str, Any]:
        app = self._auth(request, "activities", "read")
        q = request.query_params
        ids = [i for i in (q.get("ids") or "").split(",") if i]
        fids = [f for f in (q.get("foreign_ids") or "").split(",") if f]
        times = [t for t in (q.get("timestamps") or "").split(",") if t]
        if len(fids) != len(times) or not (ids or fids):
            raise InputError("give ids, or foreign_ids and timestamps of the same length")
        found = await self.svc.get_activities(
            app, ids=ids, foreign_id_times=list(zip(fids, times, strict=True))
        )
        return {"results": found}

    async def update_activities(self, request: Request) -> dict[str, Any]:
        app = self._auth(request, "activities", "write")
        data = await _body(request)
        if not isinstance(data, dict) or not isinstance(data.get("activities"), list):
            raise InputError("expected {'activities': [...]}")
        await self.svc.update_activities(app, data["activities"])
        return {}

    async def partial_update(self, request: Request) -> dict[str, Any]:
        app = self._auth(request, "activities", "write")
        data = await _body(request)
        if not isinstance(data, dict) or not isinstance(data.get("changes"), list):
            raise InputError("expected {'changes': [...]}")
        return {"activities": await self.svc.partial_update(app, data["changes"])}

    async def follow_stats(self, request: Request) -> dict[str, Any]:
        app = self._auth(request, "follower", "read")
        results: dict[str, Any] = {}
        for kind in ("followers", "following"):
            feed_id = request.query_params.get(kind)
            if feed_id:
                ref = self.svc.parse_feed(app, feed_id)
                fn = self.svc.store.follower_count if kind == "followers" else self._following_count
                results[kind] = {"feed": feed_id, "count": await fn(ref.key)}
        return {"results": results}

    async def _following_count(self, key: str) -> int:
        return len(await self.svc.store.following(key))


def _int(raw: str | None, default: int) -> int:
    if raw in (None, ""):
        return default
    try:
        value = int(raw)
    except ValueError:
        raise InputError("limit and offset must be integers") from None
    if value < 0:
        raise InputError("limit and offset must not be negative")
    return value


def feed_routes(service: FeedService) -> list[BaseRoute]:
    """Routes relative to the ``/api/v1.0`` mount; trailing slashes as Stream's clients send them."""
    api = _Api(service)
    feed = "/feed/{group}/{user_id}"
    table: list[tuple[str, Handler, str]] = [
        ("/feed/add_to_many/", api.add_to_many, "POST"),
        (f"{feed}/follows/", api.follow, "POST"),
        (f"{feed}/follows/", api.following, "GET"),
        (f"{feed}/follows/{{target}}/", api.unfollow, "DELETE"),
        (f"{feed}/followers/", api.followers, "GET"),
        (f"{feed}/", api.add, "POST"),
        (f"{feed}/", api.read, "GET"),
        # Enriched reads: without collections or reactions there is nothing to enrich.
        (f"/enrich{feed}/", api.read, "GET"),
        ("/enrich/activities/", api.get_activities, "GET"),
        (f"{feed}/{{activity_id}}/", api.remove, "DELETE"),
        ("/feed_targets/{group}/{user_id}/activity_to_targets/", api.to_targets, "POST"),
        ("/follow_many/", api.follow_many, "POST"),
        ("/unfollow_many/", api.unfollow_many, "POST"),
        ("/activities/", api.get_activities, "GET"),
        ("/activities/", api.update_activities, "POST"),
        ("/activity/", api.partial_update, "POST"),
        ("/stats/follow/", api.follow_stats, "GET"),
    ]
    return [Route(path, _endpoint(handler), methods=[method]) for path, handler, method in table]
