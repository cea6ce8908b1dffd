"""Workflow definitions as authors write them (YAML or JSON, see docs/workflows.md).

    definition = parse(text, media_type="yaml", units=await unit_codes(conn))
    changes = diff(previous, definition)

`parse` reads the document into a tree that remembers where each value was written (a JSON
Pointer and a line), checks it in one recursive-descent pass plus a pass over the state graph,
and returns the normalised `workflows.model.Definition`. It never stops at the first problem:
`DefinitionInvalid.errors` lists every one, each as "line N: ..." at its pointer. A definition
that does not validate never gets out of here.

Branch membership: the states of a branch are those reachable from its start state through
action targets, decision targets and nested parallels' `next` targets, without crossing into
the enclosing parallel state (targeting it ends the branch). Each state belongs to exactly one
place, the top level or one branch, and `parent` is the parallel state of that branch.
"""

from __future__ import annotations

import bisect
import difflib
import json
import math
import re
from collections.abc import Callable, Collection, Container, Iterable
from dataclasses import dataclass, field
from typing import Any, Literal, get_args

import msgspec
import yaml
from yaml.constructor import SafeConstructor

from identity.api import ROLES
from onewindow.errors import FieldError, ValidationFailed
from workflows.calendar import infer_clock, parse_duration
from workflows.model import (
    SYSTEM_ONLY,
    Action,
    AutoAction,
    Case,
    Clock,
    Deadline,
    DecisionState,
    Definition,
    EndState,
    Escalation,
    Join,
    Notify,
    ParallelState,
    Reassign,
    State,
    TaskState,
    UnitKind,
    UnitRule,
    WaitState,
)

__all__ = [
    "LOGIC_FORMS",
    "LOGIC_OPERATIONS",
    "MAX_BYTES",
    "MAX_STATES",
    "Change",
    "DefinitionInvalid",
    "diff",
    "parse",
]

MAX_BYTES = 256 * 1024
MAX_STATES = 200
_MAX_DEPTH = 64  # nesting levels of the document
_MAX_NODES = 100_000  # values after aliases are expanded (a YAML alias bomb stops here)

_KEY = re.compile(r"[a-z0-9][a-z0-9._-]{0,62}")
_NAME = re.compile(r"[a-z][a-z0-9_]{0,62}")  # states, actions, branches, outcomes, reasons
_REQUIRE = re.compile(r"comment|attachments|data\.[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*")
_K_OF_M = re.compile(r"([0-9]{1,3})_of_([0-9]{1,3})")

_CLOCKS: dict[str, Clock] = {clock: clock for clock in get_args(Clock)}
_UNIT_KINDS: dict[str, UnitKind] = {"owner": "owner", "grid": "grid", "applicant": "applicant"}
_OUTCOMES = ("approved", "rejected")
# Each state type's keys besides type and label: (allowed, required).
_STATE_KEYS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "task": (("role", "unit", "deadline", "actions"), ("role", "unit", "actions")),
    "wait": (("reason", "pauses_clock", "deadline", "actions"), ("reason", "actions")),
    "parallel": (("branches", "join", "decide", "next"), ("branches", "join", "next")),
    "decision": (("cases", "otherwise"), ("cases", "otherwise")),
    "end": (("outcome",), ("outcome",)),
}

# JSON Logic as panzi-json-logic evaluates it: the operations of `json_logic.builtins.BUILTINS`
# without `log` (it prints), plus the forms `json_logic.apply` handles itself. A test keeps this
# list in step with the installed package.
LOGIC_OPERATIONS = frozenset(
    {
        *("==", "!=", "===", "!==", "<", ">", "<=", ">=", "!", "!!"),
        *("+", "*", "-", "/", "%", "in", "min", "max", "cat", "substr", "merge"),
        *("var", "missing", "missing_some"),
    }
)
LOGIC_FORMS = frozenset({"if", "?:", "and", "or", "filter", "map", "reduce", "all", "some", "none"})
_ITERATING = frozenset({"filter", "map", "reduce", "all", "some", "none"})  # 2nd argument runs per item
_VAR_ROOTS = ("subject", "vars", "data")


class DefinitionInvalid(ValidationFailed):
    type = "workflow-definition-invalid"
    title = "The workflow definition is not valid"


class Change(msgspec.Struct, frozen=True, kw_only=True):
    """One difference between two normalised definitions; `old`/`new` is None where absent."""

    op: Literal["added", "removed", "changed"]
    pointer: str
    old: Any = None
    new: Any = None


# --- the located tree ------------------------------------------------------------------------------

Scalar = str | int | float | bool | None


@dataclass(slots=True, eq=False)
class _Node:
    """A value of the document with where it was written: `line` is its key's line when it is a
    member of a mapping (a block value starts below its key), else its own. Mappings keep their
    keys' lines."""

    value: dict[str, _Node] | list[_Node] | Scalar
    pointer: str
    line: int
    key_lines: dict[str, int] = field(default_factory=dict)

    def child(self, key: str) -> str:
        return f"{self.pointer}/{_escape(key)}"


class _TooBig(Exception):
    def __init__(self, line: int) -> None:
        super().__init__(line)
        self.line = line


def _escape(token: str) -> str:
    """A JSON Pointer reference token (RFC 6901)."""
    return token.replace("~", "~0").replace("/", "~1")


def _describe(node: _Node) -> str:
    value = node.value
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    if value is None:
        return "empty"
    if isinstance(value, bool):
        return f"{value!r}".lower()
    if isinstance(value, int | float):
        return f"the number {value!r}"
    return f"{value!r}"


def _data(node: _Node) -> Any:
    """The plain JSON data of a subtree."""
    value = node.value
    if isinstance(value, dict):
        return {key: _data(child) for key, child in value.items()}
    if isinstance(value, list):
        return [_data(child) for child in value]
    return value


def _quoted(names: Iterable[str]) -> str:
    return ", ".join(repr(name) for name in names)


