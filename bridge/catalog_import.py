"""`alertbridge catalog import`: turn a JSON service catalog into alertbridge's catalog YAML.

Reads the shape of the storm data set's `catalog.json` (and any catalog that uses its field names):
`services[] {name, owner, criticality, business_hours, depends_on[], instances[] {host}, layer,
zone}`, `hosts[] {name, services[], zone}`, `teams[] {name, pool}`, `maintenance_windows[] {id,
hosts[], start, end, reason}`, `business_hours {timezone, days[], start, end}`. Unknown fields are
ignored; a missing required one is reported with its path.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from bridge.catalog import CatalogSettings

__all__ = ["ImportError_", "import_catalog"]


class ImportError_(ValueError):
    """The JSON catalog lacks something the import needs; the message names the path."""


def _list(data: Mapping[str, Any], key: str, path: str) -> list[Any]:
    value = data.get(key, [])
    if not isinstance(value, list):
        raise ImportError_(f"{path}{key}: must be a list")
    return value


def import_catalog(data: Any) -> dict[str, Any]:
    """The catalog YAML document (as a dict) for a JSON catalog."""
    if not isinstance(data, dict):
        raise ImportError_("(top level): must be an object")
    teams = {t.get("name"): t.get("pool") or t.get("name") for t in _list(data, "teams", "") if isinstance(t, dict)}
    services = []
    for i, svc in enumerate(_list(data, "services", "")):
        if not isinstance(svc, dict) or not isinstance(svc.get("name"), str):
            raise ImportError_(f"services[{i}].name: required")
        hosts = []
        for inst in svc.get("instances") or []:
            host = inst.get("host") if isinstance(inst, dict) else None
            if isinstance(host, str) and host not in hosts:
                hosts.append(host)
        owner = svc.get("owner")
        entry: dict[str, Any] = {
            "name": svc["name"],
            "owner": teams.get(owner, owner),
            "criticality": int(svc.get("criticality") or 3),
            "business_hours": bool(svc.get("business_hours", False)),
            "depends_on": [d for d in svc.get("depends_on") or [] if isinstance(d, str)],
            "hosts": hosts,
        }
        for optional in ("layer", "zone"):
            if isinstance(svc.get(optional), str):
                entry[optional] = svc[optional]
        services.append(entry)
    hosts_out = [
        {"name": h["name"], "services": [s for s in h.get("services") or [] if isinstance(s, str)],
         **({"zone": h["zone"]} if isinstance(h.get("zone"), str) else {})}
        for h in _list(data, "hosts", "") if isinstance(h, dict) and isinstance(h.get("name"), str)
    ]
    maintenance = []
    for i, mw in enumerate(_list(data, "maintenance_windows", "")):
        if not isinstance(mw, dict) or not mw.get("start") or not mw.get("end"):
            raise ImportError_(f"maintenance_windows[{i}]: start and end are required")
        window = {"id": str(mw.get("id") or f"mw-{i + 1}"), "start": mw["start"], "end": mw["end"],
                  "hosts": list(mw.get("hosts") or []), "services": list(mw.get("services") or []),
                  "reason": mw.get("reason") or "imported"}
        maintenance.append(window)
    document: dict[str, Any] = {"services": services, "hosts": hosts_out, "maintenance": maintenance}
    bh = data.get("business_hours")
    if isinstance(bh, dict):
        document["business_hours"] = {k: bh[k] for k in ("timezone", "days", "start", "end") if k in bh}
    CatalogSettings.model_validate(document)  # what we write must load
    return document
