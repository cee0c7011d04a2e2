"""The synthetic corpus: deterministic, nested across scales, realistic in size, ground truth kept out of the text."""

from __future__ import annotations

import statistics
from collections import Counter

import pytest

from kura_perf.corpus import TOPICS, generate_conversation, generate_conversations, iter_conversations

SAMPLE = 3000


@pytest.fixture(scope="module")
def sample():
    return generate_conversations(SAMPLE, seed=11)


def text_bytes(conversation) -> int:
    return len(conversation.text().encode("utf-8"))


def test_at_least_40_distinct_topics():
    assert len(TOPICS) >= 40
    assert len(set(TOPICS)) == len(TOPICS)


def test_same_seed_same_data_and_other_seed_other_data():
    first = generate_conversations(200, seed=7)
    again = generate_conversations(200, seed=7)
    other = generate_conversations(200, seed=8)
    assert first == again
    assert [c.text() for c in first] != [c.text() for c in other]
    assert sum(a.text() == b.text() for a, b in zip(first, other)) < 5


def test_smaller_scales_are_prefixes_of_larger_ones():
    small = generate_conversations(40, seed=3)
    large = generate_conversations(400, seed=3)
    assert large[:40] == small
    assert generate_conversation(123, seed=3) == large[123]
    assert list(iter_conversations(5, seed=3, start=100)) == large[100:105]


def test_chat_ids_are_stable_and_unique(sample):
    assert sample[0].chat_id == "conv-11-0000000"
    assert sample[42].chat_id == "conv-11-0000042"
    assert len({c.chat_id for c in sample}) == SAMPLE


def test_every_topic_is_used_and_labels_match(sample):
    counts = Counter(c.topic for c in sample)
    assert set(counts) == set(TOPICS)
    expected = SAMPLE / len(TOPICS)
    assert min(counts.values()) > expected * 0.4  # roughly balanced: no topic starved


def test_two_to_eight_turns_alternating_user_then_assistant(sample):
    turn_counts = Counter()
    for conversation in sample:
        roles = [m.role for m in conversation.messages]
        assert len(roles) % 2 == 0
        turns = len(roles) // 2
        assert 2 <= turns <= 8
        assert roles == ["user", "assistant"] * turns
        assert all(m.content and not m.content.isspace() for m in conversation.messages)
        turn_counts[turns] += 1
    assert set(turn_counts) == set(range(2, 9))  # the whole range occurs


def test_size_distribution_median_between_2_and_5_kb(sample):
    sizes = sorted(text_bytes(c) for c in sample)
    median = statistics.median(sizes)
    assert 2000 <= median <= 5000, f"median {median} bytes"
    assert sizes[int(0.1 * len(sizes))] >= 700
    assert sizes[int(0.9 * len(sizes))] <= 8000


def test_ground_truth_is_kept_out_of_text_and_metadata(sample):
    for conversation in sample:
        assert conversation.topic not in conversation.text()
        assert "topic" not in conversation.metadata
        assert conversation.topic not in map(str, conversation.metadata.values())
        assert conversation.metadata == {"source": "synthetic", "seed": 11}


def test_no_unfilled_template_slots(sample):
    for conversation in sample:
        assert "{" not in conversation.text()


def test_timestamps_are_timezone_aware_and_increasing(sample):
    for conversation in sample[:500]:
        times = [m.created_at for m in conversation.messages]
        assert conversation.created_at.tzinfo is not None
        assert times[0] == conversation.created_at
        assert all(a < b for a, b in zip(times, times[1:]))


def test_conversations_on_the_same_topic_share_more_words_than_across_topics(sample):
    """A weak separability check: clustering by topic must be possible, not trivial to fake."""
    def words(conversation):
        return set(conversation.text().lower().split())

    by_topic: dict[str, list] = {}
    for conversation in sample:
        by_topic.setdefault(conversation.topic, []).append(words(conversation))
    same, across = [], []
    topics = sorted(by_topic)
    for i, topic in enumerate(topics):
        a, b = by_topic[topic][0], by_topic[topic][1]
        other = by_topic[topics[(i + 1) % len(topics)]][0]
        same.append(len(a & b) / len(a | b))
        across.append(len(a & other) / len(a | other))
    assert statistics.mean(same) > statistics.mean(across) * 1.5


def test_rejects_out_of_range_arguments():
    with pytest.raises(ValueError):
        generate_conversation(-1)
    with pytest.raises(ValueError):
        generate_conversations(-5)
    assert generate_conversations(0) == []
