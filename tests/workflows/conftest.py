import pytest

from tests.workflows.support.helpers import make_workflow


@pytest.fixture
def workflow(org, owner):
    return make_workflow(org, owner)
