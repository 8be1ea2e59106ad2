"""The config schema: YAML in, validated settings or every problem as `path: reason` at once."""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any

import pytest

from bridge.errors import ConfigError
from bridge.settings import DEFAULT_CONFIG_PATH, load_settings, parse_duration, validate_settings
from bridge.wiring import build_engine

MINIMAL = """
sources:
  - name: am
    type: alertmanager
sinks:
  - name: out
    type: log
routes:
  - name: default
    group_by: [alertname]
    sinks: [out]
"""


def load(tmp_path: Path, text: str, env: dict[str, str] | None = None) -> Any:
    path = tmp_path / "alertbridge.yaml"
    path.write_text(textwrap.dedent(text))
    return load_settings(path, env={} if env is None else env)


def problems(tmp_path: Path, text: str, env: dict[str, str] | None = None) -> list[str]:
    with pytest.raises(ConfigError) as err:
        load(tmp_path, text, env)
    assert str(err.value) == "; ".join(err.value.problems)
    return err.value.problems


# ------------------------------------------------------------------------------------------ valid


def test_minimal_config_loads_with_defaults(tmp_path: Path) -> None:
    """A minimal YAML with one source, sink and route loads, and unset fields take their defaults."""
    settings = load(tmp_path, MINIMAL)
    (route,) = settings.routes
    assert (route.name, route.group_by, route.sinks, route.continue_) == (
        "default",
        ["alertname"],
        ["out"],
        False,
    )
    assert (route.group_wait, route.group_interval, route.reopen_window) == (30.0, 300.0, 300.0)
    assert [(s.name, s.type) for s in settings.sources] == [("am", "alertmanager")]
    assert [(s.name, s.type) for s in settings.sinks] == [("out", "log")]
    assert settings.server.listen == "127.0.0.1:9095"
    assert settings.priority.matrix["high"]["high"] == "P1"


@pytest.mark.parametrize(
    "text", ["", "# nothing but a comment\n", "{}"], ids=["empty", "comment-only", "empty-map"]
)
def test_empty_config_is_all_defaults(tmp_path: Path, text: str) -> None:
    """An empty file is a valid config: no sources, sinks or routes."""
    settings = load(tmp_path, text)
    assert (settings.sources, settings.sinks, settings.routes) == ([], [], [])


def test_shipped_config_loads_and_builds_an_engine() -> None:
    """The shipped default config is valid as is and wires into an engine."""
    root = Path(__file__).resolve().parents[2]
    settings = load_settings(root / DEFAULT_CONFIG_PATH, env={})
    engine = build_engine(settings)
    assert [r.name for r in engine.config.routes] == [r.name for r in settings.routes]


def test_continue_is_spelled_continue(tmp_path: Path) -> None:
    """A route's `continue` key (a Python keyword) sets continue_, and its errors name `continue`."""
    settings = load(tmp_path, MINIMAL + "    continue: true\n")
    assert settings.routes[0].continue_ is True
    assert problems(tmp_path, MINIMAL + "    continue: maybe\n") == [
        "routes[0].continue: Input should be a valid boolean, unable to interpret input"
    ]


# ----------------------------------------------------------------------------------------- errors

