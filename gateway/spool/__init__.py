"""Durable, crash-safe storage of uploads."""
