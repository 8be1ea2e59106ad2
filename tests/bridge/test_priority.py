"""Priority as impact x urgency (ITIL): service tier gives impact, severity gives urgency."""

from __future__ import annotations

from dataclasses import replace

import pytest

from bridge.priority import ITIL_MATRIX, LEVELS
from tests.bridge.conftest import alert, policy, resolved

# impact from the service's tier (1 high, 2 medium, 3 low), urgency from severity
TIER_FOR_IMPACT = {"high": 1, "medium": 2, "low": 3}
SEVERITY_FOR_URGENCY = {"high": "critical", "medium": "warning", "low": "info"}

MATRIX = [
    ("high", "high", "P1"),
    ("high", "medium", "P2"),
    ("high", "low", "P3"),
    ("medium", "high", "P2"),
    ("medium", "medium", "P3"),
    ("medium", "low", "P4"),
    ("low", "high", "P3"),
    ("low", "medium", "P4"),
    ("low", "low", "P5"),
]


@pytest.mark.parametrize(
    ("impact", "urgency", "priority"), MATRIX, ids=[f"impact-{i}-urgency-{u}-is-{p}" for i, u, p in MATRIX]
)
def test_itil_matrix(impact: str, urgency: str, priority: str) -> None:
    """Each (impact, urgency) cell of the ITIL matrix gives its priority."""
    tier = TIER_FOR_IMPACT[impact]
    result = policy({"svc": tier}).evaluate([alert(severity=SEVERITY_FOR_URGENCY[urgency], service="svc")])
    assert (result.impact, result.urgency, result.priority) == (impact, urgency, priority)
    assert ITIL_MATRIX[impact][urgency] == priority


def test_matrix_is_complete() -> None:
    """The shipped matrix maps every impact and urgency level."""
    assert all(set(ITIL_MATRIX[i]) == set(LEVELS) for i in LEVELS)


SEVERITY_URGENCY = [("critical", "high"), ("warning", "medium"), ("info", "low"), ("none", "low")]


@pytest.mark.parametrize(("severity", "urgency"), SEVERITY_URGENCY, ids=[s for s, _ in SEVERITY_URGENCY])
def test_urgency_from_severity(severity: str, urgency: str) -> None:
    """Urgency follows the alert's normalized severity."""
    assert policy().evaluate([alert(severity=severity)]).urgency == urgency


REASONS = [
    (
        "catalog-service",
        {"checkout": 1},
        "low",
        alert(service="checkout"),
        "P1",
        ["service checkout is tier 1", "severity critical on CPU"],
    ),
    (
        "unknown-service-gets-default-impact",
        {"checkout": 1},
        "medium",
        alert(service="ghost", severity="warning"),
        "P3",
        ["service ghost not in catalog", "severity warning on CPU"],
    ),
    (
        "no-service-gets-default-impact",
        {},
        "low",
        alert(severity="info"),
        "P5",
        ["no service", "severity info"],
    ),
    (
        "tier-without-impact-mapping-gets-default",
        {"legacy": 9},
        "medium",
        alert(service="legacy"),
        "P2",
        ["service legacy is tier 9"],
    ),
]


@pytest.mark.parametrize(
    ("tiers", "default", "subject", "priority", "phrases"),
    [r[1:] for r in REASONS],
    ids=[r[0] for r in REASONS],
)
def test_reason_names_service_and_severity(
    tiers: dict[str, int], default: str, subject: object, priority: str, phrases: list[str]
) -> None:
    """The reason names the service and its tier (or why it has none) and the severity that decided."""
    result = policy(tiers, default_impact=default).evaluate([subject])  # type: ignore[list-item]
    assert result.priority == priority
    assert all(p in result.reason for p in phrases), result.reason
    assert result.reason.endswith(f"-> {priority}")


def test_most_severe_and_most_critical_win_across_alerts() -> None:
    """Urgency follows the most severe alert and impact the most critical service, even across alerts."""
    result = policy({"checkout": 1, "blog": 3}).evaluate(
        [
            alert("Latency", severity="warning", service="checkout"),
            alert("Down", severity="critical", service="blog"),
        ]
    )
    assert (result.impact, result.urgency, result.priority) == ("high", "high", "P1")
    assert "service checkout is tier 1" in result.reason
    assert "severity critical on Down" in result.reason


def test_resolved_alerts_still_count() -> None:
    """Every alert the incident has had counts, resolved ones too; with none, the lowest of both."""
    crit = alert(severity="critical", service="checkout")
    result = policy({"checkout": 1}).evaluate([resolved(crit), alert(severity="info")])
    assert (result.impact, result.urgency, result.priority) == ("high", "high", "P1")
    empty = policy({"checkout": 1}).evaluate([])
    assert (empty.priority, empty.reason.count("no alert")) == ("P5", 2)


def test_blast_radius_raises_impact() -> None:
    """Enough impacted services raise the impact whatever their tiers."""
    p = replace(policy(), blast_radius={"high": 6, "medium": 3})
    alerts = [alert(instance=f"h{i}", service=f"svc{i}", severity="warning") for i in range(3)]
    assert (p.evaluate(alerts).impact, "3 services impacted" in p.evaluate(alerts).reason) == ("medium", True)
    alerts += [alert(instance=f"h{i}", service=f"svc{i}", severity="warning") for i in range(3, 6)]
    assert p.evaluate(alerts).impact == "high"


@pytest.mark.parametrize(("first_at", "business_only", "urgency"), [
    (9 * 3600.0 + 86400 * 4, True, "high"),
    (3 * 3600.0 + 86400 * 4, True, "medium"),
    (3 * 3600.0 + 86400 * 4, False, "high"),
], ids=["in-hours-not-lowered", "out-of-hours-lowered", "not-business-only-not-lowered"])
def test_business_hours_downgrade(first_at: float, business_only: bool, urgency: str) -> None:
    """Urgency drops one step when all services are business-hours-only and it starts out of hours."""
    p = replace(policy({"svc": 3}), business_hours_downgrade=True,
                business_hours_only=frozenset({"svc"} if business_only else ()),
                in_business_hours=lambda ts: 9 * 3600 <= ts % 86400 < 18 * 3600)
    assert p.evaluate([alert(service="svc")], first_at).urgency == urgency
