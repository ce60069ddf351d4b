"""The LLM layer: prompts, the answer cache, the OpenAI-compatible client, the Batch API path,
and text embedding (the LLM-free parts live beside it: ``lmmrec_cli.extractive`` and
``lmmrec_cli.tfidf_vectors``). Never imports torch models."""
