"""workflows.definitions: reading, checking and normalising definitions; comparing versions.

Pure: no database. A problem case names the pointer it expects and a piece of the document
(`marker`) whose line the problem must give.
"""

from __future__ import annotations

import importlib
import inspect
import json
import re
import textwrap
from pathlib import Path
from typing import Any

import msgspec
import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from onewindow.errors import FieldError
from workflows.definitions import (
    LOGIC_FORMS,
    LOGIC_OPERATIONS,
    MAX_STATES,
    Change,
    DefinitionInvalid,
    diff,
    parse,
)
from workflows.model import (
    Action,
    AutoAction,
    Case,
    Deadline,
    DecisionState,
    Definition,
    EndState,
    Join,
    Notify,
    ParallelState,
    Reassign,
    TaskState,
    UnitRule,
    WaitState,
)

DOCS = Path(__file__).resolve().parents[2] / "docs" / "workflows.md"


def doc(states: str, *, start: str = "a", top: str = "") -> str:
    """A definition around `states` (indented under `states:`); `top` adds top-level lines."""
    body = textwrap.indent(textwrap.dedent(states).strip("\n") + "\n", "  ")
    return f"key: demo\nname: Demo\nstart: {start}\n{top}states:\n{body}"


def problems(text: str, **kwargs: Any) -> list[FieldError]:
    with pytest.raises(DefinitionInvalid) as caught:
        parse(text, **kwargs)
    assert caught.value.errors, "DefinitionInvalid without errors"
    return list(caught.value.errors)


def line_of(text: str, marker: str) -> int:
    assert marker in text, marker
    return text[: text.index(marker)].count("\n") + 1


def assert_problem(errors: list[FieldError], pointer: str, line: int, fragment: str) -> None:
    details = [error.detail for error in errors if error.pointer == pointer]
    assert any(d.startswith(f"line {line}: ") and fragment in d for d in details), (
        f"no problem at {pointer!r} on line {line} mentioning {fragment!r}; got:\n"
        + "\n".join(f"{e.pointer} {e.detail}" for e in errors)
    )


def assert_runnable(definition: Definition) -> None:
    """What the engine takes for granted in a definition it loads."""
    states = definition.states
    assert states[definition.start].parent is None
    for name, state in states.items():
        if isinstance(state, TaskState | WaitState):
            for action in state.actions.values():
                if action.target == state.parent:
                    assert action.outcome in ("approved", "rejected"), name
                else:
                    assert action.outcome is None, name
                    assert states[action.target].parent == state.parent, name
            if state.deadline is not None:
                for escalation in state.deadline.on_breach:
                    assert not isinstance(escalation, AutoAction) or escalation.action in state.actions
        elif isinstance(state, DecisionState):
            for target in [case.target for case in state.cases] + [state.otherwise]:
                assert states[target].parent == state.parent, name
        elif isinstance(state, ParallelState):
            assert set(state.next) == {"approved", "rejected"}
            assert 1 <= state.join.n <= len(state.branches) >= 2
            assert all(states[target].parent == state.parent for target in state.next.values()), name
            assert all(states[first].parent == name for first in state.branches.values()), name
        else:
            assert state.parent is None, name


# --- definitions the cases vary ---------------------------------------------------------------------

TASK = """
a:
  type: task
  role: officer
  unit: owner
  actions:
    go: {target: done}
done: {type: end, outcome: approved}
"""

PARALLEL = """
a:
  type: parallel
  branches: {one: r1, two: r2}
  join: all
  next: {approved: done, rejected: refused}
r1:
  type: task
  role: officer
  unit: {fixed: fire}
  actions:
    approve: {target: a, outcome: approved}
    reject: {target: a, outcome: rejected}
r2:
  type: task
  role: officer
  unit: {fixed: market}
  actions:
    approve: {target: a, outcome: approved}
    reject: {target: a, outcome: rejected}
done: {type: end, outcome: approved}
refused: {type: end, outcome: rejected}
"""

WAIT = """
a:
  type: task
  role: officer
  unit: owner
  actions:
    go: {target: done}
    back: {target: w}
w:
  type: wait
  reason: correction
  actions:
    resubmit: {target: a}
done: {type: end, outcome: approved}
"""

DECISION = """
a:
  type: task
  role: officer
  unit: owner
  actions:
    go: {target: d}
d:
  type: decision
  cases:
    - when: {">": [{"var": "subject.area"}, 200]}
      target: big
  otherwise: done
big: {type: end, outcome: big}
done: {type: end, outcome: approved}
"""


def task_with(replace: str, by: str, states: str = TASK, **kwargs: str) -> str:
    assert replace in states, replace
    return doc(states.replace(replace, by, 1), **kwargs)


# --- valid definitions normalise --------------------------------------------------------------------


