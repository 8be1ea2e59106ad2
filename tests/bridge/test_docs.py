"""The README's configuration reference is the one the config models generate."""

from __future__ import annotations

from pathlib import Path

from bridge.docs import BEGIN, END, config_reference, embed

README = Path(__file__).resolve().parents[2] / "README.md"


def test_readme_reference_is_current() -> None:
    """README.md embeds exactly what `alertbridge config-reference` prints (regenerate with --write)."""
    text = README.read_text()
    assert config_reference() in text, "run: .venv/bin/alertbridge config-reference --write README.md"


def test_every_plugin_field_is_documented() -> None:
    """Every row of the reference has a description."""
    reference = config_reference()
    rows = [line for line in reference.splitlines() if line.startswith("| `")]
    assert rows
    assert all(not line.rstrip().endswith("|  |") for line in rows)


def test_embed_replaces_only_between_markers() -> None:
    """Embedding keeps the text around the markers."""
    doc = f"before\n{BEGIN}\nstale-reference-text\n{END}\nafter\n"
    out = embed(doc)
    assert out.startswith("before\n") and out.endswith("\nafter\n") and "stale-reference-text" not in out