ERRORS = [
    (
        "unknown-field-names-its-path",
        MINIMAL + "    grup_by: [a]\n",
        ["routes[0].grup_by: Extra inputs are not permitted"],
    ),
    ("unknown-top-level-field", MINIMAL + "route: []\n", ["route: Extra inputs are not permitted"]),
    (
        "several-errors-at-once",
        """
     sinks:
       - name: out
         type: log
         stream: stdlog
     routes:
       - name: r
         group_wait: soon
         grup_by: [a]
     server:
       listen: nowhere
     """,
        [
            "server.listen: String should match pattern '^(\\[[0-9a-fA-F:]+\\]|[^:\\s]+):\\d{1,5}$'",
            "sinks[0].stream: Input should be 'stdout' or 'stderr'",
            "routes[0].group_wait: 'soon' is not a duration (use e.g. 30s, 5m, 1h30m)",
            "routes[0].grup_by: Extra inputs are not permitted",
        ],
    ),
    (
        "plugin-field-error-omits-the-type-tag",
        MINIMAL.replace(
            "    type: log\n",
            """    type: log
  - name: hook
    type: webhook
    url: ftp://example.com/hook
""",
        ),
        ["sinks[1].url: must be an http or https URL, got scheme 'ftp'"],
    ),
    (
        "plugin-missing-field",
        MINIMAL.replace("    type: log\n", "    type: log\n  - name: hook\n    type: webhook\n"),
        ["sinks[1].url: Field required"],
    ),
    (
        "plugin-unknown-field",
        MINIMAL.replace("    type: alertmanager\n", "    type: alertmanager\n    colour: red\n"),
        ["sources[0].colour: Extra inputs are not permitted"],
    ),
    (
        "unknown-plugin-type",
        MINIMAL.replace("type: log", "type: carrier-pigeon"),
        [
            "sinks[0]: Input tag 'carrier-pigeon' found using 'type' does not match any of the "
            "expected tags: 'email', 'log', 'slack', 'teams', 'webhook'"
        ],
    ),
    (
        "plugin-without-type",
        MINIMAL.replace("    type: log\n", ""),
        ["sinks[0]: Unable to extract tag using discriminator 'type'"],
    ),
    (
        "route-names-unknown-sink",
        MINIMAL.replace("sinks: [out]", "sinks: [out, x]"),
        ["routes[0].sinks[1]: unknown sink 'x'"],
    ),
    (
        "route-names-unknown-source",
        MINIMAL + "    sources: [am, grafana]\n",
        ["routes[0].sources[1]: unknown source 'grafana'"],
    ),
    (
        "bad-matcher",
        MINIMAL + "    matchers: ['team=db', 'team=~(db']\n",
        [
            "routes[0].matchers[1]: 'team=~(db': invalid regex: "
            "missing ), unterminated subpattern at position 0"
        ],
    ),
    (
        "duplicate-names",
        MINIMAL
        + """\
  - name: default
    sinks: [out]
  - name: default
services:
  - name: api
  - name: api
""",
        [
            "routes[1].name: duplicate name 'default' (also routes[0])",
            "routes[2].name: duplicate name 'default' (also routes[0])",
            "services[1].name: duplicate name 'api' (also services[0])",
        ],
    ),
    (
        "duplicate-sink-names",
        MINIMAL.replace("    type: log\n", "    type: log\n  - name: out\n    type: log\n"),
        ["sinks[1].name: duplicate name 'out' (also sinks[0])"],
    ),
    (
        "sources-without-routes",
        "sources:\n  - name: am\n    type: alertmanager\n",
        ["routes: at least one route is needed, or every alert is dropped as unrouted"],
    ),
    (
        "incomplete-priority-matrix",
        "priority:\n  matrix:\n    high: {high: P1, medium: P2, low: P3}\n",
        [
            "priority.matrix.medium: must map every urgency (high, medium, low)",
            "priority.matrix.low: must map every urgency (high, medium, low)",
        ],
    ),
    (
        "bad-priority-level",
        "priority:\n  default_impact: huge\n",
        ["priority.default_impact: String should match pattern '^(high|medium|low)$'"],
    ),
    (
        "bad-route-name",
        MINIMAL.replace("name: default", "name: 'my route'"),
        ["routes[0].name: String should match pattern '^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$'"],
    ),
    ("top-level-not-a-mapping", "- a\n- b\n", ["(top level): must be a mapping"]),
]


@pytest.mark.parametrize(("text", "expected"), [e[1:] for e in ERRORS], ids=[e[0] for e in ERRORS])
def test_config_errors(tmp_path: Path, text: str, expected: list[str]) -> None:
    """Every problem is reported at once, each as `path: reason` with list indexes and no type tags."""
    assert problems(tmp_path, text) == expected


def test_yaml_syntax_error_names_the_line(tmp_path: Path) -> None:
    """A YAML syntax error names the file, line and column."""
    (problem,) = problems(tmp_path, "routes:\n  - name: [unclosed\n")
    assert problem.startswith(f"{tmp_path / 'alertbridge.yaml'}: line 3, column 1: ")


def test_missing_file(tmp_path: Path) -> None:
    """A missing config file is a ConfigError naming the path."""
    with pytest.raises(ConfigError, match=r"nope\.yaml: cannot read: No such file or directory"):
        load_settings(tmp_path / "nope.yaml", env={})


# -------------------------------------------------------------------------------------- variables

HOOK = MINIMAL.replace(
    "    type: log\n", "    type: log\n  - name: hook\n    type: webhook\n    url: {url}\n"
)

ENV = [
    ("variable", "${HOOK_URL}", {"HOOK_URL": "https://h.example/x"}, "https://h.example/x"),
    ("variable-inside-text", "https://${HOST}/x", {"HOST": "h.example"}, "https://h.example/x"),
    (
        "two-variables",
        "${SCHEME}://${HOST}/x",
        {"SCHEME": "https", "HOST": "h.example"},
        "https://h.example/x",
    ),
    ("default-when-unset", "${HOOK_URL:-https://fallback.example/}", {}, "https://fallback.example/"),
    (
        "set-beats-default",
        "${HOOK_URL:-https://fallback.example/}",
        {"HOOK_URL": "https://h.example/x"},
        "https://h.example/x",
    ),
    ("empty-default", "https://h.example/${SUFFIX:-}", {}, "https://h.example/"),
    ("set-but-empty-is-used", "https://h.example/${SUFFIX:-x}", {"SUFFIX": ""}, "https://h.example/"),
]


@pytest.mark.parametrize(("url", "env", "expected"), [e[1:] for e in ENV], ids=[e[0] for e in ENV])
def test_env_interpolation(tmp_path: Path, url: str, env: dict[str, str], expected: str) -> None:
    """`${VAR}` and `${VAR:-default}` in string values are replaced from the environment."""
    assert load(tmp_path, HOOK.format(url=url), env).sinks[1].url == expected


