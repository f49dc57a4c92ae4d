"""Issue 4's live path with Stream's own JS client: feed.subscribe() on this server's
Faye endpoint receives the update of an activity added over the Stream REST API."""

from __future__ import annotations

import pytest

from .conftest import NodeRunner, ServerFactory

KEY, SECRET, APP_ID = "gskey", "getstream-secret-" * 3, "77"


@pytest.mark.node
def test_getstream_feed_subscribe_receives_new_activities(
    node: NodeRunner, server_factory: ServerFactory
) -> None:
    srv = server_factory(args=["--app", f"{APP_ID}:{KEY}:{SECRET}"])
    run = node("getstream_feed.js", srv.base_url, KEY, SECRET, APP_ID).check()
    subscribed = run.one("subscribed")
    assert subscribed["server"]["ok"] and subscribed["user"]["ok"], subscribed
    assert subscribed["intruder"]["ok"] is False and subscribed["intruder"]["error"]["code"] == 403
    received = run.one("received")
    for update in (received["server"][0], received["user"][0]):
        assert update["feed"] == "user:1" and update["app_id"] == APP_ID
        assert update["new"][0]["verb"] == "post" and update["new"][0]["id"] == run.one("added")["id"]
        assert update["deleted"] == [] and "published_at" in update
