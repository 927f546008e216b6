"""Loads the built-in templates shipped in workflows/builtin_templates/*.json into the database."""

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path

from django.db import transaction
from django.utils import timezone

from workflows.definition import validate_definition

logger = logging.getLogger("baton.workflows")

BUILTIN_TEMPLATES_DIR = Path(__file__).resolve().parent / "builtin_templates"


@dataclass
class SyncResult:
    created: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)


def builtin_template_files(directory: Path = BUILTIN_TEMPLATES_DIR) -> list[dict]:
    """The built-in templates on disk that are well formed and whose definition validates."""
    templates = []
    for path in sorted(directory.glob("*.json")) if directory.is_dir() else []:
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            logger.warning("Built-in template %s is not readable JSON: %s", path.name, exc)
            continue
        ok = isinstance(data, dict) and str(data.get("id", "")).startswith("tpl_") and data.get("name")
        errors = validate_definition(data.get("definition")) if ok else ["missing id/name"]
        if errors:
            logger.warning("Built-in template %s skipped: %s", path.name, "; ".join(errors))
            continue
        templates.append(data)
    return templates


def templates_sync_builtin(template_model=None, directory: Path = BUILTIN_TEMPLATES_DIR) -> SyncResult:
    """Make the built-in template rows match the files (idempotent; safe to call on every start).

    `template_model` lets a data migration pass its historical model."""
    if template_model is None:
        from workflows.models import WorkflowTemplate as template_model
    result = SyncResult()
    on_disk = builtin_template_files(directory)
    with transaction.atomic():
        existing = {t.id: t for t in template_model.objects.filter(is_builtin=True)}
        for data in on_disk:
            fields = {
                "name": str(data["name"])[:200],
                "description": str(data.get("description") or ""),
                "category": str(data.get("category") or "")[:50],
                "definition": data["definition"],
            }
            row = existing.pop(data["id"], None)
            if row is None:
                template_model.objects.create(id=data["id"], organization=None, is_builtin=True, **fields)
                result.created.append(data["id"])
            elif any(getattr(row, name) != value for name, value in fields.items()):
                template_model.objects.filter(pk=row.pk).update(updated_at=timezone.now(), **fields)
                result.updated.append(data["id"])
        if existing:
            template_model.objects.filter(pk__in=list(existing)).delete()
            result.removed.extend(sorted(existing))
    return result
