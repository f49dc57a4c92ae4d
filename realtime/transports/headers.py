"""Request headers read on demand: most Bayeux requests need two or three of them, and
decoding all of them into a dict costs more than the lookups."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence


class RawHeaders(Mapping[str, str]):
    __slots__ = ("_all", "_raw")

    def __init__(self, raw: Sequence[tuple[bytes, bytes]]) -> None:
        self._raw = raw
        self._all: dict[str, str] | None = None

    def get(self, name: str, default: str | None = None) -> str | None:  # type: ignore[override]
        key = name.lower().encode("latin-1")
        for k, v in self._raw:
            if k == key:  # ASGI servers lowercase header names
                return v.decode("latin-1")
        return default

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and self.get(name) is not None

    def _decoded(self) -> dict[str, str]:
        if self._all is None:
            self._all = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in self._raw}
        return self._all

    def __getitem__(self, name: str) -> str:
        value = self.get(name)
        if value is None:
            raise KeyError(name)
        return value

    def __iter__(self) -> Iterator[str]:
        return iter(self._decoded())

    def __len__(self) -> int:
        return len(self._decoded())
