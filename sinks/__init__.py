"""Sinks: one module per destination, each registering its class in `bridge.plugins.SINKS`.

Adding a sink is one new module and one line here; `_http` holds what HTTP sinks share and
`_message` the content every human-facing sink (Slack, e-mail, Teams) shows.
"""

from sinks import email, log, slack, teams, webhook

__all__ = ["email", "log", "slack", "teams", "webhook"]
