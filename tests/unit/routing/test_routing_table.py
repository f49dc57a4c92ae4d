"""RoutingTable: key and channel routing against replicas, membership, delta plumbing."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from realtime.bayeux.channels import expand, matches
from realtime.routing import CuckooFilter, ReplicaOutOfSync, RoutingTable, UnknownNode


def table_of(subscriptions: dict[str, list[str]]) -> RoutingTable:
    table = RoutingTable()
    for node, keys in subscriptions.items():
        table.set_node(node, CuckooFilter.build(keys, 1000))
    return table


def test_nodes_for_keys_has_no_false_negatives_and_honours_exclude() -> None:
    subs = {f"n{j}": [f"user:{i}" for i in range(j, 3000, 3)] for j in range(3)}
    table = table_of(subs)
    keys = [f"user:{i}" for i in range(3000)]
    routed = table.nodes_for(keys)
    for node, held in subs.items():
        assert {keys[i] for i in routed[node]} >= set(held)
        # False positives are possible but must be rare (16-bit fingerprints).
        assert len(routed[node]) - len(held) < 10
    assert "n1" not in table.nodes_for(keys, exclude="n1")
    assert table.nodes_for([]) == {}
    assert table.nodes_for(["user:nobody-has-this"]) == {}


def test_fan_out_is_grouped_per_node() -> None:
    channels = [f"/feed/user/{i}" for i in range(10_000)]
    table = table_of({"a": channels[::2], "b": ["/feed/user/*"], "c": ["/other/**"]})
    routed = table.nodes_for_channels(channels + channels[:10])  # duplicates are routed once
    assert set(routed["a"]) >= set(channels[::2])
    assert len(routed["a"]) < 5100
    assert routed["b"] == channels  # one pattern covers the whole fan-out, in input order
    assert "c" not in routed
    assert "b" not in table.nodes_for_channels(channels, exclude="b")
    assert table.nodes_for_channels([]) == {}
    assert RoutingTable().nodes_for_channels(channels) == {}


SEGMENTS = st.sampled_from(["a", "b", "c", "feed", "x1"])
NAMES = st.lists(SEGMENTS, min_size=1, max_size=4).map(lambda s: "/" + "/".join(s))
KEYS = st.one_of(NAMES, NAMES.map(lambda n: n + "/*"), NAMES.map(lambda n: n + "/**"), st.just("/**"))


@settings(max_examples=100, deadline=None)
@given(
    subs=st.dictionaries(
        st.sampled_from(["n1", "n2", "n3"]), st.lists(KEYS, max_size=15, unique=True), max_size=3
    ),
    channels=st.lists(NAMES, max_size=40),
)
def test_channel_routing_equals_expanding_each_channel(
    subs: dict[str, list[str]], channels: list[str]
) -> None:
    table = table_of(subs)
    routed = table.nodes_for_channels(channels)
    unique = list(dict.fromkeys(channels))
    for node, keys in subs.items():
        replica = table.get(node)
        assert replica is not None
        naive = [c for c in unique if any(replica.contains(k) for k in expand(c))]
        assert routed.get(node, []) == naive
        exact = [c for c in unique if any(matches(k, c) for k in keys)]
        assert set(exact) <= set(naive), "a false negative would lose a message"


def test_membership_and_delta_plumbing() -> None:
    owner = CuckooFilter(64)
    table = RoutingTable()
    with pytest.raises(UnknownNode):
        owner.add("/chat/1")
        delta = owner.take_delta()
        assert delta is not None
        table.apply_delta("n1", delta)
    assert issubclass(UnknownNode, ReplicaOutOfSync)
    table.load_snapshot("n1", owner.to_bytes())
    assert "n1" in table
    assert table.nodes_for_channels(["/chat/1"]) == {"n1": ["/chat/1"]}
    owner.add("/chat/2")
    delta = owner.take_delta()
    assert delta is not None
    assert table.apply_delta("n1", delta)
    assert table.nodes_for_channels(["/chat/2"]) == {"n1": ["/chat/2"]}
    assert table.node_ids == ["n1"]
    assert len(table) == 1
    assert table.drop_node("n1")
    assert not table.drop_node("n1")
    assert table.nodes_for_channels(["/chat/2"]) == {}
