"""Offline cluster names from class-based TF-IDF (BERTopic's c-TF-IDF), in place of Kura's LLM namer.

c-TF-IDF treats all documents of one cluster as a single document: a term scores high when it is
frequent inside the cluster and rare across clusters, which is what a cluster name should carry.
Terms are words and two-word phrases ("credit card", "sourdough starter"); stop words are
scikit-learn's English list, our own template words, and CHAT_FILLER: the words people (and models)
use in any chat ("said", "maybe", "recommend"), which otherwise win on real logs because they are
unevenly spread. Names are unique within one naming call (all base clusters, or all parents made in
one meta-cluster round, so siblings never share a name): a later, smaller cluster whose name is
taken swaps in its next-best term.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
from scipy import sparse

from kura_perf.models.protocols import UsesClusterSizes

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
# Chat filler: conversational words, hedges, politeness, generic verbs of asking and advising, and the
# fragments contractions leave ("don't" -> "don", "ain't" -> "ain"). None names a topic; on real chat
# logs they topped cluster names ("Said Purse Say", "Maybe Ain Say", "Recommend Doctor Tasked").
CHAT_FILLER = frozenset(
    """
    said say says saying tell tells told telling talk talked talking mention mentioned
    maybe perhaps probably possibly guess think thinks thought wonder wondering wondered
    recommend recommends recommended recommendation recommendations suggest suggests suggested
    suggestion suggestions advice advise tip tips idea ideas
    tasked task explain explains explained explaining provide provides provided providing discuss
    discusses discussed discussing give gives gave given giving offer offers offered describe
    describes described
    try tries tried trying look looks looked looking find finds found finding wanted wanting needed
    trying seems seem seemed feel feels felt
    hi hello hey thanks thank thx please pls ok okay yeah yep yes nope sure cool great awesome nice
    appreciate appreciated sorry lol oh um uh hmm wow
    just really lot lots bit kind sort stuff pretty quite basically literally totally
    ain don doesn didn isn wasn aren weren won wouldn couldn shouldn haven hasn hadn ll ve re im ive
    dont cant wont thats theres lets youre
    """.split()
)
# scikit-learn's English list (from the Glasgow IR group) also holds content words that name real
# topics ("interest rate", "computer", "electricity bill", "fire alarm"); those stay searchable here.
TOPIC_WORDS_IN_SKLEARN_STOP_LIST = frozenset(
    "bill computer interest system fire amount thick thin mill".split()
)
# Words of two or more letters, plus "c++"/"c#"-style names; no numbers or single letters.
_TOKEN_PATTERN = r"(?u)\b[^\W\d_](?:[^\W\d_]+[+#]*|[+#]+)"
_UNNAMED = "Miscellaneous"
PHRASE_BONUS = 1.25
_SPARE_TERMS = 12  # candidates kept beyond what a name and description use, for de-duplication


class TfidfClusterNamer(UsesClusterSizes):
    """ClusterNamer: name = top `top_words` c-TF-IDF keywords Title Cased; description = one sentence.

    Deterministic (ties go to the word appearing first in the group); copes with one group, tiny groups and groups whose
    text is all stop words (those get a generic name rather than an error).
    """

    def __init__(self, name: str = "offline-ctfidf", top_words: int = 3, description_words: int = 8,
                 ngram_range: tuple[int, int] = (1, 2)) -> None:
        self.name = name
        self.top_words = top_words
        self.description_words = description_words
        self.ngram_range = tuple(ngram_range)

    def name_clusters(
        self, groups: Sequence[Sequence[str]], sizes: Sequence[int] | None = None
    ) -> list[tuple[str, str]]:
        """(name, description) per group; `sizes` (true member counts) defaults to the group lengths."""
        if sizes is not None and len(sizes) != len(groups):
            raise ValueError(f"got {len(sizes)} sizes for {len(groups)} groups")
        sizes = list(sizes) if sizes is not None else [len(group) for group in groups]
        if not groups:
            return []
        keywords = self._keywords(groups, max(self.top_words, self.description_words) + _SPARE_TERMS)
        names = self._unique_names(keywords, sizes)
        return [self._describe(name, words, size) for name, words, size in zip(names, keywords, sizes)]

    def _name_terms(self, terms: list[str]) -> list[str]:
        """Best terms in order, up to top_words words; a term adds nothing when its words are already in."""
        chosen: list[str] = []
        words: list[str] = []
        for term in terms:
            parts = term.split()
            if all(p in words for p in parts) or len(words) + len(parts) > self.top_words:
                continue
            # A phrase replaces the single word it contains ("card" -> "credit card"), not repeats it.
            chosen = [c for c in chosen if c not in parts]
            chosen.append(term)
            words = [w for c in chosen for w in c.split()]
            if len(words) >= self.top_words:
                break
        return chosen

    def _unique_names(self, keywords: list[list[str]], sizes: list[int]) -> list[str]:
        """One name per group, no two alike: bigger groups choose first; a taken name swaps its last
        term for the next-best one; numbered only if the terms run out."""
        names: list[str] = [""] * len(keywords)
        taken: set[str] = set()
        for index in sorted(range(len(keywords)), key=lambda i: -sizes[i]):
            terms = keywords[index]
            chosen = self._name_terms(terms)
            name = _title(chosen) if chosen else _UNNAMED
            spare = [t for t in terms if t not in chosen]
            while name.lower() in taken and chosen and spare:
                candidate = self._name_terms(chosen[:-1] + [spare.pop(0)])
                name = _title(candidate)
            base, copy = name, 2
            while name.lower() in taken:
                name, copy = f"{base} ({copy})", copy + 1
            taken.add(name.lower())
            names[index] = name
        return names

    def _keywords(self, groups: Sequence[Sequence[str]], count: int) -> list[list[str]]:
        from sklearn.feature_extraction.text import ENGLISH_STOP_WORDS, CountVectorizer

        class_documents = [" ".join(group) for group in groups]
        vectorizer = CountVectorizer(
            stop_words=sorted((ENGLISH_STOP_WORDS - TOPIC_WORDS_IN_SKLEARN_STOP_LIST) | _TEMPLATE_WORDS | CHAT_FILLER),
            token_pattern=_TOKEN_PATTERN,
            lowercase=True,
            ngram_range=self.ngram_range,
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
            # A phrase that scores at least 1 / PHRASE_BONUS of its words reads better than the words
            # alone ("Credit Card", not "Card Credit").
            candidates.sort(key=lambda item: (-item[1] * (PHRASE_BONUS if " " in item[0] else 1.0),
                                              first_seen.get(item[0], len(first_seen)), item[0]))
            keywords.append([term for term, _ in candidates[:count]])
        return keywords

    def _describe(self, name: str, terms: list[str], size: int) -> tuple[str, str]:
        plural = "conversation" if size == 1 else "conversations"
        if not terms:
            return name, f"{size} {plural} with no distinctive keywords."
        shown: list[str] = []
        for term in terms:  # a word already inside a listed phrase adds nothing
            if not any(term in other.split() for other in shown if " " in other):
                shown.append(term)
        listed = ", ".join(shown[: self.description_words])
        return name, f"{size} {plural} mostly about {listed}."


def _title(terms: list[str]) -> str:
    return " ".join(word.title() for term in terms for word in term.split())


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
