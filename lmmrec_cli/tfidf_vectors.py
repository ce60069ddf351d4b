"""TF-IDF + truncated SVD (LSA) text vectors: the offline, deterministic ``embed`` backend.

No LLM and nothing cached: it is fitted on the texts of one run.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from lmmrec_cli.console import Progress
from lmmrec_cli.errors import UsageError


def tfidf_svd(texts: Sequence[str], dim: int, progress: Progress) -> np.ndarray:
    """TF-IDF (uni+bigrams, sublinear tf) then truncated SVD to ``dim`` components, one row
    per text; a fixed random_state makes it deterministic."""
    from sklearn.decomposition import TruncatedSVD
    from sklearn.feature_extraction.text import TfidfVectorizer
    from threadpoolctl import threadpool_limits

    with progress.task("tfidf + svd", total=2) as task:
        vectorizer = TfidfVectorizer(
            ngram_range=(1, 2),
            sublinear_tf=True,
            min_df=2 if len(texts) >= 50 else 1,
            max_features=100_000,
            stop_words="english",
            dtype=np.float32,
        )
        try:
            matrix = vectorizer.fit_transform(texts)
        except ValueError:
            raise UsageError("the motivation texts contain no words to embed") from None
        task.advance(1)
        components = min(dim, matrix.shape[1] - 1, matrix.shape[0] - 1)
        if components < 1:
            dense = matrix.toarray().astype(np.float32)
            task.advance(1)
            return dense
        svd = TruncatedSVD(n_components=components, random_state=0, n_iter=5)
        # One BLAS thread: multi-threaded reductions may differ in the last bits from run
        # to run, and on a shared machine extra threads measured 4x slower, not faster.
        with threadpool_limits(limits=1):
            vectors = svd.fit_transform(matrix).astype(np.float32)
        task.advance(1)
    return vectors
