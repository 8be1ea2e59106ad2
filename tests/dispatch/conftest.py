"""Fixtures shared by the dispatch tests: the fake webhook receiver of the sink tests."""

from tests.sinks.conftest import receiver  # noqa: F401 - a fixture, found by pytest here
