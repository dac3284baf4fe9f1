"""Brecha: Peru's digital divide, district by district."""

__version__ = "0.1.0"
