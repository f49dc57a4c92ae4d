from __future__ import annotations

from realtime.transports.headers import RawHeaders


def test_lookups_without_decoding_everything() -> None:
    # ASGI servers give header names in lower case; lookups may use any case.
    h = RawHeaders([(b"content-type", b"application/json"), (b"origin", b"https://a.example")])
    assert h.get("Content-Type") == "application/json" and h["origin"] == "https://a.example"
    assert "ORIGIN" in h and "referer" not in h and h.get("referer", "x") == "x"
    assert dict(h) == {"content-type": "application/json", "origin": "https://a.example"} and len(h) == 2
