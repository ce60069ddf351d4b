"""The ``extractive`` backend: motivations without any LLM — an approximation.

For machines with no model at all (demos, CI). Deterministic TF-IDF key phrases (unigrams
and bigrams within a clause, scikit-learn) stand in for the LLM's reasoning. TRAINING reviews
are cut into sentences; a sentence is *negative* when its review is rated ≤ 2 or it carries a
complaint cue ("sadly", "too", "never", "not", ...), *positive* when its review is rated ≥ 4
(or unrated) and it has no cue; sentences of middling reviews without a cue are left out.

* item active  = phrases of its positive sentences, plus its own text (title, description);
* item passive = phrases its negative sentences stress more than its positive ones;
* user active / passive = the same from the user's own training reviews only (mixing in the
  phrases of the items they interacted with made user texts a blur of their training items,
  redundant with the interaction graph: on the demo, LMMRec then gained nothing over LightGCN);
* summary = a template sentence built from those phrases.

Without ratings, only the complaint cues separate the sides (the sentiment-free fallback);
generic review words ("great", "visited", "disappointing") are stop words, since they say
nothing about what motivates anyone. The output says ``source:
"extractive"``; it is never presented as LLM output.
"""

from __future__ import annotations

import math
import re

import numpy as np
import scipy.sparse as sp
from sklearn.feature_extraction.text import ENGLISH_STOP_WORDS, TfidfVectorizer

from lmmrec_cli.console import SILENT, Progress
from lmmrec_cli.data.dataset import PreparedDataset
from lmmrec_cli.motivations import Motivation

SOURCE = "extractive"
METHOD_VERSION = 3  # bump when the phrases it produces change (3: reviews capped)
TOP_K = 20  # 5 phrases lost most of the signal of the reviews on the demo
_CHUNK = 512
_CUES = frozenset(
    "sadly unfortunately however but not never no nothing too bad poor worst terrible awful "
    "horrible rude slow overpriced dirty stale bland disappointing disappointed hardly barely "
    "without lacking missing weak".split()
)
_FILLER = frozenset(
    "great good nice best better love loved lovely amazing awesome excellent perfect fine ok "
    "okay special really just place time times visit visited went go going tried try "
    "recommend recommendation recommended definitely pretty quite bit lot lots little way "
    "day evening night friday saturday sunday partner friends friend family wife husband "
    "come came back got get like liked would will also even still us known stopped "
    "work birthday dinner lunch".split()
)
_STOP = frozenset(ENGLISH_STOP_WORDS) | _FILLER | _CUES
_CLAUSE = re.compile(r"[.!?;,:()\n]+|\b(?:and|or|but|with)\b")
_SENTENCE = re.compile(r"(?<=[.!?])\s+|\n+")
_WORD = re.compile(r"[a-z][a-z]+")


def _analyze(document: str) -> list[str]:
    """Unigrams and bigrams of content words, never across a clause boundary (so a list
    "bakery, coworking cafe" gives no "bakery coworking")."""
    terms: list[str] = []
    for clause in _CLAUSE.split(document.lower()):
        words = [w for w in _WORD.findall(clause) if w not in _STOP]
        terms.extend(words)
        terms.extend(f"{a} {b}" for a, b in zip(words, words[1:], strict=False))
    return terms


def _is_complaint(sentence: str) -> bool:
    return any(w in _CUES for w in _WORD.findall(sentence.lower()))


def _vectorizer(n_docs: int) -> TfidfVectorizer:
    return TfidfVectorizer(
        analyzer=_analyze,
        min_df=2 if n_docs >= 20 else 1,
        max_df=0.5 if n_docs >= 20 else 1.0,
        max_features=20000,
        sublinear_tf=True,
        dtype=np.float32,
    )


def _mean_rows(
    groups: np.ndarray,
    members: np.ndarray,
    n_groups: int,
    n_members: int,
    weight: np.ndarray | None = None,
) -> sp.csr_matrix:
    """A (n_groups × n_members) averaging matrix: row g averages the members of group g."""
    data = np.ones(len(groups), dtype=np.float32) if weight is None else weight.astype(np.float32)
    matrix = sp.csr_matrix((data, (groups, members)), shape=(n_groups, n_members))
    sums = np.asarray(matrix.sum(axis=1)).ravel()
    scale = np.divide(1.0, sums, out=np.zeros_like(sums), where=sums > 0)
    return sp.diags(scale.astype(np.float32)) @ matrix


def _top_phrases(scores: np.ndarray, vocabulary: np.ndarray, k: int = TOP_K) -> list[list[str]]:
    out = []
    for row in scores:
        order = np.argsort(-row, kind="stable")
        chosen: list[str] = []
        for index in order[: 8 * k]:
            if row[index] <= 0 or len(chosen) == k:
                break
            term = str(vocabulary[index])
            words = set(term.split())
            # "live" and "live music" say the same thing twice: keep the longer phrase.
            overlapping = [c for c in chosen if words <= set(c.split()) or set(c.split()) <= words]
            if overlapping:
                shorter = [c for c in overlapping if len(c.split()) < len(words)]
                if len(shorter) == len(overlapping):
                    chosen[chosen.index(shorter[0])] = term
                    chosen = [c for c in chosen if c == term or c not in shorter]
                continue
            chosen.append(term)
        out.append(chosen)
    return out


def _rows_top(matrix_rows, vocabulary: np.ndarray, task) -> list[list[str]]:
    """Top phrases of each row of a (possibly large) sparse product, in dense chunks."""
    n = matrix_rows.shape[0]
    out: list[list[str]] = []
    for start in range(0, n, _CHUNK):
        chunk = matrix_rows[start : start + _CHUNK]
        dense = chunk.toarray() if sp.issparse(chunk) else np.asarray(chunk)
        out.extend(_top_phrases(dense, vocabulary))
        task.advance(dense.shape[0])
    return out


