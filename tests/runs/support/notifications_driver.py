"""Run inside a cluster test's environment: `python -m tests.runs.support.notifications_driver start URL`
creates an organisation whose notification webhook is URL (127.0.0.1 allowed by its policy) and a run
waiting for an approval, dispatched through the real broker; prints {"run": id}."""

import json
import sys
import uuid

import django


def start(url: str) -> dict:
    from accounts.services import organization_update, security_policy_update
    from tests.factories import OrganizationFactory, RunFactory, WorkflowFactory, owner_of

    org = OrganizationFactory(name="Notified", owner__email=f"notified-{uuid.uuid4().hex[:8]}@x.test")
    actor = owner_of(org)
    security_policy_update(organization=org, actor=actor, changes={"http_allowlist": ["127.0.0.1"]})
    organization_update(organization=org, actor=actor, notification_webhook_url=url)
    steps = [{"id": "ok", "type": "approval", "config": {"message": "Ship it?"}}]
    workflow = WorkflowFactory(organization=org, actor=actor, definition={"name": "Notified", "steps": steps})
    return {"run": RunFactory(workflow=workflow, actor=actor, input_data={}).id}


if __name__ == "__main__":
    django.setup()
    if sys.argv[1] == "start":
        print(json.dumps(start(sys.argv[2])))
