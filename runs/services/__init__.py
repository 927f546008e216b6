"""Run operations: every write to a run goes through these services or the engine (keyword-only, explicit
actor). `from runs.services import run_cancel` works for every public name of the package."""

from runs.services.approvals import (
    GATE,
    NOTE_MAX_LENGTH,
    at_gate,
    environment_gate,
    field_errors,
    gate_event,
    hold_if_gated,
    input_problems,
    is_approver,
    run_collect_inputs,
    run_decide,
)
from runs.services.bulk import (
    BULK_FILTER_MAX,
    BULK_TIME_BUDGET_SECONDS,
    BulkResult,
    runs_bulk_cancel,
    runs_bulk_delete,
)
from runs.services.control import delete_locked, run_cancel, run_delete, run_pause, run_pin_set, run_terminate
from runs.services.files import Upload, remove_files, run_file_path, safe_file_name, store_upload
from runs.services.resume import KEPT, RESUMABLE, run_rerun, run_resume
from runs.services.trigger import form_input, input_errors, run_create, run_trigger, uses_agents

__all__ = [
    "BULK_FILTER_MAX",
    "BULK_TIME_BUDGET_SECONDS",
    "GATE",
    "KEPT",
    "NOTE_MAX_LENGTH",
    "RESUMABLE",
    "BulkResult",
    "Upload",
    "at_gate",
    "delete_locked",
    "environment_gate",
    "field_errors",
    "form_input",
    "gate_event",
    "hold_if_gated",
    "input_errors",
    "input_problems",
    "is_approver",
    "remove_files",
    "run_cancel",
    "run_collect_inputs",
    "run_create",
    "run_decide",
    "run_delete",
    "run_file_path",
    "run_pause",
    "run_pin_set",
    "run_rerun",
    "run_resume",
    "run_terminate",
    "run_trigger",
    "runs_bulk_cancel",
    "runs_bulk_delete",
    "safe_file_name",
    "store_upload",
    "uses_agents",
]
