"""The built-in templates: each validates, ids are stable and unique, and every template renders."""

import json
from pathlib import Path

import pytest
from jsonschema import Draft202012Validator

from runs.engine.templating import evaluate_expression, render_value
from workflows.definition import topological_order, validate_definition
from workflows.steps import STEP_TYPES

DIRECTORY = Path(__file__).resolve().parents[2] / "workflows" / "builtin_templates"
FILES = sorted(DIRECTORY.glob("*.json"))
TEMPLATES = {path.stem: json.loads(path.read_text(encoding="utf-8")) for path in FILES}

# A realistic input for each template; it must satisfy the template's `inputs` schema.
SAMPLE_INPUTS = {
    "tpl_fetch_and_summarise": {"url": "https://example.com/post", "focus": "pricing"},
    "tpl_approval_gated_deploy": {
        "service": "billing-api",
        "version": "2.4.1",
        "environment": "production",
        "deploy_webhook_url": "https://cd.example.com/hooks/deploy",
        "health_url": "https://billing.example.com/healthz",
        "changelog": "Fix rounding of VAT.",
    },
    "tpl_nightly_report": {
        "metrics_url": "https://metrics.example.com/daily",
        "report_webhook_url": "https://hooks.example.com/report",
    },
    "tpl_incident_triage": {
        "alert": {"title": "Error rate above 5%", "service": "checkout", "description": "502s from upstream"},
        "pager_webhook_url": "https://pager.example.com/v2/enqueue",
        "tickets_api_url": "https://tickets.example.com/api/issues",
    },
    "tpl_document_extraction": {
        "attachment": {
            "file_id": "file_01",
            "name": "invoice-42.pdf",
            "size": 48213,
            "content_type": "application/pdf",
            "sha256": "ab" * 32,
        },
        "accounting_webhook_url": "https://books.example.com/hooks/invoices",
    },
    "tpl_lead_enrichment": {
        "email": "Ada@Example.com",
        "name": "Ada",
        "crm_contact_url": "https://crm.example.com/api/contacts/123",
        "sales_webhook_url": "https://hooks.example.com/sales",
    },
    "tpl_webhook_relay": {
        "event_id": "evt_123",
        "event_type": "order.paid",
        "payload": {"order_id": "o_1", "amount": 1200},
        "destination_url": "https://partner.example.com/events",
        "dead_letter_url": "https://dlq.example.com/events",
    },
    "tpl_llm_answer_review": {
        "question": "Can I change my plan mid-cycle?",
        "context": "Plans can be changed at any time; the difference is prorated.",
        "reply_webhook_url": "https://support.example.com/hooks/reply",
    },
    "tpl_decision_record": {
        "title": "Buy a second build server",
        "details": "The queue waits 20 minutes at peak.",
        "requested_by": "ada@example.com",
        "amount": 4200,
        "auto_approve_below": 500,
    },
    "tpl_uptime_check": {
        "urls": ["https://a.example.com", "https://b.example.com"],
        "alert_webhook_url": "https://hooks.example.com/alerts",
    },
}

# Outputs of script steps, which cannot be derived from a schema.
SCRIPT_OUTPUTS = {
    ("tpl_nightly_report", "compute"): {
        "date": "2026-03-01",
        "metrics": {"signups": 40, "revenue": 1234.5, "errors": 3},
        "change_percent": {"signups": 12.5, "revenue": -3.2, "errors": None},
    },
    ("tpl_uptime_check", "collect"): {
        "down": [{"url": "https://b.example.com", "status_code": 503}],
        "checked": 2,
    },
}


def sample_from_schema(schema):
    """A value satisfying a simple JSON Schema (enough for the templates' output and input schemas)."""
    if "enum" in schema:
        return schema["enum"][0]
    kind = schema.get("type", "object")
    if isinstance(kind, list):
        kind = next(k for k in kind if k != "null")
    if kind == "object":
        return {name: sample_from_schema(sub) for name, sub in schema.get("properties", {}).items()}
    if kind == "array":
        return [sample_from_schema(schema.get("items", {"type": "string"}))]
    if kind == "string":
        return {"date": "2026-03-01"}.get(schema.get("format"), "USD" if "pattern" in schema else "text")
    if kind == "integer":
        return 80
    if kind == "number":
        return 0.5
    if kind == "boolean":
        return True
    return None


