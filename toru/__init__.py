"""Toru: a self-hosted control panel built around process-isolated plugins."""

__version__ = "0.1.0"
