"""Imports run one way: config ← audit ← accounts ← workflows ← runs (docs/architecture.md).

Every module of the apps is parsed (nothing is imported): a module may import its own app and the apps to
its left, never one to its right; an import of another app hidden inside a function is refused unless it
is on the allowlist below; and only a few named modules may build hand-written SQL (config/sql.py)."""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
LAYERS = ["config", "audit", "accounts", "workflows", "runs"]

# The composition root wires the apps together, so it may import any of them.
COMPOSITION_ROOT = ("config/urls.py", "config/dashboard_urls.py", "config/management/", "config/asgi.py")

# Cross-app imports that must stay inside a function, each with its reason.
FUNCTION_IMPORT_ALLOWLIST = {
    # AppConfig.ready(): models and registries can only be imported once the app registry is ready.
    ("runs/apps.py", "accounts.models"),
    # Data migrations and migration helpers run with the historical app registry.
    ("workflows/migrations/", "workflows.templates_loader"),
}

# The modules that may build statements with config/sql.py: the engine's unit of work, the reconciler, the
# broker, admission, the audit append, the API key lookup and the trigger's and run read's fast paths.
# Services and selectors call their functions instead.
SQL_MODULES = {
    "config/sql.py",  # the statement builders themselves
    "runs/engine/unit_of_work.py",  # the engine's writes of a run, its steps, events and audit records
    "runs/engine/reconciler.py",  # the reconciler's scans
    "runs/engine/broker.py",  # the ORM broker's empty poll
    "runs/concurrency.py",  # admission: the organisation lock and the queued-run reads
    "runs/engine/secrets.py",  # the policy read of every run start and trigger
    "runs/fastpaths.py",  # the trigger's writes and the run read
    "workflows/fastpaths.py",  # the trigger's workflow lookup
    "accounts/fastpaths.py",  # the API key lookup of every key-authenticated request
    "audit/chain.py",  # the audit append (one statement on PostgreSQL)
    "audit/services.py",
    "runs/services/trigger.py",  # the trigger's last writes sent with its COMMIT (a pipeline, no statement)
    "config/api/idempotency.py",  # holds a pipeline's COMMIT until the stored answer (no statement)
}


def app_modules():
    for app in LAYERS:
        for path in sorted((ROOT / app).rglob("*.py")):
            yield app, path.relative_to(ROOT).as_posix(), path


def imports_of(path: Path):
    """(module imported, line, inside a function?) for every absolute import of the file."""
    tree = ast.parse(path.read_text(), filename=str(path))
    in_function = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            in_function.update(id(inner) for inner in ast.walk(node) if inner is not node)
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module]
        elif isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        else:
            continue
        for name in names:
            yield name, node.lineno, id(node) in in_function


def layer_problems(app: str, rel: str, path: Path) -> list[str]:
    problems = []
    for module, line, in_function in imports_of(path):
        top = module.split(".")[0]
        if top not in LAYERS:
            continue
        if LAYERS.index(top) > LAYERS.index(app) and not rel.startswith(COMPOSITION_ROOT):
            problems.append(f"{rel}:{line} imports {module}, a layer above {app}")
        elif in_function and top != app and not rel.startswith(COMPOSITION_ROOT):
            root = module if module.count(".") < 2 else ".".join(module.split(".")[:2])
            allowed = any(
                rel.startswith(prefix) and root.startswith(name) for prefix, name in FUNCTION_IMPORT_ALLOWLIST
            )
            if not allowed:
                problems.append(f"{rel}:{line} imports {module} inside a function")
    return problems


def test_imports_follow_the_layer_order():
    problems = [problem for app, rel, path in app_modules() for problem in layer_problems(app, rel, path)]
    assert problems == []


def test_only_the_named_modules_build_sql_statements():
    users = sorted(
        rel
        for _app, rel, path in app_modules()
        if any(
            module in ("config.sql", "config.sql.Select")
            or module.startswith("config.sql.")
            or module == "config.sql"
            for module, _line, _f in imports_of(path)
        )
        or "from config import sql" in path.read_text()
    )
    assert set(users) <= SQL_MODULES, sorted(set(users) - SQL_MODULES)


@pytest.mark.parametrize(
    ("app", "source", "expected"),
    [
        ("audit", "from runs.models import Run\n", "imports runs.models, a layer above audit"),
        ("accounts", "def f():\n    from workflows.models import Workflow\n", "a layer above accounts"),
        ("runs", "def f():\n    from accounts.models import User\n", "inside a function"),
    ],
)
def test_the_check_catches_an_import_against_the_order(tmp_path, app, source, expected):
    module = tmp_path / "module.py"
    module.write_text(source)
    problems = layer_problems(app, f"{app}/module.py", module)
    assert len(problems) == 1 and expected in problems[0]


def test_the_check_accepts_imports_down_the_layers(tmp_path):
    module = tmp_path / "module.py"
    module.write_text("from accounts.models import User\nfrom config.errors import NotFound\n")
    assert layer_problems("workflows", "workflows/module.py", module) == []
