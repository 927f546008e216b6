"""Differences between two workflow definitions: an RFC 6902 patch and a one-line human summary."""

import copy
import difflib
import json

import jsonpatch


def same_json(a, b) -> bool:
    """Equal as JSON text. Python's == calls 1 and true (or 0 and false) equal; a diff must not."""
    return json.dumps(a, sort_keys=True) == json.dumps(b, sort_keys=True)


def definition_patch(old: dict, new: dict) -> list[dict]:
    """RFC 6902 operations that turn `old` into `new` (verified: applying them yields `new` exactly)."""
    ops = jsonpatch.make_patch(old, new).patch
    try:
        if same_json(jsonpatch.apply_patch(copy.deepcopy(old), ops), new):
            return ops
    except (jsonpatch.JsonPatchException, jsonpatch.JsonPointerException):
        pass
    # jsonpatch's list diffing has known edge cases; fall back to whole-value replacements, still exact.
    if not isinstance(old, dict) or not isinstance(new, dict):
        return [{"op": "replace", "path": "", "value": copy.deepcopy(new)}]
    fallback = [{"op": "remove", "path": _pointer(key)} for key in old if key not in new]
    for key, value in new.items():
        if key not in old:
            fallback.append({"op": "add", "path": _pointer(key), "value": copy.deepcopy(value)})
        elif not same_json(old[key], value):
            fallback.append({"op": "replace", "path": _pointer(key), "value": copy.deepcopy(value)})
    return fallback


def _pointer(key: str) -> str:
    return "/" + str(key).replace("~", "~0").replace("/", "~1")


def _steps_by_id(definition) -> tuple[dict, list]:
    steps = definition.get("steps") if isinstance(definition, dict) else None
    by_id, order = {}, []
    for step in steps if isinstance(steps, list) else []:
        step_id = step.get("id") if isinstance(step, dict) else None
        if isinstance(step_id, str) and step_id not in by_id:
            by_id[step_id] = step
            order.append(step_id)
    return by_id, order


def _count(n: int, verb: str) -> str:
    return f"{verb} {n} step" + ("" if n == 1 else "s")


def definition_summary(old: dict, new: dict) -> str:
    """E.g. "Added 1 step, modified 1 step, changed inputs"; "No changes" when equal. Steps match by id."""
    if same_json(old, new):
        return "No changes"
    old_steps, old_order = _steps_by_id(old)
    new_steps, new_order = _steps_by_id(new)
    added = [sid for sid in new_order if sid not in old_steps]
    removed = [sid for sid in old_order if sid not in new_steps]
    modified = [
        sid for sid in new_order if sid in old_steps and not same_json(old_steps[sid], new_steps[sid])
    ]
    parts = []
    if added:
        parts.append(_count(len(added), "added"))
    if removed:
        parts.append(_count(len(removed), "removed"))
    if modified:
        parts.append(_count(len(modified), "modified"))
    old_kept = [sid for sid in old_order if sid in new_steps]
    new_kept = [sid for sid in new_order if sid in old_steps]
    old_dict = old if isinstance(old, dict) else {}
    new_dict = new if isinstance(new, dict) else {}
    steps_changed = not same_json(old_dict.get("steps"), new_dict.get("steps"))
    if old_kept != new_kept or (steps_changed and not (added or removed or modified)):
        parts.append("reordered steps")
    for key in ("inputs", "output", "name", "description"):
        if not same_json(old_dict.get(key), new_dict.get(key)):
            parts.append(f"changed {key}")
    others = sorted(
        key
        for key in set(old_dict) | set(new_dict)
        if key not in {"steps", "inputs", "output", "name", "description"}
        and not same_json(old_dict.get(key), new_dict.get(key))
    )
    parts.extend(f"changed {key}" for key in others)
    if not parts:
        parts.append("changed the definition")
    summary = ", ".join(parts)
    return summary[0].upper() + summary[1:]


MAX_DIFF_LINES = 2000


def canonical_lines(definition) -> list[str]:
    """A definition as canonical pretty JSON (keys sorted, two-space indent), one string per line."""
    return json.dumps(definition, indent=2, sort_keys=True, ensure_ascii=False).splitlines()


def definition_line_diff(
    old, new, *, context: int = 3, limit: int = MAX_DIFF_LINES
) -> tuple[list[dict], bool]:
    """A line diff of two definitions' canonical JSON for people to read: rows `{"kind": "hunk" | "same" |
    "added" | "removed", "old": line number or None, "new": line number or None, "text"}` with `context`
    unchanged lines around each change, at most `limit` rows; the flag says whether rows were left off."""
    a, b = canonical_lines(old), canonical_lines(new)
    rows: list[dict] = []
    matcher = difflib.SequenceMatcher(a=a, b=b, autojunk=False)
    for group in matcher.get_grouped_opcodes(context):
        first = group[0]
        rows.append({"kind": "hunk", "old": first[1] + 1, "new": first[3] + 1, "text": ""})
        for tag, i1, i2, j1, j2 in group:
            if tag == "equal":
                rows.extend(
                    {"kind": "same", "old": i + 1, "new": j + 1, "text": a[i]}
                    for i, j in zip(range(i1, i2), range(j1, j2), strict=True)
                )
                continue
            if tag in ("replace", "delete"):
                rows.extend(
                    {"kind": "removed", "old": i + 1, "new": None, "text": a[i]} for i in range(i1, i2)
                )
            if tag in ("replace", "insert"):
                rows.extend({"kind": "added", "old": None, "new": j + 1, "text": b[j]} for j in range(j1, j2))
        if len(rows) > limit:
            return rows[:limit], True
    return rows, False
