"""The newcomer's documents tell the truth: every variable the settings read is documented."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def variables_read_by_settings() -> set[str]:
    source = (ROOT / "config" / "settings.py").read_text()
    found = set(re.findall(r"""env_\w+\(\s*["']([A-Z][A-Z0-9_]*)["']""", source))
    found |= set(re.findall(r"""os\.environ(?:\.get)?[\[(]\s*["']([A-Z][A-Z0-9_]*)["']""", source))
    return found


def test_settings_read_the_expected_core_variables():
    assert {
        "BATON_ENV",
        "BATON_DATA_DIR",
        "DATABASE_URL",
        "REDIS_URL",
        "BATON_SECRET_KEY",
    } <= variables_read_by_settings()


def test_every_variable_is_in_env_example_readme_and_configuration_doc():
    env_example = {
        line.split("=", 1)[0].strip()
        for line in (ROOT / ".env.example").read_text().splitlines()
        if "=" in line and not line.lstrip().startswith("#")
    }
    readme = (ROOT / "README.md").read_text()
    configuration = (ROOT / "docs" / "configuration.md").read_text()
    variables = variables_read_by_settings()
    assert sorted(variables - env_example) == [], "missing from .env.example"
    assert sorted(name for name in variables if f"| `{name}` |" not in readme) == [], (
        "missing from README table"
    )
    assert sorted(name for name in variables if f"`{name}`" not in configuration) == [], "missing from docs"


def test_readme_opens_with_what_baton_is_and_the_two_commands():
    head = "\n".join((ROOT / "README.md").read_text().splitlines()[:20])
    assert "self-hostable platform for AI-agent workflows" in head
    assert "make run" in head and "make test" in head


def test_readme_links_to_docs_written_here():
    readme = (ROOT / "README.md").read_text()
    for name in ("operations.md", "configuration.md"):
        assert f"(docs/{name})" in readme and (ROOT / "docs" / name).exists()
