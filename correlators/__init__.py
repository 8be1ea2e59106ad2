"""Correlation stages, one module each; importing the package registers them."""

from correlators import dedup  # noqa: F401
