"""The feed API's own HTTP layer over a real server: unknown routes, wrong methods, bodies over the
limit and repeated parameters all get Stream-shaped answers."""

from __future__ import annotations

from typing import Any

import jwt
import pytest
import requests

from feeds.http import MAX_BODY


@pytest.fixture
def call(feed_server: Any) -> Any:
    app = feed_server.app
    token = jwt.encode({"resource": "*", "action": "*", "feed_id": "*"}, app.api_secret, algorithm="HS256")
    headers = {"Authorization": token, "stream-auth-type": "jwt"}

    def request(method: str, path: str, **kwargs: Any) -> requests.Response:
        url = f"http://localhost:{feed_server.port}/api/v1.0{path}"
        sep = "&" if "?" in path else "?"
        return requests.request(
            method, f"{url}{sep}api_key={app.api_key}", headers=headers, timeout=10, **kwargs
        )

    return request


def _error(reply: requests.Response, status: int, exception: str) -> dict[str, Any]:
    assert reply.status_code == status
    assert reply.headers["content-type"] == "application/json"
    body: dict[str, Any] = reply.json()
    assert body["status_code"] == status and body["exception"] == exception and body["detail"]
    return body


def test_unknown_path_is_a_stream_404(call: Any) -> None:
    _error(call("GET", "/no/such/endpoint/"), 404, "DoesNotExistException")
    _error(call("GET", "/feed/user/1"), 404, "DoesNotExistException")  # Stream's clients add the slash


def test_wrong_method_is_a_405(call: Any) -> None:
    body = _error(call("PUT", "/feed/user/1/"), 405, "InputException")
    assert "PUT" in body["detail"]


def test_body_over_the_limit_is_refused_and_the_server_lives(call: Any) -> None:
    big = b'{"actor": "a", "verb": "v", "object": "' + b"x" * MAX_BODY + b'"}'
    _error(call("POST", "/feed/user/big/", data=big), 413, "InputException")
    assert call("GET", "/feed/user/big/").json()["results"] == []
    added = call("POST", "/feed/user/big/", json={"actor": "a", "verb": "v", "object": "o"})
    assert added.status_code == 200 and added.json()["actor"] == "a"


def test_invalid_json_and_repeated_query_parameters(call: Any) -> None:
    _error(call("POST", "/feed/user/j/", data=b"{not json"), 400, "InputException")
    for i in range(3):
        call("POST", "/feed/user/q/", json={"actor": "a", "verb": "v", "object": f"o{i}"})
    page = call("GET", "/feed/user/q/?limit=1&limit=2").json()  # the last value wins, as in Starlette
    assert len(page["results"]) == 2
