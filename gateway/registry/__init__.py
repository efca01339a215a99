"""The configuration registry and access management."""
