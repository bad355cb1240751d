"""Runtime expressions: jq programs written ``${ … }``, compiled once, evaluated with the
DSL's arguments (``$context``, ``$input``, ``$output``, ``$secrets``, ``$task``,
``$workflow``, ``$runtime``).

Which strings are expressions. The DSL's default evaluation mode is ``strict``: a runtime
expression is a string that is wholly ``${ … }``; any other string is a literal. Ember
implements strict mode only (``evaluate.mode: loose`` is for the parser to refuse). In a
template (``with``, ``set``, ``emit.event.with``, the object form of ``input.from`` …) that
rule is applied as written: ``"id-${ .id }"`` is the literal text, not an interpolation.
A field whose value can only be an expression (``if``, ``when``, ``while``, ``for.in``,
``until``, ``correlate.from``, and the string form of ``input.from``, ``output.as``,
``export.as``) is compiled with ``implicit=True``, which also accepts a bare jq program
(``from: .order.pet``, ``as: '$context + .'``, as the DSL reference's own examples write
them): a literal string there would be meaningless (``if: .x > 1`` would always be true),
so treating it as one would fail silently where compiling it fails loudly at deploy.

Evaluation. jq compiles slowly (about 1.5 ms for a short program on the reference machine)
and runs fast (about 20 µs), so programs are compiled once and cached. The arguments are
not jq ``--arg``s, which would bind them at compile time: the cached program is wrapped as
``. as [$__d, $context, …] | $__d | (BODY)`` and fed one JSON array per evaluation, holding
only the arguments the program mentions, encoded by orjson. A value already encoded (a
step's output as the instance returned it) is passed as :class:`RawJson` and never decoded.
A program that yields several values gives the first; one that yields none gives ``null``.

Variables. Besides the arguments, ``for`` binds ``$item`` and ``$index`` (or the names
``each`` and ``at`` give them) and ``catch`` binds ``$error`` (or its ``as``). A program
that uses them is compiled with their names (``compile_expression(text, variables=…)``)
and they are bound like the arguments, from the same ``variables`` mapping: every key of it
that is not an argument is such a variable. ``evaluate`` compiles a string with the
variables it is given.
``$authorization`` is not provided (Ember has no authentication policies yet): a program
that uses it fails to compile, so its document is refused at deploy.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from typing import Any

import jq
import orjson

from ember import __version__
from ember.errors import InvalidSpec
from ember.workflows.errors import EXPRESSION, WorkflowError

# The arguments Ember binds, in the order the wrapped program destructures them.
ARGUMENTS: tuple[str, ...] = (
    "context",
    "input",
    "output",
    "secrets",
    "task",
    "workflow",
    "runtime",
)
_ARGUMENT_RE = re.compile(r"\$(" + "|".join(ARGUMENTS) + r")\b")
_EXPRESSION_RE = re.compile(r"^\s*\$\{(.*)\}\s*$", re.DOTALL)
_CACHE_SIZE = 4096
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass(frozen=True, slots=True)
class RawJson:
    """JSON text kept encoded: given as data or as an argument, it goes to jq as it is."""

    text: bytes

    def decode(self) -> Any:
        return orjson.loads(self.text)


@dataclass(frozen=True, slots=True, eq=False)
class CompiledExpression:
    """A compiled runtime expression; ``source`` is the text as written, ``body`` the jq
    program, ``arguments`` the DSL arguments the program uses."""

    source: str
    body: str
    arguments: tuple[str, ...]
    program: Any  # jq's _Program; the binding has no type information
    # The for/catch variables the program uses, bound after the arguments.
    variables: tuple[str, ...] = ()
    # False when the program surely never reads its input (``.``): only variables,
    # literals and operators, as in ``${ $item }``; the data is then not encoded for jq,
    # which in a ``for`` over many items would cost time in proportion to the list.
    uses_input: bool = True


def is_expression(value: object) -> bool:
    """Whether ``value`` is a runtime expression in strict mode: a string wholly ``${ … }``."""
    return isinstance(value, str) and _EXPRESSION_RE.match(value) is not None


def compile_expression(
    text: str, *, implicit: bool = False, variables: Iterable[str] = ()
) -> CompiledExpression:
    """Compile ``text`` (``${ … }``; with ``implicit``, a bare jq program too), cached.
    ``variables`` names the ``for`` / ``catch`` variables in scope (without ``$``); those
    the program uses are bound when it is evaluated.

    Raises ``InvalidSpec`` naming the expression and jq's message when it does not compile,
    and when ``text`` is not ``${ … }`` and ``implicit`` is false.
    """
    match = _EXPRESSION_RE.match(text)
    if match is not None:
        body = match.group(1).strip()
    elif implicit:
        body = text.strip()
    else:
        raise InvalidSpec(
            f"{text!r} is not a runtime expression: write it as ${{ … }}",
            {"expression": text},
        )
    if not body:
        raise InvalidSpec(f"runtime expression {text!r} is empty", {"expression": text})
    names = tuple(sorted({name for name in variables if name not in ARGUMENTS}))
    used = tuple(name for name in names if re.search(rf"\${re.escape(name)}\b", body))
    try:
        program, arguments = _compile(body, used)
    except ValueError as exc:
        message = _compile_error(body, exc, names)
        raise InvalidSpec(
            f"runtime expression {text!r} does not compile: {message}",
            {"expression": text, "reason": message},
        ) from exc
    return CompiledExpression(
        source=text, body=body, arguments=arguments, program=program, variables=used,
        uses_input=_may_read_input(body),
    )


_STRING_RE = re.compile(r'"(?:[^"\\]|\\.)*"')
_WORD_RE = re.compile(r"(?<![$\w])[A-Za-z_][A-Za-z0-9_]*")
# Keywords that read no input by themselves.
_INERT = frozenset({"if", "then", "else", "elif", "end", "and", "or", "true", "false",
                    "null", "as"})


def _may_read_input(body: str) -> bool:
    """Whether a jq program may read its input: it holds a ``.`` (outside strings and
    numbers), a comment, string interpolation, or a name other than a variable or an inert
    keyword (a builtin such as ``length`` reads its input). Conservative: True when unsure."""
    if "#" in body or "\\(" in body:
        return True
    code = _STRING_RE.sub('""', body)
    code = re.sub(r"\d+\.\d*|\.\d+", "0", code)
    if "." in code:
        return True
    return any(word not in _INERT for word in _WORD_RE.findall(code))


@lru_cache(maxsize=_CACHE_SIZE)
def _compile(body: str, variables: tuple[str, ...] = ()) -> tuple[Any, tuple[str, ...]]:
    mentioned = set(_ARGUMENT_RE.findall(body))
    arguments = tuple(name for name in ARGUMENTS if name in mentioned)
    bound = "".join(f", ${name}" for name in (*arguments, *variables))
    # The newline before ")" ends a trailing "# comment" in the body.
    program = jq.compile(f". as [$__ember_data{bound}] | $__ember_data | (\n{body}\n)")
    return program, arguments


def _compile_error(body: str, exc: ValueError, variables: tuple[str, ...] = ()) -> str:
    # jq's message locates the error in the wrapped program; compiling the body alone, with
    # the arguments bound, locates it in what the author wrote.
    try:
        jq.compile(body, args=dict.fromkeys((*ARGUMENTS, *variables)))
    except ValueError as bare:
        exc = bare
    return _jq_message(exc).removeprefix("jq: error: ").rstrip(":")


def _jq_message(exc: Exception) -> str:
    lines = [line.strip() for line in str(exc).splitlines()]
    return next((line for line in lines if line), str(exc))


def evaluate(
    expression: CompiledExpression | str,
    data: Any,
    variables: Mapping[str, Any],
    *,
    instance: str | None = None,
) -> Any:
    """Evaluate ``expression`` on ``data`` (jq's ``.``) with ``variables`` (argument or
    ``for`` / ``catch`` variable name without ``$`` → value; a value or ``data`` may be
    :class:`RawJson`).

    Returns the program's first value, ``None`` when it yields none. Raises
    :class:`WorkflowError` of type ``expression`` (status 400) when it fails at run time or
    uses an argument not available where it is evaluated; ``instance`` defaults to the
    reference of ``variables["task"]``, else ``/``. A string is compiled first (strict),
    with the variables that ``variables`` holds besides the arguments.
    """
    compiled = (
        expression
        if isinstance(expression, CompiledExpression)
        else compile_expression(expression, variables=variables)
    )
    try:
        parts = [encode_json(data) if compiled.uses_input else b"null"]
        for name in (*compiled.arguments, *compiled.variables):
            parts.append(encode_json(variables[name]))
    except KeyError as exc:
        raise _failure(
            compiled, f"${exc.args[0]} is not available here", variables, instance
        ) from None
    except (TypeError, ValueError) as exc:
        raise _failure(compiled, f"a value is not JSON: {exc}", variables, instance) from exc
    text = b"[" + b",".join(parts) + b"]"
    try:
        return next(iter(compiled.program.input_text(text.decode())), None)
    except ValueError as exc:
        raise _failure(compiled, _jq_message(exc), variables, instance) from exc


def _fragment(item: Any) -> Any:
    if isinstance(item, RawJson):  # kept encoded inside a list or an object
        return orjson.Fragment(item.text)
    raise TypeError(f"{type(item).__name__} is not JSON")


def encode_json(value: Any) -> bytes:
    """``value`` as JSON bytes; a :class:`RawJson`, at the top or inside, as it is."""
    if isinstance(value, RawJson):
        return value.text
    try:
        return orjson.dumps(value, default=_fragment,
                            option=orjson.OPT_NON_STR_KEYS | orjson.OPT_PASSTHROUGH_DATACLASS)
    except orjson.JSONEncodeError:
        # orjson stops at 64-bit integers; the standard library does not.
        return json.dumps(value, separators=(",", ":")).encode()


def _failure(
    compiled: CompiledExpression, reason: str, variables: Mapping[str, Any], instance: str | None
) -> WorkflowError:
    if instance is None:
        task = variables.get("task")
        instance = task.get("reference", "/") if isinstance(task, Mapping) else "/"
    return WorkflowError(
        EXPRESSION,
        detail=f"runtime expression {compiled.source!r} failed: {reason}",
        instance=instance,
    )


def evaluate_template(
    value: Any, data: Any, variables: Mapping[str, Any], *, instance: str | None = None
) -> Any:
    """Evaluate every ``${ … }`` string inside ``value`` (dicts and lists, recursively);
    other values are kept. Keys are never evaluated. Returns ``value`` itself when it holds
    no expression. Raises :class:`WorkflowError` as :func:`evaluate` does."""
    return _render(value, lambda text: evaluate(text, data, variables, instance=instance))


def _render(value: Any, evaluate_one: Callable[[str], Any]) -> Any:
    if isinstance(value, str):
        return evaluate_one(value) if is_expression(value) else value
    if isinstance(value, dict):
        rendered = {key: _render(item, evaluate_one) for key, item in value.items()}
        changed = any(rendered[key] is not item for key, item in value.items())
        return rendered if changed else value
    if isinstance(value, list):
        items = [_render(item, evaluate_one) for item in value]
        changed = any(new is not old for new, old in zip(items, value, strict=True))
        return items if changed else value
    return value


def template_expressions(value: Any, path: str = "") -> Iterator[tuple[str, str]]:
    """Each ``${ … }`` string inside ``value`` with its JSON Pointer below ``path``."""
    if isinstance(value, str):
        if is_expression(value):
            yield path or "/", value
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from template_expressions(item, f"{path}/{_escape(str(key))}")
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from template_expressions(item, f"{path}/{index}")


def check_template(value: Any, path: str = "") -> None:
    """Compile every expression inside ``value`` (filling the cache), for deploy time.

    Raises ``InvalidSpec`` naming the expression, jq's message and the node's ``path``.
    """
    for where, text in template_expressions(value, path):
        try:
            compile_expression(text)
        except InvalidSpec as exc:
            raise InvalidSpec(f"{where}: {exc.message}", {**exc.details, "path": where}) from exc


def _escape(token: str) -> str:
    return token.replace("~", "~0").replace("/", "~1")


def datetime_descriptor(moment: datetime) -> dict[str, Any]:
    """The DSL's ``dateTimeDescriptor``: ``iso8601`` (UTC, ``Z``) and ``epoch`` seconds and
    milliseconds. A naive ``moment`` is taken as UTC."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    milliseconds = (moment - _EPOCH) // timedelta(milliseconds=1)
    iso = moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    return {
        "iso8601": iso,
        "epoch": {"seconds": milliseconds // 1000, "milliseconds": milliseconds},
    }


def runtime_descriptor() -> dict[str, Any]:
    """``$runtime``: name ``ember`` and Ember's version."""
    return {"name": "ember", "version": __version__, "metadata": {}}


def workflow_descriptor(
    execution_id: str, definition: Mapping[str, Any], raw_input: Any, started_at: datetime
) -> dict[str, Any]:
    """``$workflow``: the execution's id, the document as parsed, its *raw* input, its start."""
    return {
        "id": execution_id,
        "definition": definition,
        "input": raw_input,
        "startedAt": datetime_descriptor(started_at),
    }


def task_descriptor(
    name: str,
    reference: str,
    definition: Mapping[str, Any],
    raw_input: Any,
    started_at: datetime,
    raw_output: Any = None,
) -> dict[str, Any]:
    """``$task``: name, reference (``/do/1/charge``), definition, *raw* input and output,
    start."""
    return {
        "name": name,
        "reference": reference,
        "definition": definition,
        "input": raw_input,
        "output": raw_output,
        "startedAt": datetime_descriptor(started_at),
    }
