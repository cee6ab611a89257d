"""Verbs of the registry capability (see nbprod.commands): register, models, alias, evaluate."""

from __future__ import annotations

from pathlib import Path

from ..errors import RegistrationError
from . import Command, UsageProblem, read_frame

__all__ = ["COMMANDS"]


def _pairs(items: list[str] | None, what: str) -> dict[str, str]:
    out = {}
    for item in items or []:
        key, eq, value = item.partition("=")
        if not eq or not key:
            raise UsageProblem(f"cannot read {what} {item!r}", f"write {what}s as key=value, e.g. auc=0.91")
        out[key] = value
    return out


def _data(tokens: list[str], ctx, *, need_y: bool):
    """``X`` and ``y`` from ``--data X [y]``; ``y`` may also name a column of X (it is split off)."""
    if not tokens or len(tokens) > 2:
        raise UsageProblem(f"--data takes X and optionally y, got {len(tokens or [])} value(s)",
                           "write --data X_train y_train")
    X = ctx.frame(tokens[0])
    y = None
    if len(tokens) == 2:
        token = tokens[1]
        y = ctx.lookup(token)
        if y is None:
            if hasattr(X, "columns") and token in X.columns:
                y = X[token]
                X = X.drop(columns=[token])
            else:
                if not Path(token).exists() and hasattr(X, "columns") and not Path(token).suffix:
                    where = "a variable, " if ctx.namespace is not None else ""
                    raise UsageProblem(f"{token!r} is not {where}a column of {tokens[0]} or a file",
                                       f"name its label column ({', '.join(map(str, X.columns[:12]))}"
                                       f"{', …' if len(X.columns) > 12 else ''}) or a one-column labels file")
                frame = read_frame(token, in_notebook=ctx.namespace is not None)
                y = frame.iloc[:, 0] if frame.shape[1] == 1 else None
                if y is None:
                    raise UsageProblem(f"labels file {token} has {frame.shape[1]} columns",
                                       "give a one-column file, or a column name of X")
    if need_y and y is None:
        raise UsageProblem("evaluation needs labels", "write --data X_test y_test (y may be a column name of X)")
    return X, y


def _model(token: str, ctx):
    value = ctx.lookup(token)
    if value is not None:
        return value
    if Path(token).exists():
        return token  # a .skops/.pkl/.joblib file or an MLflow model directory; register() reads it
    where = "no notebook variable and no file" if ctx.namespace is not None else "no file"
    raise RegistrationError(f"{where} called {token!r}",
                            "pass a fitted model variable (notebook) or a .skops/.pkl/.joblib file "
                            "or MLflow model directory (CLI)")


def _register_args(p) -> None:
    p.add_argument("model",
                   help="fitted model variable; in a shell a .skops/.pkl/.joblib file or an MLflow model directory")
    p.add_argument("--name", required=True, help="registered model name: letters, digits, '.', '_', '-'")
    p.add_argument("--data", nargs="+", required=True, metavar="X_OR_Y",
                   help="training frame (variable or file) and optional labels")
    p.add_argument("--metrics", nargs="*", default=[], metavar="K=V", help="metrics to record, e.g. auc=0.91")
    p.add_argument("--params", nargs="*", default=[], metavar="K=V", help="parameters to record")
    p.add_argument("--alias", help="alias to point at the new version, e.g. challenger")
    p.add_argument("--description", help="free-text description of the version")


def _register(args, ctx):
    from ..registry import register

    model = _model(args.model, ctx)
    X, y = _data(args.data, ctx, need_y=False)
    metrics = _pairs(args.metrics, "metric")
    return register(model, args.name, X, y, metrics=metrics, params=_pairs(args.params, "param"),
                    alias=args.alias, description=args.description)


def _models(args, ctx):
    from ..registry import models

    table = models(args.name)
    if ctx.front_end == "magic":  # in a notebook: the same table, with the deployments' buttons below it
        from ..widgets import ModelsPanel

        return ModelsPanel(table, args.name)
    return table


def _alias_args(p) -> None:
    p.add_argument("target", help="model URI (credit-risk/3, credit-risk@challenger) — or the model name with --delete")
    p.add_argument("alias", help="alias to set, move or delete (e.g. champion)")
    p.add_argument("--delete", action="store_true", help="delete the alias instead of setting it")


def _alias(args, ctx):
    from ..registry import delete_alias, set_alias

    if args.delete:
        return delete_alias(args.target, args.alias)
    return set_alias(args.target, args.alias)


def _evaluate_args(p) -> None:
    p.add_argument("candidate", help="candidate model URI, e.g. credit-risk@challenger")
    p.add_argument("--data", nargs="+", required=True, metavar="X_OR_Y",
                   help="evaluation frame and labels (y may be a column of X)")
    p.add_argument("--against", default="@champion",
                   help="version to beat: '@alias', a URI, or 'none' (default @champion)")
    p.add_argument("--threshold", nargs="*", default=[], metavar="METRIC:KEY=V",
                   help="e.g. roc_auc:min_absolute_change=0 accuracy:threshold=0.8 (keys: threshold, "
                        "min_absolute_change, min_relative_change, greater_is_better)")
    p.add_argument("--task", choices=["classification", "regression"],
                   help="which metrics to compute "
                        "(default: from the model; e.g. a regressor trained on integer targets)")


def _evaluate(args, ctx):
    from ..registry import evaluate, parse_thresholds

    X, y = _data(args.data, ctx, need_y=True)
    against = None if str(args.against).lower() in ("none", "") else args.against
    return evaluate(args.candidate, X, y, against=against, thresholds=parse_thresholds(args.threshold),
                    task=args.task)


def _models_args(p) -> None:
    p.add_argument("name", nargs="?", default=None, help="only this model")


COMMANDS = [
    Command(
        name="register", help="register a fitted model with its training profile, lineage and manifest",
        arguments=_register_args, run=_register,
        examples=["%nbprod register model --name credit-risk --data X_train y_train --metrics auc=0.91 "
                  "--alias challenger",
                  "nbprod register model.skops --name credit-risk --data train.parquet default"],
    ),
    Command(
        name="models", help="table of registered models: versions, aliases, key metrics, creator, training data",
        arguments=_models_args,
        run=_models, examples=["%nbprod models", "nbprod models credit-risk"],
    ),
    Command(
        name="alias", help="point an alias (champion, challenger, …) at a version, or delete it",
        arguments=_alias_args, run=_alias,
        examples=["%nbprod alias credit-risk/3 champion", "nbprod alias --delete credit-risk challenger"],
    ),
    Command(
        name="evaluate", help="score a candidate and the champion on the same data and check thresholds",
        arguments=_evaluate_args, run=_evaluate,
        examples=["%nbprod evaluate credit-risk@challenger --data X_test y_test "
                  "--threshold roc_auc:min_absolute_change=0",
                  "nbprod evaluate credit-risk/4 --data test.parquet default --threshold accuracy:threshold=0.8"],
    ),
]