def test_a_sequential_definition_normalises() -> None:
    text = doc(
        """
        a:
          type: task
          label: Check the application
          role: clerk
          unit: owner
          deadline: P2D
          actions:
            accept: {target: b}
            return:
              target: w
              require: [comment, data.reason]
              roles: [supervisor]
              when: {"==": [{"var": "subject.kind"}, "restaurant"]}
              label: Return for correction
        b:
          type: task
          role: supervisor
          unit: {fixed: market}
          deadline:
            duration: PT4H
            clock: continuous
            warn_at: 0.5
            on_breach:
              - notify: supervisor
              - reassign: {role: admin, unit: {fixed: town_hall}}
              - action: sign
          actions:
            sign: {target: done}
        w:
          type: wait
          reason: correction
          deadline: {duration: P15D, clock: continuous, on_breach: [{action: withdraw}]}
          actions:
            resubmit: {target: a}
            withdraw: {target: withdrawn}
        done: {type: end, outcome: approved}
        withdrawn: {type: end, outcome: withdrawn, label: Withdrawn}
        """,
        top="description: A test.\ndeadline: P20D\n",
    )
    definition = parse(text, units={"market", "town_hall"})

    assert (definition.key, definition.name, definition.start) == ("demo", "Demo", "a")
    assert definition.description == "A test."
    assert definition.deadline == Deadline(duration="P20D", clock="working_days", days=20, seconds=0)
    assert list(definition.states) == ["a", "b", "w", "done", "withdrawn"]
    a = definition.states["a"]
    assert isinstance(a, TaskState)
    assert a.unit == UnitRule(kind="owner")
    assert a.label == "Check the application"
    assert a.parent is None
    assert a.deadline == Deadline(
        duration="P2D", clock="working_days", days=2, seconds=0, warn_at=0.8, on_breach=()
    )
    assert a.actions["accept"] == Action(target="b")
    assert a.actions["return"] == Action(
        target="w",
        require=("comment", "data.reason"),
        roles=("supervisor",),
        when={"==": [{"var": "subject.kind"}, "restaurant"]},
        label="Return for correction",
    )
    b = definition.states["b"]
    assert isinstance(b, TaskState)
    assert b.unit == UnitRule(kind="fixed", code="market")
    assert b.deadline == Deadline(
        duration="PT4H",
        clock="continuous",
        days=0,
        seconds=4 * 3600,
        warn_at=0.5,
        on_breach=(
            Notify(role="supervisor"),
            Reassign(role="admin", unit=UnitRule(kind="fixed", code="town_hall")),
            AutoAction(action="sign"),
        ),
    )
    w = definition.states["w"]
    assert isinstance(w, WaitState)
    assert (w.reason, w.pauses_clock) == ("correction", True)
    assert w.deadline is not None
    assert w.deadline.on_breach == (AutoAction(action="withdraw"),)
    assert definition.states["withdrawn"] == EndState(outcome="withdrawn", label="Withdrawn")


def test_a_time_part_means_office_hours() -> None:
    definition = parse(task_with("unit: owner", "unit: owner\n  deadline: P1DT2H"))
    state = definition.states["a"]
    assert isinstance(state, TaskState)
    assert state.deadline == Deadline(duration="P1DT2H", clock="working_hours", days=1, seconds=7200)


def test_a_parallel_definition_normalises_with_parents() -> None:
    definition = parse(doc(PARALLEL))
    a = definition.states["a"]
    assert a == ParallelState(
        branches={"one": "r1", "two": "r2"},
        join=Join(mode="all", n=2),
        next={"approved": "done", "rejected": "refused"},
        decide="early",
    )
    assert {name: state.parent for name, state in definition.states.items()} == {
        "a": None,
        "r1": "a",
        "r2": "a",
        "done": None,
        "refused": None,
    }
    r1 = definition.states["r1"]
    assert isinstance(r1, TaskState)
    assert r1.actions["approve"] == Action(target="a", outcome="approved")


THREE_BRANCHES = PARALLEL.replace(
    "branches: {one: r1, two: r2}", "branches: {one: r1, two: r2, three: r3}"
) + (
    """
r3:
  type: task
  role: officer
  unit: owner
  actions:
    approve: {target: a, outcome: approved}
"""
)


@pytest.mark.parametrize(
    ("join", "expected"),
    [
        ("all", Join(mode="all", n=3)),
        ("any", Join(mode="any", n=1)),
        ('"2_of_3"', Join(mode="n_of_m", n=2)),
        ("{n_of_m: 2}", Join(mode="n_of_m", n=2)),
        ("3_of_3", Join(mode="n_of_m", n=3)),
    ],
)
def test_joins_normalise(join: str, expected: Join) -> None:
    definition = parse(doc(THREE_BRANCHES.replace("join: all", f"join: {join}\n  decide: all_done")))
    state = definition.states["a"]
    assert isinstance(state, ParallelState)
    assert state.join == expected
    assert state.decide == "all_done"


