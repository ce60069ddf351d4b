"""Plugins attached to any base model (LMMRec and its rivals), one file each, one registry."""
