"""`[map]` is validated where it is read, naming the key."""

from __future__ import annotations

import pytest

from app.config import ConfigError, parse_config


def test_the_defaults_group_by_name_prefix_past_300_nodes():
    section = parse_config({}).map
    assert (section.node_limit, section.group_by, section.edge_query) == (300, "prefix", "")


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"map": {"node_limit": 5}}, "[map] node_limit"),
        ({"map": {"group_by": "team"}}, "[map] group_by"),
        ({"map": {"group_by": "meta:"}}, "[map] group_by"),
        ({"map": {"edge_query": "up"}}, "[map] edge_query needs a [prometheus]"),
        ({"map": {"edge_source_label": "a-b"}, "prometheus": {}}, "[map] edge_source_label"),
        ({"map": {"colour": "red"}}, "unknown key 'colour' in [map]"),
    ],
)
def test_a_bad_map_key_is_refused_naming_it(raw, message):
    with pytest.raises(ConfigError, match=message.replace("[", r"\[").replace("]", r"\]")):
        parse_config(raw)


def test_group_by_takes_a_tag_prefix_or_a_meta_key():
    assert parse_config({"map": {"group_by": "tag:team="}}).map.group_by == "tag:team="
    assert parse_config({"map": {"group_by": "meta:team"}}).map.group_by == "meta:team"