def test_a_nested_parallel_belongs_to_its_branch() -> None:
    text = doc(
        """
        a:
          type: parallel
          branches: {one: inner, two: r2}
          join: all
          next: {approved: done, rejected: refused}
        inner:
          type: parallel
          branches: {x: rx, y: ry}
          join: any
          next: {approved: sign, rejected: a_no}
        rx:
          type: task
          role: officer
          unit: owner
          actions:
            approve: {target: inner, outcome: approved}
            reject: {target: inner, outcome: rejected}
        ry:
          type: task
          role: officer
          unit: owner
          actions:
            approve: {target: inner, outcome: approved}
            reject: {target: inner, outcome: rejected}
        sign:
          type: task
          role: supervisor
          unit: owner
          actions:
            sign: {target: a, outcome: approved}
            recheck: {target: inner}
        a_no:
          type: task
          role: supervisor
          unit: owner
          actions:
            confirm: {target: a, outcome: rejected}
        r2:
          type: task
          role: officer
          unit: owner
          actions:
            approve: {target: a, outcome: approved}
            reject: {target: a, outcome: rejected}
        done: {type: end, outcome: approved}
        refused: {type: end, outcome: rejected}
        """
    )
    assert {name: state.parent for name, state in parse(text).states.items()} == {
        "a": None,
        "inner": "a",
        "rx": "inner",
        "ry": "inner",
        "sign": "a",
        "a_no": "a",
        "r2": "a",
        "done": None,
        "refused": None,
    }


def test_a_decision_normalises() -> None:
    definition = parse(doc(DECISION))
    assert definition.states["d"] == DecisionState(
        cases=(Case(when={">": [{"var": "subject.area"}, 200]}, target="big"),), otherwise="done"
    )


def test_conditions_over_items_read_the_item() -> None:
    when = (
        '{"and": [{"some": [{"var": "subject.rooms"}, {">": [{"var": "seats"}, 50]}]},'
        ' {"reduce": [{"var": "data.items"}, {"+": [{"var": "current"}, {"var": "accumulator"}]}, 0]},'
        ' {"missing": ["subject.area", "vars.checked"]}, {"var": ["vars.x", {"var": "subject.y"}]}]}'
    )
    definition = parse(task_with("go: {target: done}", f"go: {{target: done, when: {when}}}"))
    state = definition.states["a"]
    assert isinstance(state, TaskState)
    assert state.actions["go"].when == json.loads(when)


def test_roles_and_units_are_the_callers() -> None:
    text = task_with("role: officer\n  unit: owner", "role: inspector\n  unit: {fixed: fire}")
    assert parse(text, roles=("inspector",), units={"fire"}).states["a"] == TaskState(
        role="inspector", unit=UnitRule(kind="fixed", code="fire"), actions={"go": Action(target="done")}
    )
    assert parse(text, roles=("inspector",), units=None)  # None: unit codes are not checked
    assert_problem(problems(text), "/states/a/role", 7, "unknown role 'inspector'")


def test_yaml_keys_are_taken_as_written() -> None:
    definition = parse(task_with("go: {target: done}", "on: {target: done}\n    yes: {target: done}"))
    state = definition.states["a"]
    assert isinstance(state, TaskState)
    assert list(state.actions) == ["on", "yes"]


def test_anchors_and_aliases_work() -> None:
    text = doc(
        TASK.replace(
            "unit: owner",
            "unit: owner\n  deadline: {duration: P2D, on_breach: &usual [{notify: supervisor}]}",
        )
        + "b:\n  type: task\n  role: officer\n  unit: owner\n"
        "  deadline: {duration: P1D, on_breach: *usual}\n  actions: {go: {target: done}}\n"
    ).replace("go: {target: done}", "go: {target: b}", 1)
    state = parse(text).states["b"]
    assert isinstance(state, TaskState)
    assert state.deadline is not None
    assert state.deadline.on_breach == (Notify(role="supervisor"),)


# --- JSON -------------------------------------------------------------------------------------------


def test_json_normalises_like_yaml() -> None:
    text = doc(PARALLEL)
    as_json = json.dumps(yaml.safe_load(text), indent="\t")  # tab indentation: PyYAML would refuse it
    assert parse(as_json, media_type="json") == parse(text)


def test_json_numbers_are_json_numbers() -> None:
    data = yaml.safe_load(doc(DECISION))
    data["states"]["d"]["cases"][0]["when"] = {">": [{"var": "subject.area"}, 1e3]}
    state = parse(json.dumps(data), media_type="json").states["d"]
    assert isinstance(state, DecisionState)
    assert state.cases[0].when == {">": [{"var": "subject.area"}, 1000.0]}


def test_json_problems_have_lines() -> None:
    data = yaml.safe_load(doc(PARALLEL))
    data["states"]["r2"]["role"] = "offcer"
    data["states"]["r1"]["actions"]["approve"]["target"] = "nowhere"
    text = json.dumps(data, indent=2)
    errors = problems(text, media_type="json")
    assert_problem(errors, "/states/r2/role", line_of(text, '"offcer"'), "did you mean 'officer'")
    assert_problem(
        errors, "/states/r1/actions/approve/target", line_of(text, '"nowhere"'), "no state 'nowhere'"
    )


