"""Silences, maintenance windows and inhibition as the engine holds them.

The muters (correlators/silences.py, maintenance.py, inhibit.py) are engine state: they change only
through journaled operations (`set_silence`, `expire_silence`, `set_window`, `delete_window`), so a
restart or a replay rebuilds them exactly. A mixin of `bridge.engine.Engine`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from bridge.incidents import Incident
from bridge.model import Action, AlertStatus

if TYPE_CHECKING:
    from bridge.engine import EngineConfig

__all__ = ["MutingMixin"]


class MutingMixin:
    config: EngineConfig

    if TYPE_CHECKING:  # provided by Engine (stubs only for the type checker)
        def advance(self, now: float) -> list[Action]: ...

    if TYPE_CHECKING:  # provided by Engine and HoldsMixin
        series: dict[str, Any]

        def _hold(self, series: Any, until: float, reason: str) -> None: ...

    def muter(self, type_name: str) -> Any:
        """The configured muter of this type (`silences`, `maintenance`, `inhibit`), or None."""
        return next((m for m in self.config.muters if m.type_name == type_name), None)

    def set_silence(self, data: Mapping[str, Any], now: float) -> tuple[list[Action], Any]:
        """Create or update a silence (its journaled form); returns the silence as stored."""
        from correlators.silences import Silence

        actions = self.advance(now)
        return actions, self.muter("silences").add(Silence.from_dict(data), now)

    def expire_silence(self, silence_id: str, now: float) -> list[Action]:
        actions = self.advance(now)
        store = self.muter("silences")
        if silence_id in store:
            store.expire(silence_id, now)
            self._recheck_muted(f"silences:{silence_id}", now)
        return actions

    def set_window(self, data: Mapping[str, Any], now: float) -> list[Action]:
        from correlators.maintenance import MaintenanceWindow

        actions = self.advance(now)
        self.muter("maintenance").add(MaintenanceWindow.from_dict(data))
        return actions

    def delete_window(self, window_id: str, now: float) -> list[Action]:
        actions = self.advance(now)
        calendar = self.muter("maintenance")
        if window_id in calendar:
            calendar.remove(window_id)
            self._recheck_muted(f"maintenance:{window_id}", now)
        return actions

    def _recheck_muted(self, held_by: str, now: float) -> None:
        """Alerts held back until this silence or window would end: look at them again now."""
        for series in self.series.values():
            if series.hold_until is not None and series.held_reason == held_by and series.hold_until > now:
                self._hold(series, now, held_by)

    def _all_muted(self, incident: Incident, now: float) -> Any:
        """A mute that covers every firing alert of the incident, or None (a resolve is never muted)."""
        if not self.config.muters:
            return None
        found = None
        for alert in incident.alerts.values():
            if alert.status is not AlertStatus.FIRING:
                continue
            mute = next((m for m in (muter.mutes(alert, now) for muter in self.config.muters) if m), None)
            if mute is None:
                return None
            found = found or mute
        return found

