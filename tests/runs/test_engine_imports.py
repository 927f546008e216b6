"""The engine knows nothing about HTTP: neither it nor any project module it imports (transitively)
imports DRF, django.http, serializers or views."""

import ast
from pathlib import Path

from django.conf import settings

ROOT = Path(settings.BASE_DIR)
PROJECT_PACKAGES = {"accounts", "audit", "config", "runs", "workflows"}
FORBIDDEN_PREFIXES = ("rest_framework", "django.http", "django.views", "django.shortcuts", "drf_spectacular")
FORBIDDEN_PARTS = {"serializers", "views", "api"}


def _module_file(module: str) -> Path | None:
    base = ROOT.joinpath(*module.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.exists():
            return candidate
    return None


def _imports(path: Path, module: str) -> set[str]:
    names: set[str] = set()
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                parts = package.split(".")
                base = ".".join(parts[: len(parts) - node.level + 1])
                target = f"{base}.{node.module}" if node.module else base
            else:
                target = node.module
            names.add(target)
            names.update(f"{target}.{alias.name}" for alias in node.names)
    return names


def walk_imports(start: list[str]) -> tuple[set[str], list[str]]:
    """Follow the project imports from the `start` modules; returns the modules reached and the imports
    of the HTTP layer found on the way."""
    seen: set[str] = set()
    todo = list(start)
    offenders = []
    while todo:
        module = todo.pop()
        if module in seen:
            continue
        seen.add(module)
        path = _module_file(module)
        if path is None:
            continue
        for name in _imports(path, module):
            parts = name.split(".")
            if name.startswith(FORBIDDEN_PREFIXES) or (
                parts[0] in PROJECT_PACKAGES and FORBIDDEN_PARTS & set(parts[1:])
            ):
                offenders.append(f"{module} imports {name}")
            elif parts[0] in PROJECT_PACKAGES:
                todo.append(name)
    return seen, offenders


def test_engine_imports_nothing_from_the_http_layer():
    start = [
        ".".join(path.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")
        for path in (ROOT / "runs" / "engine").rglob("*.py")
    ]
    assert "runs.engine.execute" in start and "runs.engine.steps.loop" in start
    seen, offenders = walk_imports(start)
    assert "runs.models" in seen and "audit.services" in seen  # the walk does follow project imports
    assert offenders == []
