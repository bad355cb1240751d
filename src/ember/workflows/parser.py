"""Reads a workflow document (YAML or JSON) into a ``Workflow``, refusing what Ember won't run.

Every problem is reported as ``InvalidSpec`` with the path of the offending node, written
as the API names fields (``do[2].charge.call``); all problems of a document are reported
together. A DSL feature outside Ember's subset is refused with "not supported by Ember:
<feature>" rather than ignored (docs/workflows.md lists the subset). The fields tasks share
(durations, expressions, errors, retries, events) are read by ``fields.FieldReader``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Hashable
from typing import Any, TypeVar

import yaml

from ember.control.validation import invalid_spec
from ember.errors import InvalidSpec
from ember.model.function import ALIAS_RE, MAX_VERSION, NAME_RE
from ember.workflows.fields import FieldReader, Loc, Refused, kind_of
from ember.workflows.model import (
    FLOW_KEYWORDS,
    CallFunction,
    CallHttp,
    Catch,
    Document,
    DoTask,
    EmitTask,
    ForkTask,
    ForTask,
    ListenTask,
    RaiseTask,
    RunWorkflow,
    SetTask,
    SwitchCase,
    SwitchTask,
    Task,
    TryTask,
    Use,
    WaitTask,
    Workflow,
)

T = TypeVar("T")

DSL_RE = re.compile(r"^1\.0\.(0|[1-9][0-9]*)$")
# The spec's rule for namespaces and names: lowercase letters and digits, inner dashes.
DOC_NAME_RE = re.compile(r"^[a-z0-9](-*[a-z0-9]){0,62}$")
SEMVER_RE = re.compile(
    r"^(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)"
    r"(?:-[0-9A-Za-z-]+(?:\.[0-9A-Za-z-]+)*)?(?:\+[0-9A-Za-z-]+(?:\.[0-9A-Za-z-]+)*)?$"
)
# A document far larger than any workflow: the bound on a YAML alias bomb.
MAX_NODES = 100_000
HTTP_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
ERROR_FILTER_FIELDS = frozenset({"type", "status", "instance", "title", "details", "detail"})

COMMON_FIELDS = frozenset({"if", "input", "output", "export", "timeout", "then", "metadata"})
# The fields of each task kind besides the common ones, by the field that names the kind.
KIND_FIELDS: dict[str, frozenset[str]] = {
    "call": frozenset({"call", "with"}),
    "do": frozenset({"do"}),
    "fork": frozenset({"fork"}),
    "switch": frozenset({"switch"}),
    "for": frozenset({"for", "while", "do"}),
    "set": frozenset({"set"}),
    "wait": frozenset({"wait"}),
    "raise": frozenset({"raise"}),
    "try": frozenset({"try", "catch"}),
    "emit": frozenset({"emit"}),
    "listen": frozenset({"listen", "foreach"}),
    "run": frozenset({"run"}),
}
UNSUPPORTED_CALLS = {
    "grpc": "call: grpc",
    "openapi": "call: openapi",
    "asyncapi": "call: asyncapi",
    "a2a": "call: a2a",
    "mcp": "call: mcp",
}
UNSUPPORTED_RUNS = ("container", "script", "shell")
UNSUPPORTED_USE = ("authentications", "extensions", "functions", "secrets", "catalogs")


class _Reader(FieldReader):
    # -- tasks --------------------------------------------------------------------------

    def task_list(self, value: Any, loc: Loc) -> tuple[Task, ...]:
        if not isinstance(value, list) or not value:
            self.fail(loc, "must be a non-empty list of tasks, each a mapping of its name to it")
        names: list[str] = []
        for index, item in enumerate(value):
            if not isinstance(item, dict) or len(item) != 1:
                self.note((*loc, index), "must be a mapping of one task name to its task")
                continue
            name = next(iter(item))
            if not isinstance(name, str) or not name:
                self.note((*loc, index), "a task name must be a non-empty string")
            elif name in FLOW_KEYWORDS:
                self.note((*loc, index, name), f"{name!r} is a flow directive, not a task name")
            elif name in names:
                self.note((*loc, index, name), f"duplicate task name {name!r} in this list")
            names.append(str(name))
        tasks: list[Task] = []
        siblings = frozenset(names)
        for index, item in enumerate(value):
            if isinstance(item, dict) and len(item) == 1:
                name, body = next(iter(item.items()))
                task = self.guard(self.task, str(name), body, (*loc, index, str(name)), siblings)
                if task is not None:
                    tasks.append(task)
        return tuple(tasks)

    def flow(self, value: Any, loc: Loc, siblings: frozenset[str]) -> str:
        target = self.string(value, loc)
        if target not in FLOW_KEYWORDS and target not in siblings:
            self.fail(
                loc, f"{target!r} is neither continue, exit, end nor a task in the same list"
            )
        return target

    def task(self, name: str, value: Any, loc: Loc, siblings: frozenset[str]) -> Task:
        if not isinstance(value, dict):
            self.fail(loc, f"a task must be a mapping, not {kind_of(value)}")
        kinds = [k for k in KIND_FIELDS if k in value]
        if "for" in kinds:
            kinds = ["for"]
        if not kinds:
            found = ", ".join(str(k) for k in value) or "nothing"
            self.fail(
                loc,
                f"unknown task kind: a task has one of {', '.join(KIND_FIELDS)} (found {found})",
            )
        if len(kinds) > 1:
            self.fail(loc, f"a task has one kind, not {' and '.join(kinds)}")
        kind = kinds[0]
        raw = self.mapping(value, loc, COMMON_FIELDS | KIND_FIELDS[kind])
        common: dict[str, Any] = {
            "name": name,
            "path": _pointer(loc),
            "definition": value,
            "if_": self.guard(lambda: self.optional(raw, "if", loc, self.expression)),
            "input": self.guard(lambda: self.optional(raw, "input", loc, self.input)),
            "output": self.guard(lambda: self.optional(raw, "output", loc, self.output)),
            "export": self.guard(lambda: self.optional(raw, "export", loc, self.output)),
            "timeout": self.guard(lambda: self.optional(raw, "timeout", loc, self.timeout)),
            "then": self.guard(lambda: self.optional(
                raw, "then", loc, lambda v, at: self.flow(v, at, siblings))) or "continue",
            "metadata": self.guard(
                lambda: self.optional(raw, "metadata", loc, self.plain_mapping)) or {},
        }
        build = getattr(self, f"task_{kind}")
        task: Task = build(raw, loc, common, siblings)
        return task

    def task_call(self, raw: dict[str, Any], loc: Loc, common: dict[str, Any], _: Any) -> Task:
        target = self.string(raw["call"], (*loc, "call"))
        if target in UNSUPPORTED_CALLS:
            self.unsupported((*loc, "call"), UNSUPPORTED_CALLS[target])
        if "@" in target:
            self.unsupported((*loc, "call"), "functions from a catalog (name@catalog)")
        if target == "http":
            return self.call_http(raw, loc, common)
        function, _sep, qualifier = target.partition(":")
        if not NAME_RE.match(function) or (_sep and not _qualifier_ok(qualifier)):
            self.fail(
                (*loc, "call"),
                f"{target!r} is neither http nor an Ember function as name or name:qualifier "
                "(latest, a version number or an alias)",
            )
        with_ = self.optional(raw, "with", loc, self.json_value)
        return CallFunction(**common, function=function, qualifier=qualifier or "latest",
                            with_=with_)

    def call_http(self, raw: dict[str, Any], loc: Loc, common: dict[str, Any]) -> Task:
        at = (*loc, "with")
        args = self.mapping(
            raw.get("with"), at,
            ("method", "endpoint", "headers", "body", "query", "output", "redirect"),
            ("method", "endpoint"),
        )
        method = self.string(args["method"], (*at, "method")).upper()
        if method not in HTTP_METHODS:
            self.fail((*at, "method"), f"{args['method']!r} is not an HTTP method")
        endpoint = args["endpoint"]
        if isinstance(endpoint, dict):
            spec = self.mapping(endpoint, (*at, "endpoint"), ("uri", "authentication"), ("uri",))
            if "authentication" in spec:
                self.unsupported((*at, "endpoint", "authentication"), "endpoint authentication")
            endpoint = spec["uri"]
            self.string_or_expression(endpoint, (*at, "endpoint", "uri"))
        else:
            self.string_or_expression(endpoint, (*at, "endpoint"))
        output = args.get("output", "content")
        if output not in ("content", "response", "raw"):
            self.fail((*at, "output"), "must be content, response or raw")
        return CallHttp(
            **common, method=method, endpoint=endpoint,
            headers=self.optional(args, "headers", at, self.mapping_or_expression),
            body=self.optional(args, "body", at, self.json_value),
            query=self.optional(args, "query", at, self.mapping_or_expression),
            output_format=output,
            redirect=self.optional(args, "redirect", at, self.boolean) or False,
        )

    def task_do(self, raw: dict[str, Any], loc: Loc, common: dict[str, Any], _: Any) -> Task:
        return DoTask(**common, do=self.task_list(raw["do"], (*loc, "do")))

    def task_fork(self, raw: dict[str, Any], loc: Loc, common: dict[str, Any], _: Any) -> Task:
        at = (*loc, "fork")
        spec = self.mapping(raw["fork"], at, ("branches", "compete"), ("branches",))
        return ForkTask(
            **common, branches=self.task_list(spec["branches"], (*at, "branches")),
            compete=self.optional(spec, "compete", at, self.boolean) or False,
        )

    def task_switch(
        self, raw: dict[str, Any], loc: Loc, common: dict[str, Any], siblings: frozenset[str]
    ) -> Task:
        at = (*loc, "switch")
        if not isinstance(raw["switch"], list) or not raw["switch"]:
            self.fail(at, "must be a non-empty list of cases, each a mapping of its name to it")
        cases = []
        for index, item in enumerate(raw["switch"]):
            if not isinstance(item, dict) or len(item) != 1:
                self.note((*at, index), "must be a mapping of one case name to its case")
                continue
            name, body = next(iter(item.items()))
            case_at = (*at, index, str(name))
            spec = self.guard(self.mapping, body, case_at, ("when", "then"), ("then",))
            if spec is None:
                continue
            when = self.guard(self.optional, spec, "when", case_at, self.expression)
            then = self.guard(self.flow, spec["then"], (*case_at, "then"), siblings)
            if then is not None:
                cases.append(SwitchCase(name=str(name), when=when, then=then))
        return SwitchTask(**common, cases=tuple(cases))

    def task_for(self, raw: dict[str, Any], loc: Loc, common: dict[str, Any], _: Any) -> Task:
        at = (*loc, "for")
        spec = self.mapping(raw["for"], at, ("each", "in", "at", "concurrency"), ("in",))
        if "do" not in raw:
            self.fail((*loc, "do"), "field required")
        each = self.optional(spec, "each", at, self.variable) or "item"
        index = self.optional(spec, "at", at, self.variable) or "index"
        names = (each, index)
        return ForTask(
            **common,
            each=each,
            in_=self.expression(spec["in"], (*at, "in")),
            at=index,
            while_=self.scoped(names, self.optional, raw, "while", loc, self.expression),
            concurrency=self.optional(
                spec, "concurrency", at, lambda v, c: self.integer(v, c, 1)) or 1,
            do=self.scoped(names, self.task_list, raw["do"], (*loc, "do")),
        )

    def task_set(self, raw: dict[str, Any], loc: Loc, common: dict[str, Any], _: Any) -> Task:
        return SetTask(**common, set=self.mapping_or_expression(raw["set"], (*loc, "set")))

    def task_wait(self, raw: dict[str, Any], loc: Loc, common: dict[str, Any], _: Any) -> Task:
        return WaitTask(**common, wait=self.duration(raw["wait"], (*loc, "wait")))

    def task_raise(self, raw: dict[str, Any], loc: Loc, common: dict[str, Any], _: Any) -> Task:
        at = (*loc, "raise")
        spec = self.mapping(raw["raise"], at, ("error",), ("error",))
        if isinstance(spec["error"], str):
            found = self.use.errors.get(spec["error"])
            if found is None:
                self.fail((*at, "error"), f"no error named {spec['error']!r} in use.errors")
            return RaiseTask(**common, error=found, error_ref=spec["error"])
        return RaiseTask(**common, error=self.error(spec["error"], (*at, "error")))

    def task_try(self, raw: dict[str, Any], loc: Loc, common: dict[str, Any], _: Any) -> Task:
        if "catch" not in raw:
            self.fail((*loc, "catch"), "field required")
        body = self.guard(lambda: self.task_list(raw["try"], (*loc, "try")))
        catch = self.catch(raw["catch"], (*loc, "catch"))
        return TryTask(**common, try_=body or (), catch=catch)

    def catch(self, value: Any, loc: Loc) -> Catch:
        raw = self.mapping(value, loc, ("errors", "as", "when", "exceptWhen", "retry", "do"))
        errors = self.optional(raw, "errors", loc, lambda v, at: self.mapping(v, at, ("with",)))
        with_: dict[str, Any] = {}
        if errors and errors.get("with") is not None:
            with_ = self.mapping(errors["with"], (*loc, "errors", "with"), ERROR_FILTER_FIELDS)
        name = self.optional(raw, "as", loc, self.variable) or "error"
        return self.scoped((name,), self.catch_body, raw, loc, with_, name)

    def catch_body(self, raw: dict[str, Any], loc: Loc, with_: dict[str, Any], name: str) -> Catch:
        return Catch(
            errors_with=with_,
            as_=name,
            when=self.guard(self.optional, raw, "when", loc, self.expression),
            except_when=self.guard(self.optional, raw, "exceptWhen", loc, self.expression),
            retry=self.guard(self.optional, raw, "retry", loc, self.retry),
            do=self.optional(raw, "do", loc, self.task_list) or (),
        )

    def task_emit(self, raw: dict[str, Any], loc: Loc, common: dict[str, Any], _: Any) -> Task:
        at = (*loc, "emit")
        spec = self.mapping(raw["emit"], at, ("event",), ("event",))
        event = self.mapping(spec["event"], (*at, "event"), ("with",), ("with",))
        attributes = self.mapping(
            event["with"], (*at, "event", "with"), None, ("source", "type")
        )
        return EmitTask(**common, event=self.json_value(attributes, (*at, "event", "with")))

    def task_listen(self, raw: dict[str, Any], loc: Loc, common: dict[str, Any], _: Any) -> Task:
        if "foreach" in raw:
            self.unsupported((*loc, "foreach"), "listen.foreach (stream processing of events)")
        at = (*loc, "listen")
        spec = self.mapping(raw["listen"], at, ("to", "read"), ("to",))
        read = spec.get("read", "data")
        if read not in ("data", "envelope", "raw"):
            self.fail((*at, "read"), "must be data, envelope or raw")
        return ListenTask(**common, to=self.consumption(spec["to"], (*at, "to")), read=read)

    def task_run(self, raw: dict[str, Any], loc: Loc, common: dict[str, Any], _: Any) -> Task:
        at = (*loc, "run")
        if isinstance(raw["run"], dict):
            for kind in UNSUPPORTED_RUNS:
                if kind in raw["run"]:
                    self.unsupported((*at, kind), f"run: {kind}")
        spec = self.mapping(raw["run"], at, ("workflow", "await", "return"), ("workflow",))
        if "return" in spec:
            self.unsupported((*at, "return"), "run.return")
        target = self.mapping(
            spec["workflow"], (*at, "workflow"), ("namespace", "name", "version", "input"),
            ("namespace", "name"),
        )
        wat = (*at, "workflow")
        return RunWorkflow(
            **common,
            namespace=self.string(target["namespace"], (*wat, "namespace")),
            workflow=self.string(target["name"], (*wat, "name")),
            version=self.optional(target, "version", wat, self.string) or "latest",
            workflow_input=self.optional(target, "input", wat, self.json_value),
            await_=self.optional(spec, "await", at, self.boolean) is not False,
        )

    # -- the whole document -------------------------------------------------------------

    def document(self, value: Any, loc: Loc) -> Document:
        raw = self.mapping(
            value, loc,
            ("dsl", "namespace", "name", "version", "title", "summary", "tags", "metadata"),
            ("dsl", "namespace", "name", "version"),
        )
        dsl = self.string(raw["dsl"], (*loc, "dsl"))
        if not DSL_RE.match(dsl):
            self.fail((*loc, "dsl"), f"Ember reads DSL version 1.0.x, not {dsl!r}")
        for key in ("namespace", "name"):
            if not DOC_NAME_RE.match(self.string(raw[key], (*loc, key))):
                self.note(
                    (*loc, key),
                    f"{raw[key]!r} is invalid: lowercase letters, digits and inner '-', "
                    "at most 63 characters",
                )
        version = self.string(raw["version"], (*loc, "version"))
        if not SEMVER_RE.match(version):
            self.note((*loc, "version"), f"{version!r} is not a semantic version (e.g. 1.0.0)")
        return Document(
            dsl=dsl, namespace=raw["namespace"], name=raw["name"], version=version,
            title=self.optional(raw, "title", loc, self.string),
            summary=self.optional(raw, "summary", loc, self.string),
            tags=self.optional(raw, "tags", loc, self.plain_mapping) or {},
            metadata=self.optional(raw, "metadata", loc, self.plain_mapping) or {},
        )

    def use_block(self, value: Any, loc: Loc) -> None:
        raw = self.mapping(value, loc, ("errors", "retries", "timeouts", *UNSUPPORTED_USE))
        for key in UNSUPPORTED_USE:
            if key in raw:
                self.guard(self.unsupported, (*loc, key), f"use.{key}")
        errors = self.named(raw, "errors", loc, self.error)
        # A shared policy's when and exceptWhen see the caught error as catch's default names it.
        retries = self.scoped(("error",), self.named, raw, "retries", loc, self.retry)
        timeouts = self.named(raw, "timeouts", loc, self.timeout)
        self.use = Use(errors=errors, retries=retries, timeouts=timeouts)

    def named(
        self, raw: dict[str, Any], key: str, loc: Loc, read: Callable[[Any, Loc], T]
    ) -> dict[str, T]:
        found: dict[str, T] = {}
        for name, item in (self.optional(raw, key, loc, self.plain_mapping) or {}).items():
            entry = self.guard(read, item, (*loc, key, str(name)))
            if entry is not None:
                found[str(name)] = entry
        return found

    def workflow(self, value: Any) -> Workflow:
        raw = self.mapping(
            value, (), ("document", "input", "use", "do", "timeout", "output", "schedule",
                        "evaluate"),
            ("document", "do"),
        )
        if "evaluate" in raw:
            self.guard(lambda: self.evaluate(raw["evaluate"], ("evaluate",)))
        document = self.guard(lambda: self.document(raw["document"], ("document",)))
        if "use" in raw:
            self.guard(lambda: self.use_block(raw["use"], ("use",)))
        head = {
            key: self.guard(self.optional, raw, key, (), read)
            for key, read in (("input", self.input), ("output", self.output),
                              ("timeout", self.timeout), ("schedule", self.schedule))
        }
        do = self.guard(lambda: self.task_list(raw["do"], ("do",)))
        if self.errors or document is None or do is None:
            raise Refused
        return Workflow(document=document, do=do, use=self.use, definition=raw, **head)

    def evaluate(self, value: Any, loc: Loc) -> None:
        raw = self.mapping(value, loc, ("language", "mode"))
        if raw.get("language", "jq") != "jq":
            self.unsupported((*loc, "language"), f"expression language {raw['language']!r}")
        if raw.get("mode", "strict") != "strict":
            self.unsupported((*loc, "mode"), f"evaluation mode {raw['mode']!r}")


def load_workflow(data: Any) -> Workflow:
    """Build a ``Workflow`` from a decoded document.

    Raises ``InvalidSpec`` whose ``details["errors"]`` lists each problem as
    ``{"field": "do[2].charge.call", "message": ...}``.
    """
    size = _expanded_size(data, MAX_NODES)
    if size > MAX_NODES:
        # YAML aliases can make a small text a huge document ("billion laughs").
        raise invalid_spec(
            [{"field": "body", "message": f"the document has over {MAX_NODES} values"}]
        )
    reader = _Reader()
    try:
        return reader.workflow(data)
    except Refused:
        raise invalid_spec(reader.errors) from None
    except RecursionError:
        raise invalid_spec(
            [{"field": "body", "message": "the document is nested too deeply"}]
        ) from None


def parse_workflow(text: str | bytes, content_type: str | None = None) -> Workflow:
    """Parse a workflow document written in YAML or JSON.

    ``content_type`` ``application/json`` reads JSON only; anything else (or none) reads
    YAML, of which JSON is a subset. Raises ``InvalidSpec`` for unreadable text and for
    every problem ``load_workflow`` finds.
    """
    media = (content_type or "").split(";")[0].strip().lower()
    try:
        if media == "application/json" or media.endswith("+json"):
            data = json.loads(text, object_pairs_hook=_unique_keys)
        else:
            data = yaml.load(text, Loader=_Loader)
    except RecursionError as exc:
        raise invalid_spec(
            [{"field": "body", "message": "the document is nested too deeply"}]
        ) from exc
    except (ValueError, yaml.YAMLError) as exc:
        raise InvalidSpec(
            f"the workflow document is not valid {'JSON' if 'json' in media else 'YAML'}: {exc}",
            {"errors": [{"field": "body", "message": str(exc)}]},
        ) from exc
    return load_workflow(data)


class _Loader(yaml.SafeLoader):
    """YAML 1.2's core scalars: ``on``, ``off``, ``yes``, ``no`` stay strings (``schedule.on``
    would otherwise read as the key ``True``) and dates stay strings, as JSON has them. A key
    written twice in one mapping is an error rather than the last one silently winning."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue  # keys from a merge (<<) may be overridden, as YAML intends
            key = self.construct_object(key_node, deep=True)
            if not isinstance(key, Hashable):
                continue  # the base class refuses an unhashable key
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    "while constructing a mapping", node.start_mark,
                    f"found duplicate key {key!r}", key_node.start_mark,
                )
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


