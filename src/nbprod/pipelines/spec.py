"""A pipeline file, read and checked before anything runs.

The YAML names ``params`` and ``steps`` (a mapping, in order). A step is a notebook
(``notebook: train.ipynb``) or a built-in verb (``verb: evaluate``). Values may refer to the
pipeline's parameters and earlier steps' outputs by name: ``${params.data}``, ``${train.model_uri}``,
``${train.metrics.roc_auc}``. A value that is one reference keeps the output's type; a reference
inside a longer string is substituted as text.

Every problem — unknown step, a cycle, an output the step does not produce, an unknown verb or
argument, a step name or key given twice, a notebook that is missing or does not declare a
parameter the step passes, a numeric argument that is not a number in its range — is a
:class:`~nbprod.errors.PipelineError` naming the file and line, raised here, so a bad file changes
nothing. (A number given as ``${params.x}`` is checked with the run's value when it starts
(:func:`check_values`), one from an earlier step's output when the step runs.)
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import PipelineError

__all__ = ["Pipeline", "Step", "load", "VERBS", "OUTPUTS", "NUMBERS", "Number", "references", "check_numbers",
           "check_values"]

REF = re.compile(r"\$\{([^}]*)\}")
NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]*$")

#: verb -> the arguments it takes (``name``/``verb``/``after`` are common to all steps)
VERBS: dict[str, set[str]] = {
    "validate": {"data", "against", "rules"},
    "drift": {"reference", "current", "max_share"},
    "evaluate": {"model", "data", "label", "against", "thresholds"},
    "register": {"model", "alias"},
    "deploy": {"model", "deployment", "smoke_rows", "data", "keep"},
    "canary": {"model", "deployment", "percent", "hold", "gates", "data"},
    "promote": {"deployment"},
    "decommission": {"deployment", "retire", "alias"},
    "wait": {"deployment", "seconds", "requests", "timeout"},
}
#: verb -> outputs (a trailing ``.*`` allows any sub-name, e.g. ``metrics.roc_auc``)
OUTPUTS: dict[str, set[str]] = {
    "notebook": {"run_id", "model_uri", "models", "status", "output", "metrics.*"},
    "validate": {"ok", "failures"},
    "drift": {"drift_share", "n_drifted", "dataset_drift"},
    "evaluate": {"ok", "candidate", "champion", "metrics.*"},
    "register": {"model_uri", "version"},
    "deploy": {"deployment", "url", "model_uri"},
    "canary": {"deployment", "model_uri", "previous_uri", "figures.*"},
    "promote": {"deployment", "model_uri", "previous_uri"},
    "decommission": {"retired"},
    "wait": {"requests", "seconds"},
}
#: what a verb changes (for ``plan``)
CHANGES = {
    "notebook": "runs the notebook as a tracked job (new MLflow run; may register a model version)",
    "validate": "nothing (a gate: stops on a failed report)",
    "drift": "nothing (a gate when max_share is given)",
    "evaluate": "records the evaluation on the candidate version (a gate: stops if it loses or misses thresholds)",
    "register": "sets an alias on the model version",
    "deploy": "starts a deployment (staging), sends smoke requests",
    "canary": "adds the version as a canary of a live deployment; rolled back if a gate fails",
    "promote": "sends 100 % of the deployment's traffic to the canary, sets @champion",
    "decommission": "stops a deployment and/or moves the old version's alias",
    "wait": "nothing (waits for time or requests)",
}
COMMON = {"verb", "notebook", "after", "parameters", "outputs", "timeout_s"}


@dataclass(frozen=True)
class Number:
    """What a numeric argument takes: ``low``..``high``, each end included unless ``*_open``;
    ``whole``: an integer. ``example`` is a line of YAML the fix shows."""

    example: str
    low: float | None = None
    high: float | None = None
    low_open: bool = False
    high_open: bool = False
    whole: bool = False

    def __str__(self) -> str:
        kind = "a whole number" if self.whole else "a number"
        if self.low is not None and self.high is not None:
            if self.low_open and self.high_open:
                return f"{kind} between {self.low:g} and {self.high:g} (exclusive)"
            return f"{kind} from {self.low:g} to {self.high:g}"
        if self.low is not None:
            return f"{kind} {'>' if self.low_open else '>='} {self.low:g}"
        return kind

    def holds(self, n: float) -> bool:
        return ((self.low is None or (n > self.low if self.low_open else n >= self.low))
                and (self.high is None or (n < self.high if self.high_open else n <= self.high)))


#: step kind ("*": every step) -> its numeric arguments; ``hold.requests``: the key under a mapping
#: argument, whose keys are exactly those listed (:data:`MAPPINGS`)
NUMBERS: dict[str, dict[str, Number]] = {
    "*": {"timeout_s": Number("timeout_s: 600", 0, low_open=True)},
    "drift": {"max_share": Number("max_share: 0.3", 0, 1)},
    "deploy": {"smoke_rows": Number("smoke_rows: 5", 0, whole=True)},
    "canary": {"percent": Number("percent: 5", 0, 100, low_open=True, high_open=True),
               "hold.seconds": Number("hold: {seconds: 60}", 0),
               "hold.requests": Number("hold: {requests: 200}", 0, whole=True),
               "hold.timeout": Number("hold: {requests: 200, timeout: 600}", 0, low_open=True),
               "gates.p95_ms": Number("gates: {p95_ms: 250}", 0, low_open=True),
               "gates.error_rate": Number("gates: {error_rate: 0.01}", 0, 1),
               "gates.accuracy": Number("gates: {accuracy: 0.8}", 0, 1)},
    "wait": {"seconds": Number("seconds: 60", 0), "requests": Number("requests: 200", 0, whole=True),
             "timeout": Number("timeout: 600", 0, low_open=True)},
}
#: (step kind, argument) -> what that mapping argument holds (its keys: :data:`NUMBERS`)
MAPPINGS = {("canary", "hold"): "how long the canary runs before its gates are checked",
            ("canary", "gates"): "limits on the canary's own live figures"}


@dataclass
class Step:
    name: str
    kind: str  # "notebook" or a verb
    args: dict[str, Any]
    line: int
    after: list[str] = field(default_factory=list)
    lines: dict[str, int] = field(default_factory=dict)

    @property
    def needs(self) -> list[str]:
        """The steps this one depends on: ``after`` plus every step its values refer to."""
        found = list(self.after)
        for text in _strings(self.args):
            for ref in REF.findall(text):
                head = ref.split(".", 1)[0]
                if head not in ("params", "pipeline") and head not in found:
                    found.append(head)
        return found


@dataclass
class Pipeline:
    name: str
    path: Path
    params: dict[str, Any]
    steps: list[Step]  # in run order
    schedule: str | None = None
    text: str = ""
    folder: Path = field(init=False)

    def __post_init__(self) -> None:
        # fixed when the file is read: its relative paths mean the files beside it (:mod:`.paths`),
        # whatever the working directory later becomes
        self.folder = Path(self.path).resolve().parent

    def step(self, name: str) -> Step:
        return next(s for s in self.steps if s.name == name)


def _strings(value: Any):
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for v in value.values():
            yield from _strings(v)
    elif isinstance(value, list):
        for v in value:
            yield from _strings(v)


def _with_lines(text: str, path: Path):
    """Parse YAML keeping each mapping key's line (1-based) as ``{"__lines__": {key: line}}``; a key
    given twice in one mapping (PyYAML keeps the last one silently) is kept as
    ``{"__twice__": [(key, first line, second line), …]}`` for :func:`_refuse_twice` to name."""
    import yaml

    class Loader(yaml.SafeLoader):
        pass

    def mapping(loader, node):
        out: dict[Any, Any] = {}
        lines: dict[Any, int] = {}
        twice: list[tuple[Any, int, int]] = []
        for key_node, value_node in node.value:
            key = loader.construct_object(key_node, deep=True)
            line = key_node.start_mark.line + 1
            if key in lines:
                twice.append((key, lines[key], line))
            out[key] = loader.construct_object(value_node, deep=True)
            lines.setdefault(key, line)
        out["__lines__"] = lines
        if twice:
            out["__twice__"] = twice
        return out

    Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, mapping)
    try:
        return yaml.load(text, Loader=Loader)  # noqa: S506 - SafeLoader subclass
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark is not None else None
        raise PipelineError(f"{path}:{line or '?'}: not valid YAML: {getattr(exc, 'problem', exc)}",
                            "fix the YAML syntax at that line", line=line) from None


def _refuse_twice(value: Any, path: Path, where: tuple = ()) -> None:
    """The first key given twice in one mapping, anywhere in the file, as an error at its second line."""
    if isinstance(value, list):
        for item in value:
            _refuse_twice(item, path, where)
        return
    if not isinstance(value, dict):
        return
    for key, first, line in value.get("__twice__", []):
        if where == ("steps",):
            what = f"step {key!r}"
        elif where == ("params",):
            what = f"parameter {key!r}"
        elif where[:1] == ("steps",):
            what = f"step {where[1]!r}: {'.'.join(map(str, (*where[2:], key)))!r}"
        else:
            what = repr(".".join(map(str, (*where, key))))
        raise _err(path, line, f"{what} is given twice (lines {first} and {line}); the second would silently "
                   "replace the first", "give each name once: rename one of them, or merge the two")
    for key, item in value.items():
        if key not in ("__lines__", "__twice__"):
            _refuse_twice(item, path, (*where, key))


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items() if k not in ("__lines__", "__twice__")}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


def _err(path: Path, line: int | None, problem: str, fix: str) -> PipelineError:
    return PipelineError(f"{path}:{line or '?'}: {problem}", fix, line=line)


def load(path: str | Path) -> Pipeline:
    """Read and check ``path``; a :class:`PipelineError` naming the line for anything wrong."""
    path = Path(path)
    if not path.is_file():
        raise PipelineError(f"no pipeline file at {path}", "pass the path of a pipeline .yaml file")
    text = path.read_text()
    doc = _with_lines(text, path)
    if not isinstance(doc, dict):
        raise _err(path, 1, "a pipeline file is a mapping with `steps:`", "see notebooks/pipeline.yaml")
    _refuse_twice(doc, path)
    top = doc["__lines__"]
    unknown = set(top) - {"name", "params", "steps", "schedule", "description"}
    if unknown:
        key = sorted(unknown)[0]
        raise _err(path, top[key], f"unknown key {key!r}", "use name, description, params, steps, schedule")
    raw_steps = doc.get("steps")
    if not isinstance(raw_steps, dict) or len(raw_steps) <= 1:
        raise _err(path, top.get("steps", 1), "`steps:` must map step names to steps",
                   "name each step and give it a notebook or a verb, e.g. `steps: {train: {notebook: train.ipynb}}` "
                   "(see notebooks/pipeline.yaml)")
    schedule = doc.get("schedule")
    if schedule is not None:
        from .cron import parse

        try:
            parse(str(schedule))
        except ValueError as exc:
            raise _err(path, top["schedule"], f"schedule {schedule!r}: {exc}",
                       'use five cron fields, e.g. "0 3 * * 1" (Mondays at 03:00)') from None
    params = _plain(doc.get("params") or {})
    if not isinstance(params, dict):
        raise _err(path, top.get("params"), "`params:` must be a mapping",
                   "e.g. `params: {data: new.parquet}`, or a `data: new.parquet` line under `params:`")
    step_lines = raw_steps["__lines__"]
    steps: list[Step] = []
    for name, body in raw_steps.items():
        if name == "__lines__":
            continue
        line = step_lines[name]
        if not isinstance(name, str) or not NAME.match(name) or name in ("params", "pipeline"):
            raise _err(path, line, f"bad step name {name!r}", "use letters, digits, _ and -; not params/pipeline")
        if not isinstance(body, dict):
            raise _err(path, line, f"step {name!r} must be a mapping", "give it `verb:` or `notebook:`")
        lines = dict(body["__lines__"])
        if ("verb" in body) == ("notebook" in body):
            raise _err(path, line, f"step {name!r} needs exactly one of `verb:` or `notebook:`",
                       f"built-in verbs: {', '.join(VERBS)}")
        kind = "notebook" if "notebook" in body else body["verb"]
        if kind not in VERBS and kind != "notebook":
            raise _err(path, lines["verb"], f"step {name!r}: unknown verb {kind!r}",
                       f"use a notebook step or one of: {', '.join(VERBS)}")
        allowed = COMMON | (VERBS.get(kind) or set())
        for key in body["__lines__"]:
            if key not in allowed:
                raise _err(path, lines[key], f"step {name!r} ({kind}): unknown argument {key!r}",
                           f"{kind} takes: {', '.join(sorted((VERBS.get(kind) or set()) | {'after'}))}"
                           if kind != "notebook" else "a notebook step takes notebook, parameters, outputs, after")
        for key, value in body.items():  # a nested mapping's keys by dotted name: `parameters.seed`
            if isinstance(value, dict) and key != "__lines__":
                lines.update({f"{key}.{sub}": at for sub, at in value["__lines__"].items()})
        args = _plain(body)
        after = args.pop("after", [])
        after = [after] if isinstance(after, str) else list(after)
        args.pop("verb", None)
        steps.append(Step(name, kind, args, line, after, lines))
    pipeline = Pipeline(str(doc.get("name") or path.stem), path, params, _order(steps, path), schedule, text)
    _check_refs(pipeline)
    for s in pipeline.steps:
        s.args = check_numbers(s, s.args, path)
        if s.kind == "notebook":
            _check_notebook(pipeline, s)
    return pipeline


def _order(steps: list[Step], path: Path) -> list[Step]:
    """Topological order, ties in file order; a cycle or an unknown step names its line."""
    by_name = {s.name: s for s in steps}
    for s in steps:
        for need in s.needs:
            if need not in by_name:
                line = _line_of(s, need)
                raise _err(path, line, f"step {s.name!r} refers to unknown step {need!r}",
                           f"steps are: {', '.join(by_name)}; parameters are ${{params.NAME}}")
    done: list[Step] = []
    placed: set[str] = set()
    visiting: list[str] = []

    def visit(s: Step) -> None:
        if s.name in placed:
            return
        if s.name in visiting:
            cycle = visiting[visiting.index(s.name):] + [s.name]
            raise _err(path, s.line, f"steps form a cycle: {' -> '.join(cycle)}",
                       "a step can only use outputs of steps that run before it")
        visiting.append(s.name)
        for need in s.needs:
            visit(by_name[need])
        visiting.pop()
        placed.add(s.name)
        done.append(s)

    for s in steps:
        visit(s)
    return done


def _line_of(step: Step, needle: str) -> int:
    for key, value in step.args.items():
        if any(needle in t for t in _strings(value)):
            return step.lines.get(key, step.line)
    return step.lines.get("after", step.line)


def references(value: Any) -> list[str]:
    return [r for t in _strings(value) for r in REF.findall(t)]


def _check_refs(p: Pipeline) -> None:
    by_name = {s.name: s for s in p.steps}
    for s in p.steps:
        declared = s.args.get("outputs")
        for ref in references(s.args):
            head, _, rest = ref.partition(".")
            line = _line_of(s, "${" + ref + "}")
            if head == "params":
                if rest not in p.params:
                    raise _err(p.path, line, f"step {s.name!r}: no parameter {rest!r}",
                               f"add it under params: (known: {', '.join(p.params) or 'none'})")
                continue
            if head == "pipeline":
                if rest not in ("run_id", "name"):
                    raise _err(p.path, line, f"step {s.name!r}: ${{pipeline.{rest}}} is unknown",
                               "use ${pipeline.run_id} or ${pipeline.name}")
                continue
            source = by_name[head]
            if not _produces(source, rest):
                outs = sorted(source.args.get("outputs") or OUTPUTS[source.kind])
                raise _err(p.path, line, f"step {s.name!r} uses {ref!r}, an output step {head!r} "
                           f"({source.kind}) does not produce", f"outputs of {head!r}: {', '.join(outs)}")
        del declared


def _produces(step: Step, output: str) -> bool:
    declared = step.args.get("outputs")
    names = set(declared) if isinstance(declared, list) else OUTPUTS[step.kind]
    if output in names:
        return True
    return any(n.endswith(".*") and output.startswith(n[:-1]) and len(output) > len(n) - 1 for n in names)


def _check_notebook(p: Pipeline, s: Step) -> None:
    """A notebook step's notebook is there and reads as one, and, when it has a ``parameters`` cell,
    declares every parameter the step passes: the rule of ``nbprod run -p``
    (:func:`nbprod.jobs.prepare.check_parameters`). Only the names count (a value may be a
    ``${…}`` still to substitute). A notebook without that cell gets the values injected at the top,
    as a job does (which says, when it runs, which of them the notebook ignores)."""
    from ..errors import JobError
    from ..jobs.params import declared, has_parameters_cell, read_notebook
    from .paths import notebook

    value, line = s.args.get("notebook"), s.lines.get("notebook", s.line)
    given = s.args.get("parameters")
    if given is not None and not isinstance(given, dict) and not _whole_ref(given):
        raise _err(p.path, s.lines.get("parameters", line),
                   f"step {s.name!r}: `parameters:` must map the notebook's parameter names to values, got {given!r}",
                   "e.g. `parameters: {seed: 3, C: ${params.C}}`")
    if not isinstance(value, str) or not value.strip():
        raise _err(p.path, line, f"step {s.name!r}: `notebook:` must be the path of a notebook, got {value!r}",
                   "e.g. `notebook: train.ipynb` (a relative path is the file beside the pipeline file)")
    if REF.search(value):
        return  # named by a parameter or an output: read when the step runs
    path = notebook(value, p.folder)
    if not path.is_file():
        raise _err(p.path, line, f"step {s.name!r}: no notebook at {path}",
                   "correct the path (a relative one is the file beside the pipeline file)")
    if path.suffix != ".ipynb":
        raise _err(p.path, line, f"step {s.name!r}: {path} is not a notebook (.ipynb)", "name a Jupyter notebook file")
    try:
        nb = read_notebook(path)
    except JobError as exc:
        raise _err(p.path, line, f"step {s.name!r}: {exc.problem}", exc.fix or "pass a valid .ipynb file") from None
    if not isinstance(given, dict) or not given or not has_parameters_cell(nb):
        return
    try:
        names = [x.name for x in declared(nb)]
    except ValueError:  # papermill cannot read this notebook's language: the job checks when it runs
        return
    unknown = [k for k in given if k not in names]
    if unknown:
        raise _err(p.path, s.lines.get(f"parameters.{unknown[0]}", s.lines.get("parameters", line)),
                   f"step {s.name!r}: {value} declares no parameter {', '.join(map(repr, unknown))}",
                   f"use the parameters it declares: {', '.join(names) or '(none)'} (see `nbprod inspect {path}`), "
                   "or add it to the notebook's 'parameters' cell")


def _whole_ref(value: Any) -> bool:
    """``value`` is one ``${…}`` reference, substituted (keeping its type) when the step runs."""
    return isinstance(value, str) and REF.fullmatch(value.strip()) is not None


def _as_number(value: Any) -> float | int | None:
    """``value`` as a finite number, or None: YAML numbers, and text that reads as one (PyYAML reads
    ``1e3`` as text); a bool is not a number."""
    if isinstance(value, bool):
        return None
    if isinstance(value, str):
        try:
            value = float(value.strip())
        except ValueError:
            return None
    if not isinstance(value, (int, float)) or not math.isfinite(value):
        return None
    return value


def check_numbers(step: Step, args: dict, path: Path, *, final: bool = False) -> dict:
    """``args`` (the step's, or once substituted) with each numeric argument (:data:`NUMBERS`) a number
    in its range — numeric text read as the number — and each gate and threshold known; anything
    else is a :class:`PipelineError` at its line. A ``${…}`` value is left for later unless ``final``
    (the arguments the step is about to run with)."""
    specs = {**NUMBERS["*"], **NUMBERS.get(step.kind, {})}
    out = dict(args)
    where = f"step {step.name!r} ({step.kind})"

    def later(value: Any) -> bool:
        return not final and isinstance(value, str) and REF.search(value) is not None

    def given(key: str, value: Any) -> str:  # what the file says, and what it became
        raw: Any = step.args
        for part in key.split("."):
            raw = raw.get(part) if isinstance(raw, dict) else None
        return f"{value!r}" if raw is None or raw == value else f"{value!r} (from {raw})"

    def number(key: str, value: Any) -> Any:
        spec = specs[key]
        n = _as_number(value)
        if n is not None and spec.whole and float(n).is_integer():
            n = int(n)
        if n is None or (spec.whole and not isinstance(n, int)) or not spec.holds(n):
            raise _err(path, step.lines.get(key, step.line), f"{where}: {key} must be {spec}, got {given(key, value)}",
                       f"e.g. `{spec.example}`")
        return n

    for key in specs:
        if "." not in key and out.get(key) is not None and not later(out[key]):
            out[key] = number(key, out[key])
    for (kind, name), what in MAPPINGS.items():
        value = out.get(name)
        if kind != step.kind or value is None or later(value):
            continue
        keys = sorted(k.split(".", 1)[1] for k in specs if k.startswith(name + "."))
        if not isinstance(value, dict):
            raise _err(path, step.lines.get(name, step.line),
                       f"{where}: {name} must map {', '.join(keys)} to numbers, got {given(name, value)}",
                       f"e.g. `{specs[f'{name}.{keys[0]}'].example}`")
        value = dict(value)
        for sub in value:
            if sub not in keys:
                raise _err(path, step.lines.get(f"{name}.{sub}", step.lines.get(name, step.line)),
                           f"{where}: {name}: unknown {sub!r}", f"{name} takes {', '.join(keys)} ({what})")
            if value[sub] is not None and not later(value[sub]):
                value[sub] = number(f"{name}.{sub}", value[sub])
        out[name] = value
    thresholds = out.get("thresholds")
    if step.kind == "evaluate" and thresholds is not None and (final or not references(thresholds)):
        from ..errors import EvaluationError
        from ..registry.evaluate import check_thresholds  # the evaluate verb's own check, run here earlier

        try:
            check_thresholds(thresholds)
        except EvaluationError as exc:
            raise _err(path, step.lines.get("thresholds", step.line), f"{where}: {exc.problem}",
                       exc.fix or "e.g. `thresholds: {roc_auc: {min_absolute_change: 0}}`") from None
    return out


def check_values(p: Pipeline, params: dict) -> None:
    """The numeric arguments again with the run's parameters in place of ``${params.NAME}`` (a value
    given with ``-p`` is checked before anything runs); outputs of steps are checked as each step runs."""
    def given(value: Any) -> Any:
        if isinstance(value, dict):
            return {k: given(v) for k, v in value.items()}
        whole = REF.fullmatch(value.strip()) if isinstance(value, str) else None
        head, _, name = whole.group(1).partition(".") if whole else ("", "", "")
        return params[name] if head == "params" and name in params else value

    for s in p.steps:
        check_numbers(s, given(s.args), p.path)
