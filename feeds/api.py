"""Stream's v1.0 feed API as an ASGI app: ``FeedApi(service)`` serves ``/api/v1.0/...``.

Each handler authenticates (see :mod:`feeds.auth`), parses, calls :class:`~feeds.service.FeedService`
and renders JSON with a ``duration`` field, as Stream does.  Errors are rendered in Stream's shape,
``{"detail", "status_code", "code", "exception", "duration"}``, with the error's HTTP status; Stream's
clients map ``code`` to their exception classes.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import orjson

from feeds.apps import App
from feeds.errors import FeedError, InputError
from feeds.http import Call, Handler, Receive, Router, Send, parse_call, send_json
from feeds.keys import FeedRef
from feeds.reads import ReadParams
from feeds.service import FeedService

log = logging.getLogger(__name__)
PREFIX = "/api/v1.0"


def _render(body: dict[str, Any], started: float) -> bytes:
    body["duration"] = f"{(time.perf_counter() - started) * 1000:.2f}ms"
    return orjson.dumps(body)


def error_body(exc: FeedError, started: float) -> bytes:
    body = {"detail": exc.detail, "status_code": exc.status, "code": exc.code, "exception": exc.exception}
    return _render(body, started)


async def _body(call: Call) -> Any:
    raw = await call.body()
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

    def _auth(self, call: Call, resource: str, action: str, feed_id: str | None = "*") -> App:
        return self.svc.auth.authenticate(
            call.query, call.headers, resource=resource, action=action, feed_id=feed_id
        )

    def _feed(self, call: Call, resource: str, action: str) -> tuple[App, FeedRef]:
        group, user_id = call.params["group"], call.params["user_id"]
        app = self._auth(call, resource, action, f"{group}{user_id}")
        return app, self.svc.feed(app, group, user_id)

    async def add(self, call: Call) -> dict[str, Any]:
        app, feed = self._feed(call, "feed", "write")
        data = await _body(call)
        if isinstance(data, dict) and "activities" in data:
            if not isinstance(data["activities"], list):
                raise InputError("'activities' must be a list")
            return {"activities": await self.svc.add_activities(app, feed, data["activities"])}
        (stored,) = await self.svc.add_activities(app, feed, [data])
        return stored

    async def read(self, call: Call) -> dict[str, Any]:
        app, feed = self._feed(call, "feed", "read")
        return await self.svc.read(app, feed, ReadParams.from_query(call.query), encoded=True)

    async def remove(self, call: Call) -> dict[str, Any]:
        app, feed = self._feed(call, "feed", "delete")
        ident = call.params["activity_id"]
        by_fid = _flag(call.query.get("foreign_id"))
        await self.svc.remove_activity(app, feed, ident, by_foreign_id=by_fid)
        return {"removed": ident}

    async def follow(self, call: Call) -> dict[str, Any]:
        app, feed = self._feed(call, "follower", "write")
        data = await _body(call)
        if not isinstance(data, dict) or not isinstance(data.get("target"), str):
            raise InputError("follow needs a 'target' feed id")
        target = self.svc.parse_feed(app, data["target"])
        await self.svc.follow(app, feed, target, _copy_limit(data.get("activity_copy_limit")))
        return {}

    async def unfollow(self, call: Call) -> dict[str, Any]:
        app, feed = self._feed(call, "follower", "delete")
        target = self.svc.parse_feed(app, call.params["target"])
        keep = _flag(call.query.get("keep_history"))
        await self.svc.unfollow(app, feed, target, keep_history=keep)
        return {}

    async def _follows(self, call: Call, *, followers: bool) -> dict[str, Any]:
        _, feed = self._feed(call, "follower", "read")
        q = call.query
        limit, offset = _int(q.get("limit"), 25), _int(q.get("offset"), 0)
        only = [f for f in (q.get("filter") or "").split(",") if f]
        return {
            "results": await self.svc.follows(
                feed, followers=followers, offset=offset, limit=limit, only=only
            )
        }

    async def followers(self, call: Call) -> dict[str, Any]:
        return await self._follows(call, followers=True)

    async def following(self, call: Call) -> dict[str, Any]:
        return await self._follows(call, followers=False)

    async def follow_many(self, call: Call) -> dict[str, Any]:
        app = self._auth(call, "follower", "write")
        limit = _copy_limit(call.query.get("activity_copy_limit"))
        pairs = _pairs(await _body(call), "follow_many")
        refs = [(self.svc.parse_feed(app, p["source"]), self.svc.parse_feed(app, p["target"])) for p in pairs]
        for source, target in refs:
            await self.svc.follow(app, source, target, limit)
        return {}

    async def unfollow_many(self, call: Call) -> dict[str, Any]:
        app = self._auth(call, "follower", "delete")
        pairs = _pairs(await _body(call), "unfollow_many")
        for p in pairs:
            source, target = self.svc.parse_feed(app, p["source"]), self.svc.parse_feed(app, p["target"])
            await self.svc.unfollow(app, source, target, keep_history=bool(p.get("keep_history")))
        return {}

    async def add_to_many(self, call: Call) -> dict[str, Any]:
        app = self._auth(call, "feed", "write")
        data = await _body(call)
        if not isinstance(data, dict) or not isinstance(data.get("feeds"), list):
            raise InputError("add_to_many needs 'activity' and a list of 'feeds'")
        await self.svc.add_to_many(app, data.get("activity"), [str(f) for f in data["feeds"]])
        return {}

    async def to_targets(self, call: Call) -> dict[str, Any]:
        app, feed = self._feed(call, "feed_targets", "write")
        data = await _body(call)
        if not isinstance(data, dict):
            raise InputError("expected an object with foreign_id, time and targets")
        return await self.svc.update_to_targets(app, feed, data)

    async def get_activities(self, call: Call) -> dict[str, Any]:
        app = self._auth(call, "activities", "read")
        q = call.query
        ids = [i for i in (q.get("ids") or "").split(",") if i]
        fids = [f for f in (q.get("foreign_ids") or "").split(",") if f]
        times = [t for t in (q.get("timestamps") or "").split(",") if t]
        if len(fids) != len(times) or not (ids or fids):
            raise InputError("give ids, or foreign_ids and timestamps of the same length")
        found = await self.svc.get_activities(
            app, ids=ids, foreign_id_times=list(zip(fids, times, strict=True))
        )
        return {"results": found}

    async def update_activities(self, call: Call) -> dict[str, Any]:
        app = self._auth(call, "activities", "write")
        data = await _body(call)
        if not isinstance(data, dict) or not isinstance(data.get("activities"), list):
            raise InputError("expected {'activities': [...]}")
        await self.svc.update_activities(app, data["activities"])
        return {}

    async def partial_update(self, call: Call) -> dict[str, Any]:
        app = self._auth(call, "activities", "write")
        data = await _body(call)
        if not isinstance(data, dict) or not isinstance(data.get("changes"), list):
            raise InputError("expected {'changes': [...]}")
        return {"activities": await self.svc.partial_update(app, data["changes"])}

    async def follow_stats(self, call: Call) -> dict[str, Any]:
        app = self._auth(call, "follower", "read")
        results: dict[str, Any] = {}
        for kind in ("followers", "following"):
            feed_id = call.query.get(kind)
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


class FeedApi:
    """ASGI app for the routes below ``PREFIX``; with ``lifespan=True`` it also starts and closes the
    service on the server's lifespan events (standalone use: tests, benchmarks)."""

    def __init__(self, service: FeedService, *, lifespan: bool = False) -> None:
        self.service = service
        self._lifespan = lifespan
        self._router = Router(PREFIX, _route_table(_Api(service)))

    async def __call__(self, scope: dict[str, Any], receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "lifespan":
            await self._serve_lifespan(receive, send)
            return
        if kind != "http":
            return  # no websocket endpoints: the server closes the handshake
        started = time.perf_counter()
        try:
            handler, params = self._router.match(scope["method"], scope["path"])
            result = await handler(parse_call(scope, receive, params))
        except FeedError as exc:
            await send_json(send, exc.status, error_body(exc, started))
            return
        except Exception:  # task boundary: a bug becomes a Stream-shaped 500, and is logged
            log.exception("feed API error on %s %s", scope["method"], scope["path"])
            await send_json(send, 500, error_body(FeedError("internal server error"), started))
            return
        await send_json(send, 200, _render(result if isinstance(result, dict) else {}, started))

    async def _serve_lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                if self._lifespan:
                    await self.service.start()
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                if self._lifespan:
                    await self.service.close()
                await send({"type": "lifespan.shutdown.complete"})
                return


def _route_table(api: _Api) -> list[tuple[str, str, Handler]]:
    """Paths relative to ``PREFIX``, trailing slashes as Stream's clients send them; the hot read
    route comes first among the GETs."""
    feed = "/feed/{group}/{user_id}"
    return [
        (f"{feed}/", "GET", api.read),
        (f"{feed}/", "POST", api.add),
        ("/feed/add_to_many/", "POST", api.add_to_many),
        (f"{feed}/follows/", "POST", api.follow),
        (f"{feed}/follows/", "GET", api.following),
        (f"{feed}/follows/{{target}}/", "DELETE", api.unfollow),
        (f"{feed}/followers/", "GET", api.followers),
        # Enriched reads: without collections or reactions there is nothing to enrich.
        (f"/enrich{feed}/", "GET", api.read),
        ("/enrich/activities/", "GET", api.get_activities),
        (f"{feed}/{{activity_id}}/", "DELETE", api.remove),
        ("/feed_targets/{group}/{user_id}/activity_to_targets/", "POST", api.to_targets),
        ("/follow_many/", "POST", api.follow_many),
        ("/unfollow_many/", "POST", api.unfollow_many),
        ("/activities/", "GET", api.get_activities),
        ("/activities/", "POST", api.update_activities),
        ("/activity/", "POST", api.partial_update),
        ("/stats/follow/", "GET", api.follow_stats),
    ]