_Loader.yaml_implicit_resolvers = {
    first: [
        (tag, regexp) for tag, regexp in resolvers
        if tag not in ("tag:yaml.org,2002:bool", "tag:yaml.org,2002:timestamp")
    ]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:bool",
    re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"),
    list("tTfF"),
)


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    found: dict[str, Any] = {}
    for key, value in pairs:
        if key in found:
            raise ValueError(f"duplicate key {key!r}")
        found[key] = value
    return found


def _expanded_size(data: Any, limit: int) -> int:
    """How many values ``data`` holds with shared values counted each time they appear,
    computed once per distinct container; stops counting past ``limit``."""
    sizes: dict[int, int] = {}

    def size(value: Any) -> int:
        if not isinstance(value, dict | list):
            return 1
        known = sizes.get(id(value))
        if known is None:
            items = value.values() if isinstance(value, dict) else value
            known = 1
            for item in items:
                known += size(item)
                if known > limit:
                    break
            sizes[id(value)] = known
        return known

    try:
        return size(data)
    except RecursionError:
        return limit + 1


def _pointer(loc: Loc) -> str:
    return "".join("/" + str(p).replace("~", "~0").replace("/", "~1") for p in loc)


def _qualifier_ok(qualifier: str) -> bool:
    if qualifier.isdigit():
        return 1 <= int(qualifier) <= MAX_VERSION and not qualifier.startswith("0")
    return bool(ALIAS_RE.match(qualifier))

