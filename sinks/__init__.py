"""Sinks: one module per destination, each registering its class in `bridge.plugins.SINKS`.

Adding a sink is one new module and one line here; `_http` holds what HTTP sinks share.
"""

from sinks import log, slack, webhook

__all__ = ["log", "slack", "webhook"]