def fake_output(template_id, step_id, step_type, config):
    if step_type == "script":
        return SCRIPT_OUTPUTS[(template_id, step_id)]
    if step_type == "http_request":
        return {"status_code": 200, "headers": {"content-type": "application/json"}, "body": {"ok": True}}
    if step_type == "webhook":
        return {"status_code": 200, "delivered": True}
    if step_type == "agent_task":
        data = sample_from_schema(config["output_schema"]) if "output_schema" in config else None
        return {"content": "Some text.", "data": data, "model": "test-model", "tokens": 42}
    if step_type == "input":
        return sample_from_schema(config.get("schema", {"type": "object"}))
    if step_type == "approval":
        decision = {"by": "usr_test", "approved": True, "note": "", "at": "2026-03-01T09:05:00Z"}
        return {"approved": True, "decisions": [decision]}
    if step_type == "wait":
        return {"waited_seconds": 60}
    return None


def test_there_are_at_least_eight_builtin_templates():
    assert len(TEMPLATES) >= 8


def test_template_ids_are_unique_and_stable():
    ids = [template["id"] for template in TEMPLATES.values()]
    assert len(ids) == len(set(ids))
    for stem, template in TEMPLATES.items():
        assert template["id"] == f"tpl_{stem}", "the file name is the id's slug"


def test_the_required_use_cases_are_covered():
    assert {
        "tpl_fetch_and_summarise",
        "tpl_approval_gated_deploy",
        "tpl_nightly_report",
        "tpl_incident_triage",
        "tpl_document_extraction",
        "tpl_lead_enrichment",
        "tpl_webhook_relay",
        "tpl_llm_answer_review",
    } <= {template["id"] for template in TEMPLATES.values()}


@pytest.mark.parametrize("stem", sorted(TEMPLATES))
def test_builtin_template_is_well_formed_and_valid(stem):
    template = TEMPLATES[stem]
    assert set(template) == {"id", "name", "description", "category", "definition"}
    assert template["name"] and len(template["name"]) <= 200
    assert len(template["description"]) >= 40
    assert template["category"] and len(template["category"]) <= 50
    assert validate_definition(template["definition"]) == []


@pytest.mark.parametrize("stem", sorted(TEMPLATES))
def test_builtin_template_renders_with_a_sample_input(stem):
    """Every template, `when` and expression renders in the sandbox with realistic data and outputs."""
    template = TEMPLATES[stem]
    definition = template["definition"]
    sample = SAMPLE_INPUTS[template["id"]]
    Draft202012Validator(definition["inputs"]).validate(sample)
    inputs = {**sample}
    for name, schema in definition["inputs"].get("properties", {}).items():
        inputs.setdefault(name, schema.get("default"))  # the engine fills declared defaults
    context = {
        "inputs": inputs,
        "steps": {},
        "run": {"id": "run_test", "workflow_id": "wf_test", "created_at": "2026-03-01T09:00:00Z"},
        "secrets": {
            "METRICS_API_TOKEN": "s",
            "TICKETS_API_TOKEN": "s",
            "ENRICHMENT_API_KEY": "s",
            "CRM_API_TOKEN": "s",
        },
        "env": "production",
    }
    by_id = {step["id"]: step for step in definition["steps"]}
    for step_id in topological_order(definition):
        step = by_id[step_id]
        step_type = STEP_TYPES[step["type"]]
        if "when" in step:
            assert isinstance(evaluate_expression(step["when"], context), bool)
        config = step.get("config", {})
        rendered = {}
        for key, value in config.items():
            if key in step_type.literal_fields or (step["type"] == "loop" and key == "step"):
                rendered[key] = value
            elif key in step_type.expression_fields:
                rendered[key] = evaluate_expression(value, context)
            else:
                rendered[key] = render_value(value, context)
        if step["type"] == "condition":
            assert isinstance(rendered["expression"], bool)
        if step["type"] == "loop":
            inline = config["step"]
            outputs = []
            for index, item in enumerate(rendered["items"]):
                render_value(inline.get("config", {}), {**context, "item": item, "index": index})
                outputs.append(fake_output(template["id"], step_id, inline["type"], inline.get("config", {})))
            output = {"items": outputs}
        elif step["type"] == "transform":
            output = rendered["value"]
        elif step["type"] == "condition":
            output = {"result": rendered["expression"]}
        else:
            output = fake_output(template["id"], step_id, step["type"], rendered)
        context["steps"][step_id] = {"output": output, "status": "completed", "error": None}
    if "output" in definition:
        result = render_value(definition["output"], context)
        assert result not in (None, "", {})
