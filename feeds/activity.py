"""Activities in Stream's JSON shape.

An activity has the fixed fields ``actor, verb, object, target, foreign_id, time, to`` and any custom
fields.  ``time`` is naive UTC with microseconds on the wire (``2014-07-25T09:12:24.735000``), as
Stream's clients send and parse it.  Bodies are stored as the JSON the client sees, minus the
per-feed ``origin`` which is added when a feed is read.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

import orjson

from feeds.errors import InputError
from feeds.ids import time_to_us, us_to_time

FIXED = ("id", "actor", "verb", "object", "target", "foreign_id", "time", "to", "origin", "duration")
TIME_FORMAT = "%Y-%m-%dT%H:%M:%S.%f"


def parse_time(value: object) -> datetime:
    """Stream-style ISO time to naive UTC; an aware time is converted, a naive one is taken as UTC."""
    if not isinstance(value, str):
        raise InputError(f"time must be an ISO 8601 string, not {value!r}")
    text = value.strip()
    if text.endswith("Z"):
        text = text[:-1] + "+00:00"
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        raise InputError(f"invalid time {value!r}") from None
    if parsed.tzinfo is not None:
        parsed = parsed.astimezone(UTC).replace(tzinfo=None)
    return parsed


def format_time(us: int) -> str:
    """``TIME_FORMAT``, which is ISO 8601 with microseconds always shown: ``isoformat`` writes it
    at about half ``strftime``'s cost, and every activity body and response carries one."""
    return us_to_time(us).isoformat(timespec="microseconds")


def _required_str(data: dict[str, Any], key: str) -> str:
    value = data.get(key)
    if value is None or value == "":
        raise InputError(f"activity field {key!r} is required")
    if not isinstance(value, str | int | float):
        raise InputError(f"activity field {key!r} must be a string")
    return str(value)


@dataclass(frozen=True, slots=True)
class Activity:
    """One stored activity; ``id`` is 0 until the store assigns one."""

    actor: str
    verb: str
    object: str
    time_us: int
    id: int = 0
    target: str | None = None
    foreign_id: str | None = None
    to: tuple[str, ...] = ()
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_json(cls, data: Any, *, now_us: int) -> Activity:
        """Validate a client's activity; ``to`` entries lose the token Stream's clients append."""
        if not isinstance(data, dict):
            raise InputError("an activity must be a JSON object")
        time_us = time_to_us(parse_time(data["time"])) if data.get("time") else now_us
        raw_to = data.get("to") or []
        if not isinstance(raw_to, list) or not all(isinstance(t, str) for t in raw_to):
            raise InputError("'to' must be a list of feed ids")
        target = data.get("target")
        foreign_id = data.get("foreign_id")
        return cls(
            actor=_required_str(data, "actor"),
            verb=_required_str(data, "verb"),
            object=_required_str(data, "object"),
            time_us=time_us,
            target=None if target is None else str(target),
            foreign_id=None if foreign_id in (None, "") else str(foreign_id),
            to=tuple(t.split(" ", 1)[0] for t in raw_to),
            extra={k: v for k, v in data.items() if k not in FIXED},
        )

    def to_json(self, origin: str | None = None) -> dict[str, Any]:
        out: dict[str, Any] = dict(self.extra)
        out.update(
            id=str(self.id),
            actor=self.actor,
            verb=self.verb,
            object=self.object,
            target=self.target,
            foreign_id=self.foreign_id,
            time=format_time(self.time_us),
            to=list(self.to),
            origin=origin,
        )
        return out

    def dumps(self) -> bytes:
        body = self.to_json()
        del body["origin"]
        return orjson.dumps(body)

    @classmethod
    def loads(cls, raw: bytes | str) -> Activity:
        data = orjson.loads(raw)
        return cls(
            actor=data["actor"],
            verb=data["verb"],
            object=data["object"],
            time_us=time_to_us(parse_time(data["time"])),
            id=int(data["id"]),
            target=data.get("target"),
            foreign_id=data.get("foreign_id"),
            to=tuple(data.get("to") or ()),
            extra={k: v for k, v in data.items() if k not in FIXED},
        )

    def with_id(self, activity_id: int) -> Activity:
        return replace(self, id=activity_id)

    def patched(self, set_fields: dict[str, Any], unset: list[str]) -> Activity:
        """Partial update; the identity fields (id, foreign_id, time) cannot change."""
        for key in (*set_fields, *unset):
            if key in ("id", "foreign_id", "time") or key.split(".", 1)[0] in ("id", "foreign_id", "time"):
                raise InputError(f"field {key!r} cannot be updated")
        body = self.to_json()
        for key, value in set_fields.items():
            _set_path(body, key.split("."), value)
        for key in unset:
            _unset_path(body, key.split("."))
        body["time"] = format_time(self.time_us)
        merged = Activity.from_json(body, now_us=self.time_us)
        return replace(merged, id=self.id, foreign_id=self.foreign_id, time_us=self.time_us)


def _set_path(body: dict[str, Any], path: list[str], value: Any) -> None:
    for part in path[:-1]:
        child = body.get(part)
        if not isinstance(child, dict):
            child = body[part] = {}
        body = child
    body[path[-1]] = value


def _unset_path(body: dict[str, Any], path: list[str]) -> None:
    for part in path[:-1]:
        child = body.get(part)
        if not isinstance(child, dict):
            return
        body = child
    body.pop(path[-1], None)