def test_json_syntax_error_has_its_line() -> None:
    text = '{\n  "key": "demo",\n  "name": "Demo",,\n  "start": "a"\n}\n'
    errors = problems(text, media_type="json")
    assert len(errors) == 1
    assert_problem(errors, "", 3, "not valid JSON")


# --- every problem, with its pointer and line --------------------------------------------------------

TOO_MANY = doc(
    "a:\n  type: task\n  role: officer\n  unit: owner\n  actions: {go: {target: s0}}\n"
    + "".join(
        f"s{i}:\n  type: task\n  role: officer\n  unit: owner\n  actions: {{go: {{target: s{i + 1}}}}}\n"
        for i in range(MAX_STATES)
    )
    + f"s{MAX_STATES}: {{type: end, outcome: approved}}\n"
)

CASES = [
    # syntax and shape
    ("key: demo\nname: Demo\n  start: a\n", "", "  start", "not valid YAML"),
    ("- a\n- b\n", "", "- a", "a mapping, not a list"),
    (doc(TASK) + "version: 2\n", "/version", "version: 2", "unknown key 'version'"),
    (task_with("unit: owner", "unit: owner\n  deadlin: P2D"), "/states/a/deadlin", "deadlin:", "'deadline'"),
    (
        task_with("{target: done}", "{target: done, comment: x}"),
        "/states/a/actions/go/comment",
        "comment",
        "unknown key",
    ),
    (task_with("  role: officer\n", ""), "/states/a", "a:", "missing 'role'"),
    (doc(TASK).replace("name: Demo\n", ""), "", "key:", "missing 'name'"),
    (doc(TASK).replace("name: Demo", "name: [1, 2]"), "/name", "name:", "must be a text"),
    (
        task_with("actions:\n    go: {target: done}", "actions: [go]"),
        "/states/a/actions",
        "actions:",
        "must be a mapping",
    ),
    (task_with("type: task", "type: tsk"), "/states/a/type", "tsk", "did you mean 'task'"),
    (
        task_with("unit: owner", "unit: owner\n  label: !secret x"),
        "/states/a/label",
        "label",
        "tag '!secret'",
    ),
    (doc(TASK).replace("key: demo", "key: Demo Licence"), "/key", "key:", "must match"),
    (doc(TASK + "Bad-Name: {type: end, outcome: x}\n"), "/states/Bad-Name", "Bad-Name", "must match"),
    (doc(TASK + "a/b: {type: end, outcome: x}\n"), "/states/a~1b", "a/b", "must match"),
    (
        task_with("go: {target: done}", "go-on: {target: done}"),
        "/states/a/actions/go-on",
        "go-on",
        "must match",
    ),
    (
        doc(WAIT.replace("reason: correction", "reason: correction\n  pauses_clock: maybe")),
        "/states/w/pauses_clock",
        "maybe",
        "true or false",
    ),
    # targets, reachability, loops
    (doc(PARALLEL, start="r1"), "/start", "start:", "top-level"),
    (doc(TASK, start="zz"), "/start", "start:", "no state 'zz'"),
    (
        task_with("target: done", "target: nowhere"),
        "/states/a/actions/go/target",
        "nowhere",
        "no state 'nowhere'",
    ),
    (
        doc(DECISION.replace("target: big", "target: huge")),
        "/states/d/cases/0/target",
        "huge",
        "no state 'huge'",
    ),
    (
        doc(DECISION.replace("otherwise: done", "otherwise: dome")),
        "/states/d/otherwise",
        "dome",
        "did you mean 'done'",
    ),
    (
        doc(PARALLEL.replace("rejected: refused", "rejected: refusd")),
        "/states/a/next/rejected",
        "refusd",
        "no state",
    ),
    (doc(PARALLEL.replace("two: r2", "two: r3")), "/states/a/branches/two", "two: r3", "no state 'r3'"),
    (doc(TASK + "lost: {type: end, outcome: lost}\n"), "/states/lost", "lost:", "cannot be reached from 'a'"),
    # a ⇄ b ⇄ c with no way to done from b or c
    (
        doc(
            TASK.replace("go: {target: done}", "go: {target: done}\n    on: {target: b}")
            + "b: {type: task, role: officer, unit: owner, actions: {next: {target: c}}}\n"
            + "c: {type: task, role: officer, unit: owner, actions: {back: {target: b}}}\n"
        ),
        "/states/c",
        "c:",
        "no end state can be reached from 'c'",
    ),
    (
        doc(
            PARALLEL.replace(
                "unit: {fixed: market}\n  actions:\n    approve: {target: a, outcome: approved}\n    reject: {target: a, outcome: rejected}",
                "unit: {fixed: market}\n  actions:\n    more: {target: r2b}",
            )
            + "r2b: {type: task, role: officer, unit: owner, actions: {back: {target: r2}}}\n"
        ),
        "/states/r2b",
        "r2b:",
        "never gets back to 'a'",
    ),
    (
        doc(
            TASK.replace("go: {target: done}", "go: {target: d1}")
            + 'd1: {type: decision, cases: [{when: {"var": "subject.x"}, target: done}], otherwise: d2}\n'
            + 'd2: {type: decision, cases: [{when: {"var": "subject.y"}, target: done}], otherwise: d1}\n'
        ),
        "/states/d1",
        "d1:",
        "loop in which no one acts",
    ),
    # roles and units
    (task_with("role: officer", "role: offcer"), "/states/a/role", "offcer", "did you mean 'officer'"),
    (
        task_with("{target: done}", "{target: done, roles: [officer, boss]}"),
        "/states/a/actions/go/roles/1",
        "boss",
        "unknown role 'boss'",
    ),
    (
        task_with(
            "unit: owner", "unit: owner\n  deadline: {duration: P1D, on_breach: [{reassign: {role: boss}}]}"
        ),
        "/states/a/deadline/on_breach/0/reassign/role",
        "boss",
        "unknown role",
    ),
    (
        task_with("unit: owner", "unit: owner\n  deadline: {duration: P1D, on_breach: [{notify: boss}]}"),
        "/states/a/deadline/on_breach/0/notify",
        "boss",
        "unknown role",
    ),
    (task_with("unit: owner", "unit: applicant"), "/states/a/unit", "applicant", "the role is citizen"),
    (
        task_with(
            "unit: owner",
            "unit: owner\n  deadline: {duration: P1D, on_breach: [{reassign: {role: clerk, unit: applicant}}]}",
        ),
        "/states/a/deadline/on_breach/0/reassign/unit",
        "deadline",
        "the role is citizen",
    ),
    (task_with("unit: owner", "unit: fixed"), "/states/a/unit", "fixed", "{fixed: <unit code>}"),
    (
        task_with("unit: owner", "unit: department"),
        "/states/a/unit",
        "department",
        "not owner, grid, applicant",
    ),
    # deadlines and escalations
    (task_with("unit: owner", "unit: owner\n  deadline: P1M"), "/states/a/deadline", "P1M", "P1M"),
    (
        task_with("unit: owner", "unit: owner\n  deadline: {duration: P0D}"),
        "/states/a/deadline/duration",
        "P0D",
        "zero",
    ),
    (
        task_with("unit: owner", "unit: owner\n  deadline: {duration: 3}"),
        "/states/a/deadline/duration",
        "duration",
        "must be a text",
    ),
    (
        task_with("unit: owner", "unit: owner\n  deadline: {duration: P1D, clock: weekly}"),
        "/states/a/deadline/clock",
        "weekly",
        "not one of",
    ),
    (
        task_with("unit: owner", "unit: owner\n  deadline: {duration: P1D, warn_at: 1.5}"),
        "/states/a/deadline/warn_at",
        "1.5",
        "between 0 and 1",
    ),
    (
        task_with("unit: owner", "unit: owner\n  deadline: {duration: P1D, warn_at: 0}"),
        "/states/a/deadline/warn_at",
        "warn_at",
        "between 0 and 1",
    ),
    (
        task_with("unit: owner", "unit: owner\n  deadline: {duration: P1D, on_breach: [{}]}"),
        "/states/a/deadline/on_breach/0",
        "on_breach",
        "exactly one",
    ),
    (
        task_with(
            "unit: owner",
            "unit: owner\n  deadline: {duration: P1D, on_breach: [{notify: supervisor, action: go}]}",
        ),
        "/states/a/deadline/on_breach/0",
        "on_breach",
        "this one has 2",
    ),
    (
        task_with("unit: owner", "unit: owner\n  deadline: {duration: P1D, on_breach: [{action: nope}]}"),
        "/states/a/deadline/on_breach/0/action",
        "nope",
        "'nope' is not an action of this state",
    ),
    (
        doc(TASK, top="deadline: {duration: P5D, on_breach: [{action: go}]}\n"),
        "/deadline/on_breach/0/action",
        "deadline:",
        "can only notify",
    ),
    (
        doc(
            WAIT.replace(
                "reason: correction",
                "reason: correction\n  deadline: {duration: P1D, on_breach: [{reassign: {role: clerk}}]}",
            )
        ),
        "/states/w/deadline/on_breach/0/reassign",
        "reassign",
        "cannot be reassigned",
    ),
    # actions and branches
    (
        doc(PARALLEL.replace("approve: {target: a, outcome: approved}", "approve: {target: a}", 1)),
        "/states/r1/actions/approve",
        "approve: {target: a}",
        "needs an outcome",
    ),
    (
        task_with("{target: done}", "{target: done, outcome: approved}"),
        "/states/a/actions/go/outcome",
        "outcome",
        "only by an action that ends a branch",
    ),
    (
        doc(PARALLEL.replace("outcome: approved}", "outcome: maybe}", 1)),
        "/states/r1/actions/approve/outcome",
        "maybe",
        "approved or rejected",
    ),
    (
        doc(
            PARALLEL.replace(
                "reject: {target: a, outcome: rejected}",
                "reject: {target: a, outcome: rejected}\n    hand_over: {target: r2}",
                1,
            )
        ),
        "/states/r1/actions/hand_over/target",
        "hand_over",
        "another branch",
    ),
    (
        doc(PARALLEL.replace("reject: {target: a, outcome: rejected}", "reject: {target: refused}", 1)),
        "/states/r1/actions/reject/target",
        "reject: {target: refused}",
        "outside branch 'one' of 'a'",
    ),
    (
        doc(
            PARALLEL.replace("approved: done", "approved: check")
            + "check: {type: task, role: officer, unit: owner, actions: {redo: {target: r1}, finish: {target: done}}}\n"
        ),
        "/states/check/actions/redo/target",
        "check:",
        "inside branch 'one' of 'a'",
    ),
    (
        doc(
            PARALLEL.replace("reject: {target: a, outcome: rejected}", "stop: {target: stop}", 1)
            + "stop: {type: end, outcome: stopped}\n"
        ),
        "/states/stop",
        "stop: {type: end",
        "end state cannot be in branch 'one' of 'a'",
    ),
    (
        doc(WAIT.replace("resubmit: {target: a}", "resubmit: {target: a, roles: [clerk]}")),
        "/states/w/actions/resubmit/roles",
        "roles",
        "applicant and the system",
    ),
    (
        task_with("{target: done}", "{target: done, require: [comments]}"),
        "/states/a/actions/go/require/0",
        "comments",
        "not a requirement",
    ),
    (
        task_with("{target: done}", "{target: done, require: [data.1x]}"),
        "/states/a/actions/go/require/0",
        "data.1x",
        "not a requirement",
    ),
    (
        task_with("{target: done}", "{target: done, require: [comment, comment]}"),
        "/states/a/actions/go/require/1",
        "require",
        "listed twice",
    ),
    (
        task_with("actions:\n    go: {target: done}", "actions: {}"),
        "/states/a/actions",
        "actions",
        "at least one action",
    ),
    (
        doc(PARALLEL.replace("{one: r1, two: r2}", "{one: r1}") + "x: {type: end, outcome: x}\n"),
        "/states/a/branches",
        "branches",
        "at least 2",
    ),
    (doc(PARALLEL.replace("join: all", "join: {n_of_m: 3}")), "/states/a/join/n_of_m", "join", "1..2"),
    (doc(PARALLEL.replace("join: all", "join: 0_of_2")), "/states/a/join", "join", "1..2"),
    (
        doc(PARALLEL.replace("join: all", "join: 2_of_3")),
        "/states/a/join",
        "join",
        "counts 3 branches but the state has 2",
    ),
    (doc(PARALLEL.replace("join: all", "join: most")), "/states/a/join", "join", "not all, any"),
    (
        doc(PARALLEL.replace("join: all", "join: all\n  decide: late")),
        "/states/a/decide",
        "late",
        "not one of",
    ),
    (
        doc(
            PARALLEL.replace("{approved: done, rejected: refused}", "{approved: done}")
            + "x: {type: end, outcome: x}\n"
        ),
        "/states/a/next",
        "next",
        "missing 'rejected'",
    ),
    (
        doc(
            PARALLEL.replace(
                "{approved: done, rejected: refused}", "{approved: done, rejected: refused, maybe: done}"
            )
        ),
        "/states/a/next/maybe",
        "next",
        "unknown key 'maybe'",
    ),
    (
        doc(
            PARALLEL.replace("two: r2", "two: r1b")
            .replace("reject: {target: a, outcome: rejected}", "more: {target: r1b}", 1)
            .replace("r2:", "r1b:")
        ),
        "/states/a/branches/two",
        "two: r1b",
        "also in branch 'one' of 'a'",
    ),
    (
        doc(
            PARALLEL.replace("approve: {target: a, outcome: approved}", "approve: {target: shared}")
            + "shared: {type: task, role: supervisor, unit: owner, actions: {sign: {target: a, outcome: approved}}}\n"
        ),
        "/states/shared",
        "shared: {",
        "is in two branches",
    ),
    (
        doc(PARALLEL.replace("two: r2", "two: a") + "x: {type: end, outcome: x}\n"),
        "/states/a/branches/two",
        "two: a",
        "its own parallel state",
    ),
    (
        doc(
            PARALLEL.replace(
                "r2:\n  type: task\n  role: officer\n  unit: {fixed: market}\n  actions:\n    approve: {target: a, outcome: approved}\n    reject: {target: a, outcome: rejected}",
                "r2:\n  type: decision\n  cases: [{when: true, target: a}]\n  otherwise: r1",
            )
        ),
        "/states/r2/cases/0/target",
        "cases:",
        "a decision cannot end a branch",
    ),
    (
        doc(
            DECISION.replace(
                'cases:\n    - when: {">": [{"var": "subject.area"}, 200]}\n      target: big', "cases: []"
            )
            + "x: {type: end, outcome: x}\n"
        ),
        "/states/d/cases",
        "cases",
        "at least one case",
    ),
    # conditions
    (
        task_with("{target: done}", '{target: done, when: {"lg": 1}}'),
        "/states/a/actions/go/when/lg",
        "when",
        "unknown JSON Logic operation 'lg'",
    ),
    (
        task_with("{target: done}", '{target: done, when: {"log": "x"}}'),
        "/states/a/actions/go/when/log",
        "when",
        "'log' is not allowed",
    ),
    (
        task_with("{target: done}", '{target: done, when: {"==": [1, 1], "!=": [1, 2]}}'),
        "/states/a/actions/go/when",
        "when",
        "exactly one operation",
    ),
    (task_with("{target: done}", "{target: done, when: {}}"), "/states/a/actions/go/when", "when", "has 0"),
    (
        task_with("{target: done}", '{target: done, when: {"var": "form.x"}}'),
        "/states/a/actions/go/when/var",
        "form.x",
        "subject, vars or data",
    ),
    (
        task_with("{target: done}", '{target: done, when: {"var": ["other", 1]}}'),
        "/states/a/actions/go/when/var/0",
        "other",
        "subject, vars or data",
    ),
    (
        task_with("{target: done}", '{target: done, when: {"var": {"cat": ["subject.", "x"]}}}'),
        "/states/a/actions/go/when/var",
        "cat",
        "written out",
    ),
    (
        task_with("{target: done}", '{target: done, when: {"missing": ["area"]}}'),
        "/states/a/actions/go/when/missing/0",
        "area",
        "subject, vars or data",
    ),
    (
        task_with("{target: done}", '{target: done, when: {"/": [1, {"var": "x.y"}]}}'),
        "/states/a/actions/go/when/~1/1/var",
        "x.y",
        "subject, vars or data",
    ),
    (
        doc(DECISION.replace('{"var": "subject.area"}', '{"var": "area"}')),
        "/states/d/cases/0/when/>/0/var",
        "area",
        "subject, vars or data",
    ),
    # limits
    (TOO_MANY, "/states", "states:", f"at most {MAX_STATES}"),
    (doc(TASK) + "description: " + "x" * (256 * 1024) + "\n", "", "key:", "256 KiB"),
]


