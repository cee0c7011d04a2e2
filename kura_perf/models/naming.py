"""Offline cluster names from class-based TF-IDF (BERTopic's c-TF-IDF), in place of Kura's LLM namer.

c-TF-IDF treats all documents of one cluster as a single document: a term scores high when it is
frequent inside the cluster and rare across clusters, which is what a cluster name should carry.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
from scipy import sparse

# Words that are frequent in every cluster only because of our own templates (summary field labels,
# the offline summariser's phrasing, this namer's descriptions) and so say nothing about a topic.
_TEMPLATE_WORDS = frozenset(
    """
    user users assistant assistants request requests overall task tasks summary summaries
    languages language conversation conversations asks asked ask wants write writes something
    answer errors error reported previous problem mentioning mention sampled cluster clusters
    english none name description
    got getting going want need needs like make makes really know help helps use using used way
    thing things question questions actually keep keeping best good better
    """.split()
)
# Words of two or more letters, plus "c++"/"c#"-style names; no numbers or single letters.
_TOKEN_PATTERN = r"(?u)\b[^\W\d_](?:[^\W\d_]+[+#]*|[+#]+)"
_UNNAMED = "Miscellaneous"


class TfidfClusterNamer:
    """ClusterNamer: name = top `top_words` c-TF-IDF keywords Title Cased; description = one sentence.

    Deterministic (ties go to the word appearing first in the group); copes with one group, tiny groups and groups whose
    text is all stop words (those get a generic name rather than an error).
    """

    def __init__(self, name: str = "offline-ctfidf", top_words: int = 3, description_words: int = 8) -> None:
        self.name = name
        self.top_words = top_words
        self.description_words = description_words

    def name_clusters(
        self, groups: Sequence[Sequence[str]], sizes: Sequence[int] | None = None
    ) -> list[tuple[str, str]]:
        """(name, description) per group; `sizes` (true member counts) defaults to the group lengths."""
        if sizes is not None and len(sizes) != len(groups):
            raise ValueError(f"got {len(sizes)} sizes for {len(groups)} groups")
        sizes = list(sizes) if sizes is not None else [len(group) for group in groups]
        if not groups:
            return []
        keywords = self._keywords(groups, max(self.top_words, self.description_words))
        return [self._describe(words, size) for words, size in zip(keywords, sizes)]

    def _keywords(self, groups: Sequence[Sequence[str]], count: int) -> list[list[str]]:
        from sklearn.feature_extraction.text import ENGLISH_STOP_WORDS, CountVectorizer

        class_documents = [" ".join(group) for group in groups]
        vectorizer = CountVectorizer(
            stop_words=list(ENGLISH_STOP_WORDS | _TEMPLATE_WORDS),
            token_pattern=_TOKEN_PATTERN,
            lowercase=True,
        )
        try:
            counts = vectorizer.fit_transform(class_documents)
        except ValueError:  # empty vocabulary: every group is empty or all stop words
            return [[] for _ in groups]
        terms = vectorizer.get_feature_names_out()
        scores = _ctfidf(counts)
        analyse = vectorizer.build_analyzer()
        keywords = []
        for row, document in enumerate(class_documents):
            start, stop = scores.indptr[row], scores.indptr[row + 1]
            candidates = [(str(terms[column]), value) for column, value in
                          zip(scores.indices[start:stop], scores.data[start:stop]) if value > 0]
            # Ties (common when every member text is short) go to the word that comes first in the
            # group, so callers control them by ordering members (e.g. biggest child first).
            first_seen: dict[str, int] = {}
            for position, token in enumerate(analyse(document)):
                first_seen.setdefault(token, position)
            candidates.sort(key=lambda item: (-item[1], first_seen.get(item[0], len(first_seen)), item[0]))
            keywords.append([term for term, _ in candidates[:count]])
        return keywords

    def _describe(self, words: list[str], size: int) -> tuple[str, str]:
        plural = "conversation" if size == 1 else "conversations"
        if not words:
            return _UNNAMED, f"{size} {plural} with no distinctive keywords."
        name = " ".join(word.title() for word in words[: self.top_words])
        listed = ", ".join(words[: self.description_words])
        return name, f"{size} {plural} mostly about {listed}."


def _ctfidf(counts) -> sparse.csr_matrix:
    """BERTopic's c-TF-IDF: l1-normalised term frequency per class x log(1 + A / f_t).

    A is the average number of words per class and f_t the frequency of term t over all classes.
    Kept sparse: thousands of clusters x tens of thousands of terms would not fit densely.
    """
    counts = sparse.csr_matrix(counts, dtype=np.float64)
    term_frequency_all = np.asarray(counts.sum(axis=0)).ravel()
    row_totals = np.asarray(counts.sum(axis=1)).ravel()
    average_words = row_totals.mean()
    idf = np.log(1.0 + average_words / np.maximum(term_frequency_all, 1.0))
    inverse_totals = np.divide(1.0, row_totals, out=np.zeros_like(row_totals), where=row_totals > 0)
    return sparse.csr_matrix(sparse.diags(inverse_totals) @ counts @ sparse.diags(idf))
