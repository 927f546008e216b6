"""Attachments sent with a trigger: stored under MEDIA_ROOT/<organisation>/<file id>, removed with the run."""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from django.conf import settings

from config.errors import PayloadTooLarge
from runs.models import RunFile

logger = logging.getLogger("baton.runs")


@dataclass(frozen=True)
class Upload:
    """A file sent with a trigger: anything with `name`, `size`, `content_type` and `chunks()`
    (Django's UploadedFile)."""

    file: object

    @property
    def name(self) -> str:
        return safe_file_name(getattr(self.file, "name", "") or "")

    @property
    def content_type(self) -> str:
        return (getattr(self.file, "content_type", "") or "application/octet-stream")[:255]


def safe_file_name(raw: str) -> str:
    """The last path component, without control characters, at most 255 characters ("upload" if empty)."""
    name = raw.replace("\\", "/").rsplit("/", 1)[-1]
    name = "".join(ch for ch in name if ch.isprintable()).strip().lstrip(".")
    return name[:255] or "upload"


def _media_root() -> Path:
    return Path(settings.MEDIA_ROOT)


def store_upload(organization_id: str, file_id: str, upload: Upload) -> tuple[str, str, int]:
    """Write the upload under MEDIA_ROOT/<org>/<file id> (via a temporary name, so a reader never sees
    half a file); return (storage path relative to MEDIA_ROOT, sha256, size)."""
    limit = settings.BATON_MAX_UPLOAD_BYTES
    if (getattr(upload.file, "size", 0) or 0) > limit:
        raise _too_large(limit)
    directory = _media_root() / organization_id
    directory.mkdir(parents=True, exist_ok=True)
    final, partial = directory / file_id, directory / f".{file_id}.part"
    digest, size = hashlib.sha256(), 0
    try:
        with open(partial, "xb") as out:
            for chunk in upload.file.chunks():
                size += len(chunk)
                if size > limit:
                    raise _too_large(limit)
                digest.update(chunk)
                out.write(chunk)
            out.flush()
            os.fsync(out.fileno())
        os.replace(partial, final)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    return f"{organization_id}/{file_id}", digest.hexdigest(), size


def _too_large(limit: int) -> PayloadTooLarge:
    return PayloadTooLarge(
        "payload_too_large",
        f"The attachment is larger than {limit} bytes.",
        details={"max_bytes": limit},
    )


def run_file_path(run_file: RunFile) -> Path | None:
    """The stored bytes of an attachment, or None when the path would leave MEDIA_ROOT or is missing."""
    root = _media_root().resolve()
    path = (root / run_file.storage_path).resolve()
    if root not in path.parents or not path.is_file():
        return None
    return path


def remove_files(storage_paths: Iterable[str]) -> None:
    root = _media_root().resolve()
    for storage_path in storage_paths:
        path = (root / storage_path).resolve()
        if root in path.parents:
            try:
                path.unlink(missing_ok=True)
            except OSError:
                logger.warning("Could not remove the attachment file %s", storage_path, exc_info=True)
