"""Tests of the sink plugins in sinks/."""