@pytest.mark.parametrize(
    ("text", "pointer", "marker", "fragment"),
    CASES,
    ids=[f"{case[1] or '(root)'}: {case[3]}" for case in CASES],
)
def test_each_problem_has_its_pointer_and_line(text: str, pointer: str, marker: str, fragment: str) -> None:
    assert_problem(problems(text, units={"fire", "market"}), pointer, line_of(text, marker), fragment)


def test_unknown_unit_codes_are_refused_when_units_are_given() -> None:
    text = task_with("unit: owner", "unit: {fixed: fire}")
    assert parse(text).states["a"] == parse(text, units={"fire"}).states["a"]
    assert_problem(problems(text, units={"market"}), "/states/a/unit/fixed", 8, "unknown unit code 'fire'")


def test_a_key_given_twice() -> None:
    text = "key: demo\nname: Demo\nname: Other\nstart: a\nstates:\n" + textwrap.indent(
        TASK.strip() + "\n", "  "
    )
    assert_problem(problems(text), "/name", 3, "given twice (also on line 2)")


def test_an_empty_document() -> None:
    assert_problem(problems(""), "", 1, "empty")
    assert_problem(problems("", media_type="json"), "", 1, "not valid JSON")


def test_an_alias_bomb_is_refused() -> None:
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    lines += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]" for i in range(1, 8)]
    errors = problems("\n".join(lines) + "\n")
    assert len(errors) == 1
    assert "more than" in errors[0].detail


