"""Topic creation's check of existing topics: every tactful topic has the deployment's
partition count, or tactful refuses to start, naming the topic."""

from __future__ import annotations

import pytest

from tactful.adapters.topics import TopicSpec, check_partitions
from tactful.core.errors import TopicMismatch

SPECS = [TopicSpec("t.storefront", 4), TopicSpec("app-customers-changelog", 4)]


def _described(name: str, partitions: int, key: str = "topic") -> dict[str, object]:
    return {key: name, "error_code": 0,
            "partitions": [{"partition": p} for p in range(partitions)]}


def test_topics_with_the_deployment_s_count_pass() -> None:
    check_partitions(SPECS, [_described("t.storefront", 4),
                             _described("app-customers-changelog", 4, key="name")])


@pytest.mark.parametrize("name", ["t.storefront", "app-customers-changelog"])
def test_a_topic_with_another_count_is_refused_by_name(name: str) -> None:
    with pytest.raises(TopicMismatch, match=f"topic {name} has 8 partitions, "
                                            "TACTFUL_PARTITIONS is 4"):
        check_partitions(SPECS, [_described(name, 8)])


def test_topics_tactful_does_not_use_are_not_its_concern() -> None:
    check_partitions(SPECS, [_described("someone-else", 12)])


def test_an_output_topic_may_have_any_count() -> None:
    # Senders read intents and decisions with whatever parallelism suits them.
    outputs = [TopicSpec("t.intents", 4, copartitioned=False)]
    check_partitions(outputs, [_described("t.intents", 1)])
