"""The LLM layer: prompts, the answer cache, the OpenAI-compatible client, the Batch API path,
the extractive (LLM-free) backend, and text embedding. Never imports torch models."""