def test_five_problems_are_all_listed() -> None:
    text = doc(
        """
        a:
          type: task
          role: offcer
          unit: owner
          deadline: P1Y
          actions:
            go: {target: nowhere}
            done: {target: done, require: [signature]}
        done: {type: end, outcome: approved}
        lost: {type: end, outcome: lost}
        """
    )
    errors = problems(text)
    assert [(e.pointer, e.detail.split(":")[0]) for e in errors] == [
        ("/states/a/role", "line 7"),
        ("/states/a/deadline", "line 9"),
        ("/states/a/actions/go/target", "line 11"),
        ("/states/a/actions/done/require/0", "line 12"),
        ("/states/lost", "line 14"),
    ]


def test_the_error_says_how_many() -> None:
    with pytest.raises(DefinitionInvalid) as caught:
        parse(task_with("role: officer", "role: offcer"))
    assert caught.value.status == 400
    assert caught.value.type == "workflow-definition-invalid"
    assert caught.value.detail == "The workflow definition has 1 problem; see errors."


# --- whatever is sent, the answer is a definition or DefinitionInvalid ----------------------------------

TOKENS = [
    *(
        ":",
        "{",
        "}",
        "[",
        "]",
        ",",
        "- ",
        "\t",
        "\n",
        "\n  ",
        "&x ",
        "*x",
        "!!int ",
        "!tag ",
        "~",
        '"',
        "'",
        "<<: ",
    ),
    *("target: a", "target: done", "type: parallel", "type: decision", "type: end", "outcome: approved"),
    *("join: 2_of_3", "P0D", "PT4H", '{"var": "x"}', '{"log": 1}', "on_breach: [{action: go}]", "a/b~c"),
]
SEEDS = [doc(TASK), doc(PARALLEL), doc(WAIT), doc(DECISION)]