def _join(phrases: list[str]) -> str:
    if len(phrases) <= 1:
        return "".join(phrases)
    return ", ".join(phrases[:-1]) + " and " + phrases[-1]


def _sentences(
    reviews, review_chars: int
) -> tuple[list[str], np.ndarray, np.ndarray, np.ndarray]:
    """Sentences of the reviews, each review cut to ``review_chars`` first (the LLM prompts'
    cap: one 50 MB review would otherwise cost minutes and gigabytes): text, review row,
    positive mask, negative mask."""
    texts: list[str] = []
    owners: list[int] = []
    positive: list[bool] = []
    negative: list[bool] = []
    ratings = reviews["rating"].to_numpy(dtype=float, na_value=math.nan)
    for row, (text, rating) in enumerate(
        zip(reviews["text"].fillna("").tolist(), ratings, strict=True)
    ):
        for sentence in _SENTENCE.split(text[:review_chars]):
            if not sentence.strip():
                continue
            complaint = _is_complaint(sentence)
            low = not math.isnan(rating) and rating <= 2
            high = math.isnan(rating) or rating >= 4
            texts.append(sentence)
            owners.append(row)
            negative.append(complaint or low)
            positive.append(high and not complaint)
    return (
        texts,
        np.asarray(owners, dtype=np.int64),
        np.asarray(positive, bool),
        np.asarray(negative, bool),
    )


def extract_motivations(
    dataset: PreparedDataset,
    progress: Progress = SILENT,
    review_chars: int = 500,
    description_chars: int = 1500,
) -> tuple[list[Motivation], list[Motivation]]:
    """Items' and users' motivations; reviews and item texts are capped like the LLM prompts'
    (``PromptOptions.review_chars`` / ``description_chars``)."""
    items = dataset.items()
    users = dataset.users()
    reviews = dataset.reviews(split="train")  # never validation or test text
    n_items, n_users = len(items), len(users)
    review_text, owner, positive, negative = _sentences(reviews, review_chars)
    # not the title: a name is no motivation
    item_text = [text[:description_chars] for text in items["text"].fillna("").tolist()]
    vectorizer = _vectorizer(len(review_text) + len(item_text))
    try:
        vectorizer.fit(review_text + item_text)
        vocabulary = vectorizer.get_feature_names_out()
    except ValueError:  # no usable words at all
        vocabulary = np.array([], dtype=object)
    if len(vocabulary):
        review_vectors = vectorizer.transform(review_text)
        item_vectors = vectorizer.transform(item_text)
    else:
        review_vectors = sp.csr_matrix((len(review_text), 1), dtype=np.float32)
        item_vectors = sp.csr_matrix((n_items, 1), dtype=np.float32)
        vocabulary = np.array([""], dtype=object)
    review_items = reviews["item"].to_numpy(dtype=np.int64)[owner]
    review_users = reviews["user"].to_numpy(dtype=np.int64)[owner]
    n_reviews = len(review_text)
    rows = np.arange(n_reviews)

    def average(groups: np.ndarray, mask: np.ndarray, n_groups: int) -> sp.csr_matrix:
        return _mean_rows(groups[mask], rows[mask], n_groups, n_reviews) @ review_vectors

    item_pos = average(review_items, positive, n_items)
    item_neg = average(review_items, negative, n_items)
    item_active = item_pos + 0.5 * item_vectors
    item_passive = item_neg - item_pos  # what the unhappy reviews stress more

    train_users, _ = dataset.interactions.pairs("train")
    user_active = average(review_users, positive, n_users)
    user_passive = average(review_users, negative, n_users)

    with progress.task("extractive motivations", total=2 * (n_items + n_users)) as task:
        item_act = _rows_top(item_active, vocabulary, task)
        item_pas = _rows_top(item_passive, vocabulary, task)
        user_act = _rows_top(user_active, vocabulary, task)
        user_pas = _rows_top(user_passive, vocabulary, task)

    pos_count = np.bincount(review_items[positive], minlength=n_items)
    neg_count = np.bincount(review_items[negative], minlength=n_items)
    item_out = []
    for row, active, passive in zip(items.itertuples(index=False), item_act, item_pas, strict=True):
        title = str(row.title or row.item_id)
        summary = f"{title}: valued for {_join(active)}." if active else f"{title}."
        if passive:
            summary += f" Criticised for {_join(passive)}."
        item_out.append(
            Motivation(
                index=int(row.item),
                entity_id=str(row.item_id),
                active=active,
                passive=passive,
                summary=summary,
                reasoning=(
                    f"extractive: TF-IDF phrases of {pos_count[int(row.item)]} positive and "
                    f"{neg_count[int(row.item)]} negative training-review sentences and the "
                    "item text"
                ),
                source=SOURCE,
            )
        )
    n_history = np.bincount(train_users, minlength=n_users)
    user_out = []
    for row, active, passive in zip(users.itertuples(index=False), user_act, user_pas, strict=True):
        if active:
            summary = f"Seeks {_join(active)}."
            if passive:
                summary += f" Avoids {_join(passive)}."
        else:
            summary = "No training history to learn motivations from."
        user_out.append(
            Motivation(
                index=int(row.user),
                entity_id=str(row.user_id),
                active=active,
                passive=passive,
                summary=summary,
                reasoning=(
                    f"extractive: TF-IDF phrases of the user's training reviews "
                    f"({n_history[int(row.user)]} training items)"
                ),
                source=SOURCE,
            )
        )
    return item_out, user_out