def test_missing_env_var_names_its_path(tmp_path: Path) -> None:
    """An unset variable without a default is an error naming where it was used, with the other errors."""
    text = HOOK.format(url="https://${HOST}/x") + "    grup_by: [a]\n"
    assert problems(tmp_path, text) == [
        "sinks[1].url: environment variable HOST is not set",
        "sinks[1].url: must name a host",  # what the empty value then made of the URL
        "routes[0].grup_by: Extra inputs are not permitted",
    ]


def test_missing_env_var_in_a_list_names_its_index(tmp_path: Path) -> None:
    """A missing variable inside a list is reported with the list index."""
    assert problems(tmp_path, MINIMAL.replace("sinks: [out]", "sinks: [out, '${EXTRA}']")) == [
        "routes[0].sinks[1]: environment variable EXTRA is not set",
        "routes[0].sinks[1]: unknown sink ''",
    ]


def test_env_values_are_not_reinterpolated(tmp_path: Path) -> None:
    """A variable whose value looks like `${OTHER}` is taken literally, not expanded again."""
    text = MINIMAL.replace("name: out", "name: ${SINK}").replace("sinks: [out]", "sinks: ['${SINK}']")
    with pytest.raises(ConfigError, match="String should match pattern"):
        load(tmp_path, text, {"SINK": "${OTHER}", "OTHER": "out"})


# -------------------------------------------------------------------------------------- durations

DURATIONS = [
    ("seconds", "30s", 30.0),
    ("minutes", "5m", 300.0),
    ("hours-and-minutes", "1h30m", 5400.0),
    ("milliseconds", "250ms", 0.25),
    ("minutes-and-seconds", "1m5s", 65.0),
    ("fraction", "1.5h", 5400.0),
    ("days", "2d", 172800.0),
    ("weeks", "1w", 604800.0),
    ("integer-seconds", 45, 45.0),
    ("float-seconds", 2.5, 2.5),
    ("zero", 0, 0.0),
    ("numeric-string", "45", 45.0),
    ("spaces-around", " 30s ", 30.0),
]


@pytest.mark.parametrize(("value", "seconds"), [d[1:] for d in DURATIONS], ids=[d[0] for d in DURATIONS])
def test_parse_duration(value: object, seconds: float) -> None:
    """Durations are Go-style strings or numbers of seconds."""
    assert parse_duration(value) == seconds


BAD_DURATIONS = [
    ("word", "bad", "is not a duration"),
    ("empty", "", "is not a duration"),
    ("trailing-number", "5m30", "is not a duration"),
    ("unknown-unit", "5x", "is not a duration"),
    ("inner-space", "1h 30m", "is not a duration"),
    ("negative-string", "-5", "must not be negative"),
    ("negative-with-unit", "-5s", "is not a duration"),
    ("negative-number", -1, "must not be negative"),
    ("boolean", True, "must be a duration"),
    ("null", None, "must be a duration"),
    ("list", [30], "must be a duration"),
]


@pytest.mark.parametrize(
    ("value", "message"), [b[1:] for b in BAD_DURATIONS], ids=[b[0] for b in BAD_DURATIONS]
)
def test_parse_duration_rejects(value: object, message: str) -> None:
    """Anything else is a ValueError that says how to write a duration."""
    with pytest.raises(ValueError, match=message):
        parse_duration(value)


@pytest.mark.parametrize(
    ("value", "expected"),
    [("1h30m", 5400.0), (45, 45.0), ("'90'", 90.0)],
    ids=["go-style", "number", "quoted-number"],
)
def test_route_durations(tmp_path: Path, value: str, expected: float) -> None:
    """Route timings accept durations in every form."""
    settings = load(tmp_path, MINIMAL + f"    group_wait: {value}\n    group_interval: {value}\n")
    assert settings.routes[0].group_wait == settings.routes[0].group_interval == expected


def test_route_duration_error_names_its_path(tmp_path: Path) -> None:
    """A bad route duration is reported at its path."""
    assert problems(tmp_path, MINIMAL + "    reopen_window: bad\n") == [
        "routes[0].reopen_window: 'bad' is not a duration (use e.g. 30s, 5m, 1h30m)"
    ]


def test_validate_settings_reads_the_given_env_only() -> None:
    """validate_settings interpolates from the mapping it is given, not the process environment."""
    raw = {"sinks": [{"name": "${NAME:-fallback}", "type": "log"}]}
    assert validate_settings(raw, {"NAME": "given"}).sinks[0].name == "given"
    assert validate_settings(raw, {}).sinks[0].name == "fallback"


@pytest.mark.parametrize(("seconds", "text"), [(0, "0s"), (45, "45s"), (90, "1m30s"), (300, "5m"), (7200, "2h"),
                                               (5400, "1h30m"), (86400, "24h")])
def test_format_duration_writes_what_parse_duration_reads(seconds: float, text: str) -> None:
    """format_duration writes durations as people do, and parse_duration reads them back."""
    from bridge.plugins import format_duration, parse_duration

    assert format_duration(seconds) == text and parse_duration(text) == seconds