@settings(max_examples=300, deadline=None)
@given(
    seed=st.sampled_from(SEEDS),
    edits=st.lists(
        st.tuples(st.floats(0, 1), st.integers(0, 12), st.sampled_from(TOKENS)), min_size=1, max_size=4
    ),
    as_json=st.booleans(),
)
def test_any_document_gets_an_answer(seed: str, edits: list[tuple[float, int, str]], as_json: bool) -> None:
    text = json.dumps(yaml.safe_load(seed), indent=1) if as_json else seed
    for where, cut, token in edits:
        at = int(where * len(text))
        text = text[:at] + token + text[at + cut :]
    errors: tuple[FieldError, ...] = ()
    definition: Definition | None = None
    try:
        definition = parse(text, media_type="json" if as_json else "yaml")
    except DefinitionInvalid as invalid:
        errors = invalid.errors
    if definition is None:
        assert errors
        assert all(re.match(r"line [0-9]+: ", error.detail) for error in errors)
    else:
        assert_runnable(definition)
        assert msgspec.convert(msgspec.to_builtins(definition), Definition) == definition


# --- JSON Logic operations follow the installed package -----------------------------------------------


def test_the_operations_are_those_of_json_logic() -> None:
    builtins = importlib.import_module("json_logic.builtins")
    assert set(builtins.BUILTINS) - {"log"} == LOGIC_OPERATIONS
    source = inspect.getsource(importlib.import_module("json_logic.apply"))
    assert set(re.findall(r"op == '([^']+)'", source)) == LOGIC_FORMS


