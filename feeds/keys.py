"""Feed references and the store keys built from them."""

from __future__ import annotations

import re
from dataclasses import dataclass

from feeds.errors import InputError

_NAME = re.compile(r"^[\w-]+$")


def check_name(value: str, what: str) -> str:
    if not _NAME.match(value):
        raise InputError(f"invalid {what} {value!r}: use letters, digits, '_' and '-'")
    return value


@dataclass(frozen=True, slots=True)
class FeedRef:
    """One feed of one app: ``group:user_id`` scoped by ``app_id``."""

    app_id: str
    group: str
    user_id: str

    @property
    def key(self) -> str:
        """The store key, ``<app_id>/<group>:<user_id>``."""
        return f"{self.app_id}/{self.group}:{self.user_id}"

    @property
    def feed_id(self) -> str:
        return f"{self.group}:{self.user_id}"

    @property
    def together(self) -> str:
        return f"{self.group}{self.user_id}"

    @classmethod
    def parse(cls, app_id: str, feed_id: str) -> FeedRef:
        """``user:42`` (a trailing `` <token>``, as Stream clients add to ``to`` targets, is dropped)."""
        group, sep, user_id = feed_id.split(" ", 1)[0].partition(":")
        if not sep:
            raise InputError(f"invalid feed id {feed_id!r}: expected group:user_id")
        return cls(app_id, check_name(group, "feed group"), check_name(user_id, "user id"))

    @staticmethod
    def feed_id_of(key: str) -> str:
        """``group:user_id`` of a store key, without building a FeedRef (the pulled-read hot path)."""
        return key.partition("/")[2]

    @classmethod
    def from_key(cls, key: str) -> FeedRef:
        app_id, _, feed_id = key.partition("/")
        group, _, user_id = feed_id.partition(":")
        return cls(app_id, group, user_id)
