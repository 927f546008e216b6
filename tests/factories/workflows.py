"""Workflows and their versions, made by workflow_create and workflow_update."""

import factory

from tests.factories.accounts import OrganizationFactory, owner_of
from workflows.models import Workflow, WorkflowVersion
from workflows.services import workflow_create, workflow_update


def transform(step_id: str = "a", value="x", **extra) -> dict:
    """A `transform` step: the smallest valid step."""
    return {"id": step_id, "type": "transform", "config": {"value": value}, **extra}


def _definition(factory_params) -> dict:
    definition = {"name": factory_params.name, "steps": factory_params.steps}
    if factory_params.inputs is not None:
        definition["inputs"] = factory_params.inputs
    if factory_params.output is not None:
        definition["output"] = factory_params.output
    return definition


class WorkflowFactory(factory.django.DjangoModelFactory):
    """A workflow and its version 1, made by workflow_create as the API makes one. Give `steps` (with
    `name`, `inputs`, `output`) or a whole `definition`; other keywords (tags, concurrency, status…) go to
    the service. The actor defaults to the organisation's owner."""

    class Meta:
        model = Workflow

    class Params:
        name = factory.Sequence(lambda n: f"Flow {n}")
        steps = factory.LazyFunction(lambda: [transform("a", 1)])
        inputs = None
        output = None

    organization = factory.SubFactory(OrganizationFactory)
    actor = factory.LazyAttribute(lambda o: owner_of(o.organization))
    definition = factory.LazyAttribute(_definition)

    @classmethod
    def _create(cls, model_class, *args, **kwargs):
        return workflow_create(**kwargs)


class WorkflowVersionFactory(factory.django.DjangoModelFactory):
    """The next version of a workflow, made by workflow_update. The default definition is the latest
    version's, renamed (a definition equal to the latest makes no version)."""

    class Meta:
        model = WorkflowVersion

    workflow = factory.SubFactory(WorkflowFactory)
    actor = factory.LazyAttribute(lambda o: owner_of(o.workflow.organization))
    definition = factory.LazyAttribute(
        lambda o: {**_latest(o.workflow), "name": f"{o.workflow.name}, edited"}
    )
    change_summary = "Edited"

    @classmethod
    def _create(cls, model_class, *args, **kwargs):
        workflow, created = workflow_update(**kwargs)
        assert created, "the definition is the latest version's: no version was made"
        return workflow.versions.get(number=workflow.current_version)


def _latest(workflow: Workflow) -> dict:
    return workflow.versions.get(number=workflow.current_version).definition
