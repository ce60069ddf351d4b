"""Base models (one file each), their shared graph module and the registry."""