def _suggest(word: str, choices: Iterable[str]) -> str:
    close = difflib.get_close_matches(word, list(choices), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


class _Problems:
    def __init__(self) -> None:
        self.found: dict[tuple[str, str], int] = {}

    def add(self, pointer: str, line: int, message: str) -> None:
        self.found.setdefault((pointer, message), line)

    def at(self, node: _Node, message: str) -> None:
        self.add(node.pointer, node.line, message)

    def at_key(self, mapping: _Node, key: str, message: str) -> None:
        self.add(mapping.child(key), mapping.key_lines.get(key, mapping.line), message)

    def errors(self) -> list[FieldError]:
        ordered = sorted(self.found.items(), key=lambda item: (item[1], item[0][0]))
        return [
            FieldError(pointer=pointer, detail=f"line {line}: {message}")
            for (pointer, message), line in ordered
        ]


_YAML = "tag:yaml.org,2002:"
_TEXT_TAGS = frozenset(_YAML + name for name in ("str", "timestamp", "binary", "merge", "value"))


class _YamlTree:
    """The composed YAML nodes as a located tree. Keys are taken as written (`on:` is "on")."""

    def __init__(self, problems: _Problems) -> None:
        self.problems = problems
        self.count = 0
        self.constructor = SafeConstructor()

    def build(self, node: yaml.Node, pointer: str, depth: int = 0) -> _Node:
        self.count += 1
        line = node.start_mark.line + 1
        if depth > _MAX_DEPTH or self.count > _MAX_NODES:
            raise _TooBig(line)
        if isinstance(node, yaml.MappingNode):
            self.plain(node, _YAML + "map", pointer, line)
            result = _Node({}, pointer, line)
            items: dict[str, _Node] = {}
            for key_node, value_node in node.value:
                key_line = key_node.start_mark.line + 1
                if not isinstance(key_node, yaml.ScalarNode):
                    self.problems.add(pointer, key_line, "a key must be a word, not a mapping or a list")
                    continue
                key = str(key_node.value)
                if key in items:
                    first = result.key_lines[key]
                    self.problems.add(
                        result.child(key), key_line, f"{key!r} is given twice (also on line {first})"
                    )
                    continue
                result.key_lines[key] = key_line
                items[key] = self.build(value_node, result.child(key), depth + 1)
                items[key].line = key_line
            result.value = items
            return result
        if isinstance(node, yaml.SequenceNode):
            self.plain(node, _YAML + "seq", pointer, line)
            children = [self.build(item, f"{pointer}/{i}", depth + 1) for i, item in enumerate(node.value)]
            return _Node(children, pointer, line)
        return _Node(self.scalar(node, pointer, line), pointer, line)

    def plain(self, node: yaml.Node, tag: str, pointer: str, line: int) -> None:
        if node.tag != tag:
            self.problems.add(pointer, line, f"the tag {node.tag!r} is not supported; write plain YAML data")

    def scalar(self, node: yaml.Node, pointer: str, line: int) -> Scalar:
        tag = node.tag
        if tag in (_YAML + "null", _YAML + "bool", _YAML + "int", _YAML + "float"):
            try:
                value: Scalar = self.constructor.construct_object(node)
            except (
                ArithmeticError,
                LookupError,
                ValueError,
                yaml.YAMLError,
            ):  # a tag on text that is not one: !!int x
                self.problems.add(pointer, line, f"{node.value!r} is not a valid {tag.removeprefix(_YAML)}")
                return str(node.value)
            if isinstance(value, float) and not math.isfinite(value):
                return str(node.value)
            return value
        if tag not in _TEXT_TAGS:
            self.problems.add(pointer, line, f"the tag {tag!r} is not supported; write plain YAML data")
        # dates, binary and the like stay the text they were written as: JSON has no such types
        return str(node.value)


_WHITESPACE = re.compile(r"[ \t\n\r]*")


class _JsonTree:
    """A located tree over JSON text that msgspec has already accepted (so it is well formed).

    PyYAML reads most JSON too, but as YAML 1.1: it refuses tab indentation and reads 1e3 as a
    string. JSON documents are therefore read as JSON, and only their positions are found here."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.newlines = [match.start() for match in re.finditer("\n", text)]
        self.decoder = json.JSONDecoder()
        self.count = 0

    def line(self, index: int) -> int:
        return bisect.bisect_right(self.newlines, index) + 1

    def skip(self, index: int) -> int:
        match = _WHITESPACE.match(self.text, index)
        return match.end() if match else index

    def build(self, problems: _Problems) -> _Node:
        node, _ = self.value(self.skip(0), "", 0, problems)
        return node

    def value(self, index: int, pointer: str, depth: int, problems: _Problems) -> tuple[_Node, int]:
        self.count += 1
        line = self.line(index)
        if depth > _MAX_DEPTH or self.count > _MAX_NODES:
            raise _TooBig(line)
        opening = self.text[index]
        if opening == "{":
            node = _Node({}, pointer, line)
            items: dict[str, _Node] = {}
            index = self.skip(index + 1)
            while self.text[index] != "}":
                key_line = self.line(index)
                key, index = self.decoder.raw_decode(self.text, index)
                index = self.skip(self.skip(index) + 1)  # the colon
                child, index = self.value(index, node.child(key), depth + 1, problems)
                child.line = key_line
                if key in items:
                    first = node.key_lines[key]
                    problems.add(node.child(key), key_line, f"{key!r} is given twice (also on line {first})")
                else:
                    node.key_lines[key] = key_line
                    items[key] = child
                index = self.skip(index)
                if self.text[index] == ",":
                    index = self.skip(index + 1)
            node.value = items
            return node, index + 1
        if opening == "[":
            children: list[_Node] = []
            index = self.skip(index + 1)
            while self.text[index] != "]":
                child, index = self.value(index, f"{pointer}/{len(children)}", depth + 1, problems)
                children.append(child)
                index = self.skip(index)
                if self.text[index] == ",":
                    index = self.skip(index + 1)
            return _Node(children, pointer, line), index + 1
        scalar, end = self.decoder.raw_decode(self.text, index)
        return _Node(scalar, pointer, line), end


def _load(text: str, media_type: Literal["yaml", "json"], problems: _Problems) -> _Node | None:
    size = len(text.encode())
    if size > MAX_BYTES:
        problems.add("", 1, f"the document is {size} bytes; a definition is at most {MAX_BYTES // 1024} KiB")
        return None
    try:
        root = _load_json(text, problems) if media_type == "json" else _load_yaml(text, problems)
    except _TooBig as too_big:
        problems.add(
            "",
            too_big.line,
            f"the document nests deeper than {_MAX_DEPTH} levels or expands to more than {_MAX_NODES} values",
        )
        return None
    if root is not None and not isinstance(root.value, dict):
        problems.at(root, f"a workflow definition is a mapping, not {_describe(root)}")
        return None
    return root


def _load_yaml(text: str, problems: _Problems) -> _Node | None:
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        message = ", ".join(part for part in (exc.context, exc.problem) if part)
        problems.add("", mark.line + 1 if mark else 1, f"not valid YAML: {message}")
        return None
    except yaml.reader.ReaderError as exc:
        line = text.count("\n", 0, exc.position) + 1
        code = exc.character if isinstance(exc.character, int) else ord(exc.character)
        problems.add("", line, f"not valid YAML: the character U+{code:04X} cannot appear in a document")
        return None
    except yaml.YAMLError as exc:
        problems.add("", 1, f"not valid YAML: {exc}")
        return None
    except RecursionError:
        problems.add("", 1, f"the document nests deeper than {_MAX_DEPTH} levels")
        return None
    if node is None:
        problems.add("", 1, "the document is empty; a workflow definition is a mapping")
        return None
    return _YamlTree(problems).build(node, "")


def _load_json(text: str, problems: _Problems) -> _Node | None:
    try:
        msgspec.json.decode(text)
    except msgspec.DecodeError as exc:
        message = str(exc)
        position = re.search(r"\(byte ([0-9]+)\)", message)
        offset = len(text.encode()[: int(position.group(1))].decode(errors="ignore")) if position else 0
        problems.add("", text.count("\n", 0, offset) + 1, f"not valid JSON: {message}")
        return None
    tree = _JsonTree(text)
    try:
        return tree.build(problems)
    except (ValueError, IndexError) as exc:  # what msgspec accepts and Python's json does not
        index = exc.pos if isinstance(exc, json.JSONDecodeError) else 0
        problems.add("", tree.line(index), f"not valid JSON: {exc}")
        return None


# --- checking the document -------------------------------------------------------------------------

Region = tuple[str, str] | None  # (parallel state, branch name), or None for the top level


def _region_name(region: Region) -> str:
    return "the top level" if region is None else f"branch {region[1]!r} of {region[0]!r}"


@dataclass(frozen=True, slots=True)
class _Edge:
    """A way from one state to another: an action, a decision case or otherwise, a parallel's next."""

    target: str
    node: _Node  # where the target is written
    kind: Literal["action", "decision", "next"]
    owner: _Node  # the action, case or next entry it is written in
    outcome: _Node | None = None  # an action's outcome, if written


@dataclass(slots=True)
class _StateInfo:
    name: str
    kind: str | None
    edges: list[_Edge] = field(default_factory=list)
    branches: list[tuple[str, _Node]] = field(default_factory=list)  # (branch name, its start)
    model: State | None = None


class _Checker:
    """Checks the located tree and builds the model. Readers return None after reporting."""

    def __init__(self, problems: _Problems, roles: Collection[str], units: Container[str] | None) -> None:
        self.problems = problems
        self.roles = tuple(roles)
        self.units = units

    # --- readers

    def mapping(
        self, node: _Node, what: str, allowed: Collection[str] | None = None, required: Collection[str] = ()
    ) -> dict[str, _Node] | None:
        """The members of a mapping; `allowed` None: any key (the caller checks them)."""
        if not isinstance(node.value, dict):
            self.problems.at(node, f"{what} must be a mapping, not {_describe(node)}")
            return None
        for key in node.value:
            if allowed is not None and key not in allowed:
                self.problems.at_key(
                    node,
                    key,
                    f"unknown key {key!r} in {what}{_suggest(key, allowed)}; allowed: {', '.join(allowed)}",
                )
        for key in required:
            if key not in node.value:
                self.problems.at(node, f"{what} is missing {key!r}")
        return node.value

    def text(self, node: _Node | None, what: str) -> str | None:
        if node is None:
            return None
        if not isinstance(node.value, str) or not node.value.strip():
            self.problems.at(node, f"{what} must be a text, not {_describe(node)}")
            return None
        return node.value

    def word(self, node: _Node | None, what: str, pattern: re.Pattern[str] = _NAME) -> str | None:
        value = self.text(node, what)
        if value is None or node is None:
            return None
        if not pattern.fullmatch(value):
            self.problems.at(node, f"{what} {value!r} must match {pattern.pattern}")
            return None
        return value

    def choice(self, node: _Node | None, what: str, choices: tuple[str, ...]) -> str | None:
        value = self.text(node, what)
        if value is None or node is None:
            return None
        if value not in choices:
            self.problems.at(
                node, f"{what} {value!r} is not one of {_quoted(choices)}{_suggest(value, choices)}"
            )
            return None
        return value

    def role(self, node: _Node | None, what: str = "the role") -> str | None:
        value = self.text(node, what)
        if value is None or node is None:
            return None
        if value not in self.roles:
            self.problems.at(
                node, f"unknown role {value!r}{_suggest(value, self.roles)}; roles: {', '.join(self.roles)}"
            )
            return None
        return value

    def items(self, node: _Node | None, what: str) -> list[_Node] | None:
        if node is None:
            return None
        if not isinstance(node.value, list):
            self.problems.at(node, f"{what} must be a list, not {_describe(node)}")
            return None
        return node.value

    def words(
        self, node: _Node | None, what: str, read: Callable[[_Node], str | None]
    ) -> tuple[str, ...] | None:
        entries = self.items(node, what)
        if entries is None:
            return None
        result: list[str] = []
        for entry in entries:
            value = read(entry)
            if value is not None and value in result:
                self.problems.at(entry, f"{value!r} is listed twice")
            elif value is not None:
                result.append(value)
        return tuple(result) if len(result) == len(entries) else None

    # --- the document

    def definition(self, root: _Node) -> Definition | None:
        doc = self.mapping(
            root,
            "the definition",
            allowed=("key", "name", "description", "start", "deadline", "states"),
            required=("key", "name", "start", "states"),
        )
        if doc is None:
            return None
        key = self.word(doc.get("key"), "the key", _KEY)
        name = self.text(doc.get("name"), "the name")
        description = self.text(doc.get("description"), "the description")
        start = self.text(doc.get("start"), "start")
        deadline = self.deadline(doc["deadline"], None, "instance") if "deadline" in doc else None
        states_node = doc.get("states")
        written = self.mapping(states_node, "states") if states_node is not None else None
        if states_node is None or written is None:
            return None
        if len(written) > MAX_STATES:
            self.problems.at(states_node, f"{len(written)} states; a definition has at most {MAX_STATES}")
            return None
        if not written:
            self.problems.at(states_node, "a definition needs at least one state")
            return None
        infos = {name: self.state(name, node, states_node) for name, node in written.items()}
        parents = _Graph(self.problems, infos, states_node).check(start, doc.get("start"))
        if key is None or name is None or start is None or parents is None:
            return None
        states: dict[str, State] = {}
        for state_name, info in infos.items():
            if info.model is None:
                return None
            states[state_name] = msgspec.structs.replace(info.model, parent=parents[state_name])
        if _failed(doc, description=description, deadline=deadline):
            return None
        return Definition(
            key=key, name=name, start=start, states=states, deadline=deadline, description=description
        )

    # --- states

    def state(self, name: str, node: _Node, states: _Node) -> _StateInfo:
        if not _NAME.fullmatch(name):
            self.problems.at_key(states, name, f"the state name {name!r} must match {_NAME.pattern}")
        if not isinstance(node.value, dict):
            self.problems.at(node, f"the state {name!r} must be a mapping, not {_describe(node)}")
            return _StateInfo(name, None)
        if "type" not in node.value:
            self.problems.at(node, f"the state {name!r} is missing 'type' (one of {_quoted(_STATE_KEYS)})")
            return _StateInfo(name, None)
        kind = self.choice(node.value["type"], "the type", tuple(_STATE_KEYS))
        if kind is None:
            return _StateInfo(name, None)
        info = _StateInfo(name, kind)
        allowed, required = _STATE_KEYS[kind]
        fields = self.mapping(node, f"the {kind} state {name!r}", ("type", "label", *allowed), required)
        if fields is None:
            return info
        label = self.text(fields.get("label"), "the label")
        build = {
            "task": self.task,
            "wait": self.wait,
            "parallel": self.parallel,
            "decision": self.decision,
            "end": self.end,
        }[kind]
        model = build(fields, info)
        if model is not None and not _failed(fields, label=label):
            info.model = msgspec.structs.replace(model, label=label)
        return info

    def task(self, fields: dict[str, _Node], info: _StateInfo) -> TaskState | None:
        role = self.role(fields.get("role"))
        unit = self.unit(fields["unit"], role) if "unit" in fields else None
        actions = self.actions(fields.get("actions"), info, on_wait=False)
        deadline = self.deadline(fields["deadline"], actions, "task") if "deadline" in fields else None
        if role is None or unit is None or actions is None or _failed(fields, deadline=deadline):
            return None
        return TaskState(role=role, unit=unit, actions=actions, deadline=deadline)

    def wait(self, fields: dict[str, _Node], info: _StateInfo) -> WaitState | None:
        reason = self.word(fields.get("reason"), "the reason")
        pauses = fields.get("pauses_clock")
        pauses_clock = True if pauses is None else pauses.value
        if not isinstance(pauses_clock, bool) and pauses is not None:
            self.problems.at(pauses, f"pauses_clock must be true or false, not {_describe(pauses)}")
        actions = self.actions(fields.get("actions"), info, on_wait=True)
        deadline = self.deadline(fields["deadline"], actions, "wait") if "deadline" in fields else None
        if reason is None or actions is None or not isinstance(pauses_clock, bool):
            return None
        if _failed(fields, deadline=deadline):
            return None
        return WaitState(reason=reason, actions=actions, pauses_clock=pauses_clock, deadline=deadline)

    def parallel(self, fields: dict[str, _Node], info: _StateInfo) -> ParallelState | None:
        branches = self.branches(fields.get("branches"), info)
        join = self.join(fields["join"], len(branches) if branches else None) if "join" in fields else None
        decide = self.choice(fields.get("decide"), "decide", ("early", "all_done"))
        following: dict[str, str] = {}
        next_node = fields.get("next")
        targets = self.mapping(next_node, "next", _OUTCOMES, _OUTCOMES) if next_node is not None else None
        for outcome, target_node in (targets or {}).items():
            target = self.text(target_node, f"next {outcome}")
            if target is not None and outcome in _OUTCOMES:
                following[outcome] = target
                info.edges.append(_Edge(target, target_node, "next", owner=target_node))
        if (
            branches is None
            or join is None
            or set(following) != set(_OUTCOMES)
            or len(following) != len(targets or ())
        ):
            return None
        if "decide" in fields and decide is None:
            return None
        return ParallelState(
            branches=branches,
            join=join,
            next=following,
            decide="all_done" if decide == "all_done" else "early",
        )

    def branches(self, node: _Node | None, info: _StateInfo) -> dict[str, str] | None:
        """Branch name -> its first state; at least two."""
        written = self.mapping(node, "branches") if node is not None else None
        if node is None or written is None:
            return None
        branches: dict[str, str] = {}
        for branch, first in written.items():
            if not _NAME.fullmatch(branch):
                self.problems.at_key(node, branch, f"the branch name {branch!r} must match {_NAME.pattern}")
            target = self.text(first, f"the first state of branch {branch!r}")
            if target is not None:
                branches[branch] = target
                info.branches.append((branch, first))
        if len(written) < 2:
            self.problems.at(node, "a parallel state needs at least 2 branches")
            return None
        return branches if len(branches) == len(written) else None

    def join(self, node: _Node, branches: int | None) -> Join | None:
        """all | any | "K_of_M" | {n_of_m: K}; M is the number of branches and K is 1..M."""
        if isinstance(node.value, dict):
            fields = self.mapping(node, "join", allowed=("n_of_m",), required=("n_of_m",))
            n_node = (fields or {}).get("n_of_m")
            if n_node is None:
                return None
            n = n_node.value
            if not isinstance(n, int) or isinstance(n, bool):
                self.problems.at(n_node, f"n_of_m must be a whole number, not {_describe(n_node)}")
                return None
            return self.n_of_m(n_node, n, branches)
        value = self.text(node, "join")
        if value is None:
            return None
        if value in ("all", "any"):
            if branches is None:
                return None
            return Join(mode="all", n=branches) if value == "all" else Join(mode="any", n=1)
        match = _K_OF_M.fullmatch(value)
        if match is None:
            self.problems.at(node, f"join {value!r} is not all, any, K_of_M (e.g. '2_of_3') or {{n_of_m: K}}")
            return None
        n, m = int(match.group(1)), int(match.group(2))
        if branches is not None and m != branches:
            self.problems.at(node, f"join {value!r} counts {m} branches but the state has {branches}")
            return None
        return self.n_of_m(node, n, branches)

    def n_of_m(self, node: _Node, n: int, branches: int | None) -> Join | None:
        if branches is None:
            return None
        if not 1 <= n <= branches:
            self.problems.at(
                node, f"join needs {n} approvals but the state has {branches} branches (1..{branches})"
            )
            return None
        return Join(mode="n_of_m", n=n)

    def decision(self, fields: dict[str, _Node], info: _StateInfo) -> DecisionState | None:
        cases: list[Case] = []
        entries = self.items(fields.get("cases"), "cases")
        if entries == []:
            self.problems.at(fields["cases"], "a decision needs at least one case")
        for entry in entries or ():
            case = self.mapping(entry, "a case", allowed=("when", "target"), required=("when", "target"))
            if case is None:
                continue
            if "when" in case:
                self.logic(case["when"], scoped=False)
            target = self.text(case.get("target"), "the target")
            if target is not None:
                info.edges.append(_Edge(target, case["target"], "decision", owner=case["target"]))
            if target is not None and "when" in case:
                cases.append(Case(when=_data(case["when"]), target=target))
        otherwise = self.text(fields.get("otherwise"), "otherwise")
        if otherwise is not None:
            info.edges.append(_Edge(otherwise, fields["otherwise"], "decision", owner=fields["otherwise"]))
        if not entries or len(cases) != len(entries) or otherwise is None:
            return None
        return DecisionState(cases=tuple(cases), otherwise=otherwise)

    def end(self, fields: dict[str, _Node], info: _StateInfo) -> EndState | None:
        outcome = self.word(fields.get("outcome"), "the outcome")
        return EndState(outcome=outcome) if outcome is not None else None

    # --- actions

    def actions(self, node: _Node | None, info: _StateInfo, *, on_wait: bool) -> dict[str, Action] | None:
        written = self.mapping(node, "actions") if node is not None else None
        if node is None or written is None:
            return None
        if not written:
            self.problems.at(node, "a state needs at least one action")
            return None
        actions: dict[str, Action] | None = {}
        for name, action_node in written.items():
            if not _NAME.fullmatch(name):
                self.problems.at_key(node, name, f"the action name {name!r} must match {_NAME.pattern}")
            action = self.action(name, action_node, info, on_wait=on_wait)
            if actions is not None and action is not None:
                actions[name] = action
            else:
                actions = None
        return actions

    def action(self, name: str, node: _Node, info: _StateInfo, *, on_wait: bool) -> Action | None:
        fields = self.mapping(
            node,
            f"the action {name!r}",
            allowed=("target", "outcome", "require", "roles", "when", "label"),
            required=("target",),
        )
        if fields is None:
            return None
        target = self.text(fields.get("target"), "the target")
        outcome_node = fields.get("outcome")
        outcome = self.word(outcome_node, "the outcome")
        if target is not None:
            info.edges.append(_Edge(target, fields["target"], "action", owner=node, outcome=outcome_node))
        require = self.words(fields.get("require"), "require", self.requirement)
        roles: tuple[str, ...] | None = ()
        if "roles" in fields:
            if on_wait:
                # The applicant and the system act on a wait state; `[system]` keeps the applicant
                # out (a payment's confirmation, a timer's lapse), no other roles apply there.
                if _data(fields["roles"]) == ["system"]:
                    roles = (SYSTEM_ONLY,)
                else:
                    self.problems.at(
                        fields["roles"],
                        "a wait state is acted on by the applicant and the system; its actions take no"
                        " 'roles' but [system] (the system only)",
                    )
                    roles = None
            else:
                roles = self.words(fields["roles"], "roles", self.role)
        if "when" in fields:
            self.logic(fields["when"], scoped=False)
        label = self.text(fields.get("label"), "the label")
        if target is None or roles is None or _failed(fields, outcome=outcome, require=require, label=label):
            return None
        return Action(
            target=target,
            outcome=outcome,
            roles=roles,
            require=require or (),
            when=_data(fields["when"]) if "when" in fields else None,
            label=label,
        )

    def requirement(self, node: _Node) -> str | None:
        value = self.text(node, "a requirement")
        if value is not None and not _REQUIRE.fullmatch(value):
            self.problems.at(
                node, f"{value!r} is not a requirement: write comment, attachments or data.<key>"
            )
            return None
        return value

    # --- units and deadlines

    def unit(self, node: _Node, role: str | None) -> UnitRule | None:
        rule: UnitRule | None = None
        if isinstance(node.value, dict):
            fields = self.mapping(node, "the unit", allowed=("fixed",), required=("fixed",))
            code = self.text((fields or {}).get("fixed"), "the unit code")
            if code is not None and self.units is not None and code not in self.units:
                self.problems.at(node.value["fixed"], f"unknown unit code {code!r}")
            elif code is not None:
                rule = UnitRule(kind="fixed", code=code)
        elif isinstance(node.value, str) and node.value in _UNIT_KINDS:
            rule = UnitRule(kind=_UNIT_KINDS[node.value])
        else:
            hint = " (a fixed unit is written {fixed: <unit code>})" if node.value == "fixed" else ""
            self.problems.at(
                node,
                f"the unit {_describe(node)} is not owner, grid, applicant or {{fixed: <unit code>}}{hint}",
            )
        if rule is not None and rule.kind == "applicant" and role is not None and role != "citizen":
            self.problems.at(
                node,
                f"unit applicant puts the task in the applicant's hands: the role is citizen, not {role!r}",
            )
            return None
        return rule

    def deadline(
        self, node: _Node, actions: Collection[str] | None, where: Literal["task", "wait", "instance"]
    ) -> Deadline | None:
        """A duration string (P3D), or a mapping with the duration, clock, warn_at and on_breach."""
        if isinstance(node.value, str):
            return self.duration(node, None, 0.8, ())
        fields = self.mapping(
            node,
            "the deadline",
            allowed=("duration", "clock", "warn_at", "on_breach"),
            required=("duration",),
        )
        if fields is None:
            return None
        read = True
        clock_name = self.choice(fields.get("clock"), "the clock", tuple(_CLOCKS))
        clock = _CLOCKS.get(clock_name) if clock_name else None
        read &= "clock" not in fields or clock is not None
        warn_at = 0.8
        warn_node = fields.get("warn_at")
        if warn_node is not None:
            value = warn_node.value
            if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value < 1:
                self.problems.at(
                    warn_node, f"warn_at is a fraction between 0 and 1, not {_describe(warn_node)}"
                )
                read = False
            else:
                warn_at = float(value)
        on_breach: list[Escalation] = []
        entries = self.items(fields.get("on_breach"), "on_breach")
        read &= "on_breach" not in fields or entries is not None
        for entry in entries or ():
            escalation = self.escalation(entry, actions, where)
            read &= escalation is not None
            if escalation is not None:
                on_breach.append(escalation)
        if "duration" not in fields:
            return None
        deadline = self.duration(fields["duration"], clock, warn_at, tuple(on_breach))
        return deadline if read else None

    def duration(
        self, node: _Node, clock: Clock | None, warn_at: float, on_breach: tuple[Escalation, ...]
    ) -> Deadline | None:
        text = self.text(node, "the duration")
        if text is None:
            return None
        try:
            days, seconds = parse_duration(text)
        except ValueError as exc:
            self.problems.at(node, str(exc))
            return None
        return Deadline(
            duration=text,
            clock=clock or infer_clock(days, seconds),
            days=days,
            seconds=seconds,
            warn_at=warn_at,
            on_breach=on_breach,
        )

    def escalation(
        self, node: _Node, actions: Collection[str] | None, where: Literal["task", "wait", "instance"]
    ) -> Escalation | None:
        fields = self.mapping(node, "an escalation", allowed=("notify", "reassign", "action"))
        if fields is None:
            return None
        given = [kind for kind in ("notify", "reassign", "action") if kind in fields]
        if len(given) != 1:
            self.problems.at(
                node, f"an escalation is exactly one of notify, reassign or action; this one has {len(given)}"
            )
            return None
        kind = given[0]
        value = fields[kind]
        if where == "instance" and kind != "notify":
            self.problems.at_key(node, kind, f"the instance deadline can only notify; {kind} needs a state")
            return None
        if where == "wait" and kind == "reassign":
            self.problems.at_key(
                node, kind, "a wait state is not assigned to anyone, so it cannot be reassigned"
            )
            return None
        if kind == "notify":
            role = self.role(value)
            return Notify(role=role) if role is not None else None
        if kind == "action":
            action = self.text(value, "the action")
            if action is not None and actions is not None and action not in actions:
                self.problems.at(
                    value, f"{action!r} is not an action of this state; its actions: {_quoted(actions)}"
                )
                return None
            return AutoAction(action=action) if action is not None and actions is not None else None
        reassign = self.mapping(value, "reassign", allowed=("role", "unit"), required=("role",))
        if reassign is None:
            return None
        role = self.role(reassign.get("role"))
        unit = self.unit(reassign["unit"], role) if "unit" in reassign else None
        if role is None or ("unit" in reassign and unit is None):
            return None
        return Reassign(role=role, unit=unit)

    # --- conditions

    def logic(self, node: _Node, *, scoped: bool) -> None:
        """JSON Logic: data made of known operations. `scoped`: inside the per-item logic of
        filter/map/reduce/all/some/none, where `var` reads the item rather than the context."""
        value = node.value
        if isinstance(value, list):
            for item in value:
                self.logic(item, scoped=scoped)
            return
        if not isinstance(value, dict):
            return
        if len(value) != 1:
            listed = f": {_quoted(value)}" if value else ""
            self.problems.at(
                node, f"a condition object has exactly one operation; this one has {len(value)}{listed}"
            )
            return
        ((op, argument),) = value.items()
        if op == "log":
            self.problems.at_key(node, op, "'log' is not allowed in conditions")
            return
        if op not in LOGIC_OPERATIONS and op not in LOGIC_FORMS:
            known = sorted(LOGIC_OPERATIONS | LOGIC_FORMS)
            self.problems.at_key(node, op, f"unknown JSON Logic operation {op!r}{_suggest(op, known)}")
            return
        self.arguments(op, argument, scoped=scoped)

    def arguments(self, op: str, argument: _Node, *, scoped: bool) -> None:
        args = argument.value if isinstance(argument.value, list) else [argument]
        if op == "var":
            self.var(argument, args, scoped=scoped)
        elif op in ("missing", "missing_some"):
            for index, arg in enumerate(args):
                if (op == "missing_some" and index == 0) or isinstance(arg.value, dict):
                    self.logic(arg, scoped=scoped)
                elif isinstance(arg.value, list):
                    for path in arg.value:
                        self.path(path, scoped=scoped)
                else:
                    self.path(arg, scoped=scoped)
        elif op in _ITERATING:
            for index, arg in enumerate(args):
                self.logic(arg, scoped=scoped or index == 1)
        else:
            for arg in args:
                self.logic(arg, scoped=scoped)

    def var(self, argument: _Node, args: list[_Node], *, scoped: bool) -> None:
        if not args:
            if not scoped:
                self.problems.at(argument, "var needs a path starting with subject, vars or data")
            return
        self.path(args[0], scoped=scoped)
        for default in args[1:]:
            self.logic(default, scoped=scoped)

    def path(self, node: _Node, *, scoped: bool) -> None:
        if isinstance(node.value, dict | list):
            if scoped:
                self.logic(node, scoped=scoped)
            else:
                self.problems.at(node, "a path must be written out, e.g. subject.area")
            return
        if scoped:
            return
        text = node.value if isinstance(node.value, str) else ""
        if text.split(".", 1)[0] not in _VAR_ROOTS:
            self.problems.at(node, f"the path {_describe(node)} must start with subject, vars or data")


def _failed(fields: dict[str, _Node], **values: object) -> bool:
    """Whether an optional field was written but did not read (its reader returned None)."""
    return any(fields.get(name) is not None and value is None for name, value in values.items())


class _Graph:
    """The checks over the states as a graph: targets, reachability, branches, loops."""

    def __init__(self, problems: _Problems, infos: dict[str, _StateInfo], states: _Node) -> None:
        self.problems = problems
        self.infos = infos
        self.states = states
        self.branch_nodes: dict[tuple[str, str], _Node] = {}

    def at_state(self, name: str, message: str) -> None:
        self.problems.at_key(self.states, name, message)

    def check(self, start: str | None, start_node: _Node | None) -> dict[str, str | None] | None:
        """Reports every graph problem; returns each state's parent if there were none here."""
        before = len(self.problems.found)
        for info in self.infos.values():
            for edge in info.edges:
                self.defined(edge.target, edge.node)
            for _, branch_start in info.branches:
                self.defined(str(branch_start.value), branch_start)
        if start is not None and start_node is not None and not self.defined(start, start_node):
            start = None
        regions = self.regions(start)
        membership = {name: [r for r, names in regions.items() if name in names] for name in self.infos}
        home = self.homes(regions)
        reachable: set[str] = set()
        if start is not None and start_node is not None:
            if home[start] is not None:
                self.problems.at(
                    start_node,
                    f"{start!r} is the first state of {_region_name(home[start])}; "
                    "the workflow starts at a top-level state",
                )
            reachable = self.reachable(start)
            for name in self.infos:
                if name not in reachable:
                    self.at_state(name, f"the state {name!r} cannot be reached from {start!r}")
        self.branch_membership(regions, membership, home)
        self.edge_rules(home)
        self.no_exit(home, reachable)
        self.decision_loops()
        if start is None or len(self.problems.found) != before:
            return None
        return {name: (region[0] if region else None) for name, region in home.items()}

    def defined(self, target: str, node: _Node) -> bool:
        if target in self.infos:
            return True
        self.problems.at(node, f"there is no state {target!r}{_suggest(target, self.infos)}")
        return False

    def successors(self, name: str) -> list[str]:
        return [edge.target for edge in self.infos[name].edges if edge.target in self.infos]

    def reachable(self, start: str) -> set[str]:
        """Everything the flow can get to: through targets, next and branch starts."""
        seen = {start}
        queue = [start]
        while queue:
            info = self.infos[queue.pop()]
            branch_starts = [str(node.value) for _, node in info.branches if node.value in self.infos]
            for target in self.successors(info.name) + branch_starts:
                if target not in seen:
                    seen.add(target)
                    queue.append(target)
        return seen

    def region(self, first: str, enclosing: str | None) -> list[str]:
        """The states reachable from `first` without entering `enclosing` or any nested branch."""
        order = [first]
        seen = {first}
        for name in order:
            for target in self.successors(name):
                if target != enclosing and target not in seen:
                    seen.add(target)
                    order.append(target)
        return order

    def regions(self, start: str | None) -> dict[Region, list[str]]:
        """The top level (from start) and every branch of every parallel state, first state first."""
        regions: dict[Region, list[str]] = {}
        if start is not None:
            regions[None] = self.region(start, None)
        for info in self.infos.values():
            for branch, node in info.branches:
                self.branch_nodes[(info.name, branch)] = node
                first = str(node.value)
                if first == info.name:
                    self.problems.at(node, f"the branch {branch!r} cannot start at its own parallel state")
                elif first in self.infos:
                    regions[(info.name, branch)] = self.region(first, info.name)
        return regions

    @staticmethod
    def homes(regions: dict[Region, list[str]]) -> dict[str, Region]:
        """Where each state belongs: the branch it starts, else the top level, else the first
        branch reaching it. A state that other places reach as well is reported where they do."""
        home: dict[str, Region] = {}
        for region, names in regions.items():
            if region is not None:
                home.setdefault(names[0], region)
        for name in regions.get(None, []):
            home.setdefault(name, None)
        for region, names in regions.items():
            for name in names:
                home.setdefault(name, region)
        return home

    def crossing_edges(self, regions: dict[Region, list[str]], home: dict[str, Region]) -> set[str]:
        """Reports the targets that lead out of the source's place; returns the states entered so."""
        entered: set[str] = set()
        for region, names in regions.items():
            for name in names:
                if home[name] != region:
                    continue  # reported where it was entered from
                for edge in self.infos[name].edges:
                    target = edge.target
                    if target not in self.infos or (region is not None and target == region[0]):
                        continue
                    if home[target] != region:
                        self.problems.at(edge.node, self.crossing_message(target, region, home[target]))
                        entered.add(target)
        return entered

    def branch_membership(
        self, regions: dict[Region, list[str]], membership: dict[str, list[Region]], home: dict[str, Region]
    ) -> None:
        """Each state in one place: targets that leave their branch (or enter one from outside),
        branch starts that are another place's states, states in two branches, ends in branches."""
        entered = self.crossing_edges(regions, home)
        for region, names in regions.items():
            if region is not None:
                elsewhere = [r for r in membership[names[0]] if r != region]
                if elsewhere:
                    places = " and ".join(_region_name(r) for r in elsewhere)
                    self.problems.at(
                        self.branch_nodes[region],
                        f"the first state {names[0]!r} of this branch is also in {places}",
                    )
        for name in entered:
            branches = [r for r in membership[name] if r is not None]
            if len(branches) > 1:
                places = " and ".join(_region_name(r) for r in branches)
                self.at_state(
                    name, f"the state {name!r} is in two branches ({places}); a state belongs to one branch"
                )
        for name, region in home.items():
            if region is not None and self.infos[name].kind == "end" and None not in membership[name]:
                self.at_state(
                    name,
                    f"an end state cannot be in {_region_name(region)}: a branch ends with an action that "
                    f"targets {region[0]!r} with an outcome",
                )

    @staticmethod
    def crossing_message(target: str, source: Region, target_home: Region) -> str:
        if source is None:
            return f"{target!r} is inside {_region_name(target_home)}; a branch is entered only through its parallel state"
        if target_home is None:
            return (
                f"{target!r} is outside {_region_name(source)}: a branch ends by targeting {source[0]!r} "
                "with an outcome (approved or rejected)"
            )
        return f"{target!r} is in another branch ({_region_name(target_home)}); a branch only reaches its own states"

    def edge_rules(self, home: dict[str, Region]) -> None:
        """Outcomes: exactly the actions that end a branch (target its parallel state) have one."""
        for name, info in self.infos.items():
            region = home.get(name)
            enclosing = region[0] if region is not None else None
            for edge in info.edges:
                ends_branch = enclosing is not None and edge.target == enclosing
                if edge.kind != "action":
                    if ends_branch:
                        source = "a decision" if edge.kind == "decision" else "a parallel state's next"
                        self.problems.at(
                            edge.node, f"{source} cannot end a branch: only an action with an outcome can"
                        )
                    continue
                outcome = edge.outcome
                if ends_branch and outcome is None:
                    self.problems.at(
                        edge.owner,
                        f"this action ends {_region_name(region)} and needs an outcome: approved or rejected",
                    )
                elif ends_branch and outcome is not None and outcome.value not in _OUTCOMES:
                    self.problems.at(outcome, f"a branch ends approved or rejected, not {_describe(outcome)}")
                elif not ends_branch and outcome is not None:
                    self.problems.at(
                        outcome,
                        "an outcome is given only by an action that ends a branch by targeting its parallel state",
                    )

    def no_exit(self, home: dict[str, Region], reachable: set[str]) -> None:
        """Every reachable state can reach an end state (in a branch: its parallel state)."""
        good: set[str] = set()
        for name, info in self.infos.items():
            region = home.get(name)
            enclosing = region[0] if region is not None else None
            if (
                info.kind == "end"
                or info.kind is None
                or any(edge.target == enclosing or edge.target not in self.infos for edge in info.edges)
            ):
                good.add(name)
        changed = True
        while changed:
            changed = False
            for name in self.infos:
                if name not in good and any(target in good for target in self.successors(name)):
                    good.add(name)
                    changed = True
        for name in self.infos:
            if name in reachable and name not in good:
                region = home.get(name)
                if region is None:
                    self.at_state(
                        name, f"no end state can be reached from {name!r}: the workflow would never finish"
                    )
                else:
                    self.at_state(
                        name,
                        f"from {name!r} the flow never gets back to {region[0]!r}: {_region_name(region)} would never finish",
                    )

    def decision_loops(self) -> None:
        """A loop made only of decision states would run forever with no one acting."""
        decisions = [name for name, info in self.infos.items() if info.kind == "decision"]
        after: dict[str, set[str]] = {}
        for name in decisions:
            seen: set[str] = set()
            queue = [name]
            while queue:
                for target in self.successors(queue.pop()):
                    if self.infos[target].kind == "decision" and target not in seen:
                        seen.add(target)
                        queue.append(target)
            after[name] = seen
        reported: set[str] = set()
        for name in decisions:
            if name in after[name] and name not in reported:
                loop = [other for other in decisions if other in after[name] and name in after[other]]
                reported.update(loop)
                self.at_state(
                    name,
                    f"the decisions {', '.join(repr(n) for n in loop)} form a loop in which no one acts; "
                    "the engine would go round it forever",
                )


# --- the public functions --------------------------------------------------------------------------


def parse(
    text: str,
    *,
    media_type: Literal["yaml", "json"] = "yaml",
    roles: Collection[str] = ROLES,
    units: Container[str] | None = None,
) -> Definition:
    """Checks a definition as written and returns it normalised; raises DefinitionInvalid with
    every problem found. `units`: the organisation unit codes that exist (None: not checked)."""
    problems = _Problems()
    root = _load(text, media_type, problems)
    definition = _Checker(problems, roles, units).definition(root) if root is not None else None
    errors = problems.errors()
    if errors or definition is None:
        if not errors:  # a reader returned None without saying why: never let that pass silently
            errors = [FieldError(pointer="", detail="line 1: the definition could not be read")]
        count = f"{len(errors)} problems" if len(errors) > 1 else "1 problem"
        raise DefinitionInvalid(f"The workflow definition has {count}; see errors.", errors=errors)
    return definition


def diff(old: Definition, new: Definition) -> list[Change]:
    """What changed from `old` to `new`, at the finest level, sorted by pointer.

    An absent value and null are the same: giving a state a deadline is one change, "added", at
    its pointer. A deadline's days and seconds follow from its duration and are not compared, so
    P2D becoming P3D is one change at .../deadline/duration."""
    changes: list[Change] = []
    _compare(_comparable(old), _comparable(new), "", changes)
    return sorted(changes, key=lambda change: change.pointer)


def _comparable(definition: Definition) -> dict[str, Any]:
    """The normalised builtins without what follows from something else: a deadline's days and
    seconds (from its duration)."""
    data: dict[str, Any] = msgspec.json.decode(msgspec.json.encode(definition))  # lists, not tuples
    for holder in (data, *data["states"].values()):
        deadline = holder.get("deadline")
        if deadline is not None:
            del deadline["days"], deadline["seconds"]
    return data


def _compare(old: Any, new: Any, pointer: str, changes: list[Change]) -> None:
    if isinstance(old, dict) and isinstance(new, dict):
        for key in sorted(old.keys() | new.keys()):
            _compare_member(old.get(key), new.get(key), f"{pointer}/{_escape(key)}", changes)
    elif isinstance(old, list) and isinstance(new, list):
        for index in range(max(len(old), len(new))):
            before = old[index] if index < len(old) else None
            after = new[index] if index < len(new) else None
            _compare_member(before, after, f"{pointer}/{index}", changes)
    elif old != new or type(old) is not type(new):
        changes.append(Change(op="changed", pointer=pointer, old=old, new=new))


def _compare_member(old: Any, new: Any, pointer: str, changes: list[Change]) -> None:
    if old is None and new is not None:
        changes.append(Change(op="added", pointer=pointer, new=new))
    elif old is not None and new is None:
        changes.append(Change(op="removed", pointer=pointer, old=old))
    elif old is not None:
        _compare(old, new, pointer, changes)
