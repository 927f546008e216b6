"""script steps end to end through the engine: real sandboxed child processes (sandbox.run_script)."""

import time

import pytest

from runs.engine.steps.script import script_output


def script_step(step_id, code, language="python", **extra):
    config = {"language": language, "code": code, **extra.pop("config", {})}
    return {"id": step_id, "type": "script", "config": config, **extra}


def test_json_object_stdout_becomes_the_output(engine):
    code = "import json\nprint(json.dumps({'total': 3, 'names': ['a', 'b']}))\n"
    run = engine.start([script_step("calc", code)], output="{{ steps.calc.output.total }}")
    assert run.status == "completed", run.error
    assert engine.steps(run)["calc"].output_data == {"total": 3, "names": ["a", "b"], "stderr": "",
                                                     "exit_code": 0}  # fmt: skip
    assert run.result == 3


def test_stdin_carries_inputs_step_outputs_and_the_run(engine):
    code = "import json, sys\ndata = json.load(sys.stdin)\nprint(json.dumps({'got': data}))\n"
    steps = [
        {"id": "first", "type": "transform", "config": {"value": {"x": "{{ inputs.n * 2 }}"}}},
        script_step("read", code, depends_on=["first"]),
    ]
    run = engine.start(steps, input_data={"n": 21})
    assert run.status == "completed", run.error
    got = engine.steps(run)["read"].output_data["got"]
    assert got == {"inputs": {"n": 21}, "steps": {"first": {"x": 42}},
                   "run": {"id": run.id, "workflow_id": run.workflow_id}}  # fmt: skip


def test_shell_text_stdout_and_a_clean_environment(engine, monkeypatch):
    monkeypatch.setenv("BATON_FAKE_SECRET", "do-not-leak")
    code = 'echo "hi $GREETING"\necho "leak:${BATON_FAKE_SECRET:-none}"\necho warn >&2\n'
    step = script_step("say", code, language="shell", config={"env": {"GREETING": "{{ inputs.who }}"}})
    run = engine.start([step], input_data={"who": "ann"})
    assert run.status == "completed", run.error
    output = engine.steps(run)["say"].output_data
    assert output == {"stdout": "hi ann\nleak:none\n", "stderr": "warn\n", "exit_code": 0}


def test_non_object_json_is_wrapped_in_result(engine):
    run = engine.start([script_step("nums", "print('[1, 2, 3]')")])
    assert engine.steps(run)["nums"].output_data == {"result": [1, 2, 3], "stderr": "", "exit_code": 0}


def test_non_zero_exit_fails_with_script_failed(engine):
    code = "import sys\nsys.stderr.write('bad input\\n')\nsys.exit(3)\n"
    run = engine.start([script_step("boom", code)])
    row = engine.steps(run)["boom"]
    assert run.status == "failed" and run.error["code"] == "script_failed" and run.error["step_id"] == "boom"
    assert row.error["details"] == {"exit_code": 3, "stderr": "bad input\n"}
    assert row.attempt == 1  # no retry policy: one attempt


def test_script_failed_is_retried_only_when_the_step_has_a_retry_policy(engine):
    run = engine.start([script_step("boom", "raise SystemExit(1)", retry={"max_attempts": 2})])
    row = engine.steps(run)["boom"]
    assert run.status == "failed" and row.attempt == 2
    assert [a["error"]["code"] for a in row.attempts] == ["script_failed", "script_failed"]


def test_timeout_kills_the_script_with_step_timeout(engine):
    started = time.monotonic()
    run = engine.start([script_step("sleepy", "import time\ntime.sleep(30)", config={"timeout_seconds": 1})])
    assert time.monotonic() - started < 5
    row = engine.steps(run)["sleepy"]
    assert run.status == "failed" and row.error["code"] == "step_timeout"
    assert row.error["details"]["timeout_seconds"] == 1


def test_dry_run_skips_scripts_with_their_resolved_input(engine):
    step = script_step("never", "raise SystemExit(9)", config={"env": {"A": "{{ inputs.a }}"}})
    run = engine.start([step], input_data={"a": "x"}, dry_run=True)
    row = engine.steps(run)["never"]
    assert run.status == "completed"
    assert row.status == "skipped" and row.skip_reason == "dry_run" and row.input_data["env"] == {"A": "x"}


def test_a_loop_of_scripts_receives_item_and_index(engine):
    code = (
        "import json, sys\nd = json.load(sys.stdin)\n"
        "print(json.dumps({'v': d['item'] * 10, 'i': d['index']}))"
    )
    inline = {"type": "script", "config": {"language": "python", "code": code}}
    loop = {"id": "each", "type": "loop", "config": {"items": "inputs.xs", "step": inline}}
    run = engine.start([loop], input_data={"xs": [1, 2]})
    assert run.status == "completed", run.error
    items = engine.steps(run)["each"].output_data["items"]
    assert [(item["v"], item["i"]) for item in items] == [(10, 0), (20, 1)]


@pytest.mark.parametrize(
    ("stdout", "expected"),
    [
        ('{"a": 1}', {"a": 1, "stderr": "e", "exit_code": 0}),
        ('{"stderr": "mine", "exit_code": 7}', {"stderr": "mine", "exit_code": 7}),
        ("42\n", {"result": 42, "stderr": "e", "exit_code": 0}),
        ("not json", {"stdout": "not json", "stderr": "e", "exit_code": 0}),
        ("", {"stdout": "", "stderr": "e", "exit_code": 0}),
        ("null", {"result": None, "stderr": "e", "exit_code": 0}),
        ('"text"', {"result": "text", "stderr": "e", "exit_code": 0}),
    ],
)
def test_output_shapes(stdout, expected):
    assert script_output(stdout, "e", 0) == expected
