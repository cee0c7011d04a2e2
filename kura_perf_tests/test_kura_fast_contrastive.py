"""The patched profile's stand-in for Kura's get_contrastive_examples (backends/kura_fast_contrastive.py): the same
draw (max_contrastive_examples distinct summaries of OTHER clusters, uniform), never silently applied."""

from __future__ import annotations

from collections import Counter

import kura.cluster
import pytest
from kura.types import ConversationSummary

from kura_perf.backends.kura_fast_contrastive import PATCH_NOTE, FastContrastive, fast_contrastive_examples
from kura_perf.errors import ProfileError
from kura_perf.profiles import get_profile


def _groups(sizes):
    groups, i = {}, 0
    for cid, size in enumerate(sizes):
        groups[cid] = [ConversationSummary(chat_id=f"c{i + j}", summary=f"s{i + j}", metadata={}) for j in range(size)]
        i += size
    return groups


def test_the_draw_is_distinct_summaries_of_other_clusters_only_and_covers_them_evenly():
    groups = _groups([3, 5, 7, 2, 8])
    draw = FastContrastive(seed=1)
    seen = Counter()
    for _ in range(3000):
        picked = draw(1, cluster_id_to_summaries=groups, max_contrastive_examples=4)
        ids = [s.chat_id for s in picked]
        assert len(ids) == len(set(ids)) == 4
        assert not set(ids) & {s.chat_id for s in groups[1]}
        seen.update(ids)
    others = [s.chat_id for cid, members in groups.items() if cid != 1 for s in members]
    assert set(seen) == set(others)  # every other summary can be drawn, including both ends of the blocks
    expected = 3000 * 4 / len(others)  # uniform: 600 each
    assert all(abs(count - expected) < 0.15 * expected for count in seen.values())


def test_same_candidates_as_kuras_own_and_all_of_them_when_there_are_few():
    groups = _groups([2, 3, 4])
    ours = FastContrastive()(0, cluster_id_to_summaries=groups, max_contrastive_examples=10)
    kuras = kura.cluster.get_contrastive_examples(0, cluster_id_to_summaries=groups, max_contrastive_examples=10)
    assert [s.chat_id for s in ours] == [s.chat_id for s in kuras]  # 7 <= 10: every other summary, in order
    picked = FastContrastive()(2, cluster_id_to_summaries=groups, max_contrastive_examples=3)
    assert {s.chat_id for s in picked} <= {s.chat_id for s in groups[0] + groups[1]}


def test_the_patch_is_on_only_when_asked_and_always_restored():
    original = kura.cluster.get_contrastive_examples
    with fast_contrastive_examples(False) as note:
        assert note is None and kura.cluster.get_contrastive_examples is original
    with pytest.raises(RuntimeError):
        with fast_contrastive_examples(True) as note:
            assert note == PATCH_NOTE and isinstance(kura.cluster.get_contrastive_examples, FastContrastive)
            raise RuntimeError("a stage failing inside")
    assert kura.cluster.get_contrastive_examples is original


def test_a_profile_must_say_patched_and_be_a_kura_profile():
    patched = get_profile("kura-defaults-minibatch-patched-scaled")
    assert patched.kura_fast_contrastive is True
    base = get_profile("kura-defaults-minibatch-scaled").model_dump()
    with pytest.raises((ProfileError, ValueError), match="must say 'patched'"):
        type(patched).model_validate({**base, "name": "sneaky", "kura_fast_contrastive": True})
    offline = get_profile("offline").model_dump()
    with pytest.raises((ProfileError, ValueError), match="the reference backend has none"):
        type(patched).model_validate({**offline, "name": "x-patched", "kura_fast_contrastive": True})
    # unset on every other profile, so their hashes (and regression histories) are unchanged
    assert get_profile("kura-defaults").kura_fast_contrastive is None