# --- diff ---------------------------------------------------------------------------------------------


def test_diff_of_the_same_definition_is_empty() -> None:
    assert diff(parse(doc(PARALLEL)), parse(doc(PARALLEL))) == []


def test_a_changed_duration_is_one_change() -> None:
    old = parse(task_with("unit: owner", "unit: owner\n  deadline: P2D"))
    new = parse(task_with("unit: owner", "unit: owner\n  deadline: {duration: P3D, clock: working_days}"))
    assert diff(old, new) == [
        Change(op="changed", pointer="/states/a/deadline/duration", old="P2D", new="P3D")
    ]


def test_diff_reports_added_removed_and_changed() -> None:
    old = parse(
        task_with(
            "go: {target: done}",
            "go: {target: done}\n    drop: {target: gone}",
            states=TASK + "gone: {type: end, outcome: gone}\n",
        )
    )
    new = parse(
        doc(TASK)
        .replace("go: {target: done}", "go: {target: done, require: [comment], label: Go}")
        .replace("role: officer", "role: clerk")
    )
    changes = diff(old, new)
    assert changes == [
        Change(
            op="removed",
            pointer="/states/a/actions/drop",
            old={"target": "gone", "outcome": None, "roles": [], "require": [], "when": None, "label": None},
        ),
        Change(op="added", pointer="/states/a/actions/go/label", new="Go"),
        Change(op="added", pointer="/states/a/actions/go/require/0", new="comment"),
        Change(op="changed", pointer="/states/a/role", old="officer", new="clerk"),
        Change(
            op="removed",
            pointer="/states/gone",
            old={"type": "end", "outcome": "gone", "label": None, "parent": None},
        ),
    ]
    assert [change.pointer for change in changes] == sorted(change.pointer for change in changes)
    assert msgspec.json.decode(msgspec.json.encode(changes), type=list[Change]) == changes


def test_diff_reports_a_new_deadline_as_added() -> None:
    old = parse(doc(TASK))
    new = parse(task_with("unit: owner", "unit: owner\n  deadline: PT4H"))
    assert diff(old, new) == [
        Change(
            op="added",
            pointer="/states/a/deadline",
            new={"duration": "PT4H", "clock": "working_hours", "warn_at": 0.8, "on_breach": []},
        )
    ]


# --- the documentation ----------------------------------------------------------------------------------


def test_every_definition_in_the_docs_parses() -> None:
    """Every yaml block of docs/workflows.md is a complete definition, and so is every json
    block with states (the others show replies)."""
    text = DOCS.read_text(encoding="utf-8")
    blocks = re.findall(r"^```(yaml|json)\n(.*?)^```", text, flags=re.DOTALL | re.MULTILINE)
    yaml_blocks = [body for kind, body in blocks if kind == "yaml"]
    json_blocks = [body for kind, body in blocks if kind == "json" and "states" in json.loads(body)]
    assert len(yaml_blocks) >= 8
    assert len(json_blocks) >= 1
    definitions = [parse(body) for body in yaml_blocks] + [
        parse(body, media_type="json") for body in json_blocks
    ]
    for definition in definitions:
        assert_runnable(definition)
    keys = [definition.key for definition in definitions]
    assert len(set(keys)) == len(keys)
