"""Deduplication: a re-send of an alert that changes nothing is dropped before grouping.

Identity is the alert's series fingerprint within its source (`Alert.identity`). A notification is
a repeat when the engine already holds the same series in the same status with the same content
(severity, summary, description, labels, annotations, service, resource, episode
key). Repeats never open or update
anything; the engine still refreshes the series' expiry (`ends_at`) from them.

Reasons (closed set): `repeat` (firing re-send), `resolved_repeat` (a resolve already applied).
"""

from __future__ import annotations

from enum import StrEnum
from typing import ClassVar

from bridge.model import Alert, AlertStatus
from bridge.plugins import StageContext, Verdict, VerdictKind, register_stage

__all__ = ["DedupReason", "DedupStage"]


class DedupReason(StrEnum):
    REPEAT = "repeat"
    RESOLVED_REPEAT = "resolved_repeat"


_PASS = Verdict(VerdictKind.PASS)
_DROP_REPEAT = Verdict(VerdictKind.DROP, DedupReason.REPEAT.value)
_DROP_RESOLVED = Verdict(VerdictKind.DROP, DedupReason.RESOLVED_REPEAT.value)


@register_stage
class DedupStage:
    """Drops notifications that repeat what the engine already knows of an alert series."""

    type_name: ClassVar[str] = "dedup"
    reasons: ClassVar[type[StrEnum]] = DedupReason

    def process(self, alert: Alert, ctx: StageContext) -> Verdict:
        prev = ctx.previous
        if prev is None or prev.status is not alert.status:
            return _PASS
        if alert.status is AlertStatus.RESOLVED:
            return _DROP_RESOLVED
        if (
            prev.key == alert.key
            and prev.severity is alert.severity
            and prev.summary == alert.summary
            and prev.description == alert.description
            and prev.labels == alert.labels
            and prev.annotations == alert.annotations
            and prev.service == alert.service
            and prev.resource == alert.resource
        ):
            return _DROP_REPEAT
        return _PASS
