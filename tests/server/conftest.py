"""Fixtures for in-process server tests."""

from __future__ import annotations

import pytest
from helpers.inprocess_node import Node, make_node


@pytest.fixture
async def node() -> Node:
    n = make_node()
    await n.broker.start(n.engine.deliver_remote)
    return n
