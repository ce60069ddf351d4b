"""lmmrec: LLM-driven, motivation-aware recommendation (the LMMRec method as a toolkit)."""

__version__ = "0.1.0"
