"""Verbs of the data capability: ``validate``, ``profile`` and ``expect`` (see nbprod.commands).

Each ``run`` reads the frame (a notebook variable or a data file), calls the library API and
returns its result: a :class:`~nbprod.data.profile.Profile` or a
:class:`~nbprod.data.validate.ValidationReport` (whose ``ok`` sets the CLI's exit status).
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from . import Command, Context, UsageProblem
from .batch import add_dask_argument, data_on

__all__ = ["COMMANDS"]


def _against(token: str, ctx: Context) -> Any:
    """A notebook variable (Profile, Rules, dict) if one has that name, else the text (path or URI)."""
    value = ctx.lookup(token)
    return token if value is None else value


def _rules(token: str, ctx: Context) -> Any:
    """A Rules/dict notebook variable called ``token``, else the rules read from that YAML file."""
    from ..data.rules import Rules
    from ..errors import RuleError

    value = ctx.lookup(token)
    if value is not None:
        return value
    path = Path(token).expanduser()
    if not path.is_file():
        if ctx.namespace is not None:
            raise RuleError(f"no variable and no file called {token!r}",
                            "pass a Rules (or dict) variable or the path of a .yaml rules file")
        raise RuleError(f"no file called {token!r}", "pass the path of a .yaml rules file")
    return Rules.load(path)


def _validate(args: argparse.Namespace, ctx: Context):
    from ..data.profile import profile
    from ..data.validate import NO_SUCH_AGAINST
    from ..errors import ModelNotFoundError
    from ..registry.against import validate

    if args.tolerance is not None and args.against is None:
        raise UsageProblem("--tolerance widens a profile's seen range, and no --against profile was given",
                           "add --against PROFILE, or drop --tolerance")
    if args.null_tolerance is not None and args.against is None:
        raise UsageProblem("--null-tolerance widens a profile's share of missing values, and no --against profile "
                           "was given", "add --against PROFILE, or drop --null-tolerance")
    if args.dask:  # a parquet path (or a notebook's dask frame), partition by partition on Dask
        with data_on(args, ctx, args.data) as ddf:
            rules = _rules(args.rules, ctx) if args.rules else None
            if args.against is None and rules is None:
                return profile(ddf, key=args.key)
            against = None if args.against is None else _against(args.against, ctx)
            return validate(ddf, against, rules=rules, key=args.key, tolerance=args.tolerance,
                            null_tolerance=args.null_tolerance)
    df = _frame_naming_every_unknown(args, ctx)
    rules = None
    if args.rules:
        rules = _rules(args.rules, ctx)
    if args.against is None and rules is None:
        return profile(df, key=args.key)
    against = None if args.against is None else _against(args.against, ctx)
    label = None
    try:
        text_file = _text_file(args.data, ctx)
        if against is not None and text_file:
            # text files hold times as ISO strings: read them as the profile's datetimes
            from ..data.validate import parse_profiled_dates
            from ..registry.against import resolve_against

            resolved, resolved_rules, label = resolve_against(against)
            if resolved is not None:
                df = parse_profiled_dates(df, resolved)
            against = resolved if resolved is not None else resolved_rules
        if text_file:  # and as the rules' datetimes
            df = _rule_dates(df, against, rules)
        report = validate(df, against, rules=rules, key=args.key, tolerance=args.tolerance,
                          null_tolerance=args.null_tolerance)
    except ModelNotFoundError as exc:
        if ctx.namespace is None or exc.problem != NO_SUCH_AGAINST.format(args.against):
            raise
        raise ModelNotFoundError(f"no variable, profile file or registered model called {args.against!r}",
                                 "pass a Profile variable, a profile .json path, a rules .yaml path or a model URI "
                                 "such as 'name@champion'") from None
    if label is not None:
        report.against = label
    return report


def _text_file(token: str, ctx: Context) -> bool:
    """Is the data a .csv or .json file (whose times are ISO strings), not a notebook variable?"""
    return Path(token).suffix.lower() in (".csv", ".json") and ctx.lookup(token) is None


def _rule_dates(df, *candidates: Any):
    """``df`` with the text columns that the rules among ``candidates`` (Rules or a dict of rules;
    anything else is skipped) treat as times parsed (:func:`~nbprod.data.rules.parse_rule_dates`)."""
    from ..data.rules import Rules, parse_rule_dates

    for rules in candidates:
        if isinstance(rules, dict):
            rules = Rules.from_dict(rules)
        if isinstance(rules, Rules):
            df = parse_rule_dates(df, rules)
    return df


def _frame_naming_every_unknown(args: argparse.Namespace, ctx: Context):
    """The data frame; when it is unknown and ``--against`` is unknown too, one error names both
    (fixing one typo only to meet the next is a wasted cell run)."""
    from ..errors import DataError, NbprodError

    try:
        return ctx.frame(args.data)
    except DataError as exc:
        if args.against is None or ctx.lookup(args.against) is not None:
            raise
        from ..registry.against import resolve_against

        try:
            resolve_against(args.against)
        except NbprodError as other:
            problem = other.problem
            if ctx.namespace is not None and problem.startswith("no profile file and no registered model"):
                problem = f"no variable, profile file or registered model called {args.against!r}"
            raise DataError(f"{exc.problem}; and --against: {problem}",
                            f"{exc.fix}; for --against, {other.fix}") from None
        raise


_DATA_HELP = ("a DataFrame variable (notebook) or a .parquet/.csv/.json/.feather file; quote an expression: "
              "\"df[['a', 'b']]\"")


def _validate_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("data", help=_DATA_HELP)
    add_dask_argument(p)
    p.add_argument("--against", metavar="PROFILE",
                   help="a Profile variable, a profile .json, a rules .yaml or a model URI (name@champion, "
                        "models:/name/3); without it the data is profiled and the profile shown")
    p.add_argument("--rules", metavar="RULES", help="extra rules: a Rules/dict variable or a .yaml file")
    p.add_argument("--key", nargs="+", metavar="COL", help="column(s) that must be unique together")
    p.add_argument("--tolerance", type=float, metavar="X",
                   help="with --against: widen the seen range by this fraction of its span (default: the "
                        "range_tolerance option)")
    p.add_argument("--null-tolerance", type=float, metavar="X",
                   help="with --against: a column fails when its share of missing values is more than X above the "
                        "training share (default: the null_tolerance option, 0.05)")


def _profile(args: argparse.Namespace, ctx: Context):
    from ..data.profile import profile
    with data_on(args, ctx, args.data) as df:  # with --dask: partition by partition on Dask
        result = profile(df, key=args.key, sample_size=args.sample_size, top_k=args.top_k,
                         n_quantiles=args.quantiles)
    if args.output:
        result.save(args.output)
    return result


def _profile_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("data", help=_DATA_HELP)
    add_dask_argument(p)
    p.add_argument("-o", "--output", metavar="PATH", help="also write the profile as JSON to PATH")
    p.add_argument("--key", nargs="+", metavar="COL", help="column(s) identifying a row")
    p.add_argument("--sample-size", type=int, metavar="N",
                   help="rows in the reservoir sample (default: sample_size option)")
    p.add_argument("--top-k", type=int, metavar="K", help="categories kept per column (default: top_k option)")
    p.add_argument("--quantiles", type=int, metavar="N",
                   help="quantile bins per numeric column (default: n_quantiles option)")


def _expect(args: argparse.Namespace, ctx: Context):
    from ..data.rules import Rules
    from ..data.validate import validate

    if ctx.cell is not None and ctx.cell.strip() and args.rules:
        raise UsageProblem("give the rules either in the cell body or with --rules, not both",
                           "drop --rules, or leave the cell body empty")
    if ctx.cell is not None and ctx.cell.strip():
        rules = Rules.from_yaml(ctx.cell)
    elif args.rules:
        rules = _rules(args.rules, ctx)
    else:
        raise UsageProblem("no rules given",
                           "write YAML rules in a %%nbprod expect cell body, or pass --rules rules.yaml")
    df = ctx.frame(args.data)
    if _text_file(args.data, ctx):  # times in text files are ISO strings: read them as the rules' datetimes
        df = _rule_dates(df, rules)
    return validate(df, rules=rules, key=args.key)


def _expect_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("data", help=_DATA_HELP)
    p.add_argument("--rules", metavar="RULES", help="a rules .yaml file (or a Rules variable); in a notebook, "
                                                    "write the YAML in the %%%%nbprod expect cell instead")
    p.add_argument("--key", nargs="+", metavar="COL", help="column(s) that must be unique together")


COMMANDS = [
    Command(
        name="validate",
        help="validate data against a training profile, rules or a model; without --against, profile it",
        description="Check a frame against a training profile (dtype, nulls, seen range, categories, duplicate "
                    "keys), collecting every failure with counts and example rows. Without --against (and "
                    "--rules) the data is profiled instead. The CLI exits 1 when validation fails.",
        arguments=_validate_arguments,
        run=_validate,
        examples=["%nbprod validate df --against prof", "%nbprod validate df --against credit-risk@champion",
                  "nbprod validate data.parquet --against profile.json --tolerance 0.05"],
    ),
    Command(
        name="profile",
        help="profile data: dtypes, null rates, ranges, quantiles, categories, a row sample",
        arguments=_profile_arguments,
        run=_profile,
        examples=["prof = %nbprod profile df", "nbprod profile train.parquet -o profile.json --key id"],
    ),
    Command(
        name="expect",
        help="validate data against YAML rules (the %%nbprod expect cell body, or --rules FILE)",
        description="Validate a frame against hand-written rules: per column dtype, min, max, nullable, in "
                    "(allowed values), unique. The CLI exits 1 when a rule fails.",
        arguments=_expect_arguments,
        run=_expect,
        cell_body="YAML, one column per line, e.g. `income: {min: 0, nullable: false}` / `country: {in: [DE, FR, US]}`",
        examples=["%%nbprod expect df      (then, in the cell: income: {min: 0, nullable: false})",
                  "nbprod expect data.csv --rules rules.yaml"],
    ),
]
