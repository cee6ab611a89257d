"""``nbprod.validate``: validation (nbprod.data) against a registered model's training profile.

nbprod.data checks frames and sits below the registry, so it does not read registered profiles
itself; :func:`validate` is the data check with the registry's :func:`model_profile` plugged in,
which is what ``nbprod.validate`` and ``nbprod validate --against credit@champion`` run.
"""

from __future__ import annotations

from typing import Any

from .._files import sqlite_path
from ..config import settings
from ..errors import DataError, ModelNotFoundError
from .versions import load_profile

__all__ = ["validate", "resolve_against", "model_profile"]

_AGAINST_FIX = ("pass a Profile, a profile .json path, a rules .yaml path or a model URI such as 'name@champion' "
                "(nbprod.registry lists the registered models)")


def _no_model_store() -> bool:
    """True when the registry is the default SQLite store and it does not exist yet (so it holds no
    model, and asking it would create it)."""
    path = sqlite_path(settings.registry_uri)
    return path is not None and not path.exists()


def model_profile(uri: str):
    """The training profile registered with the model ``uri``; a bare name that is no registered
    model (nor a file) gets ``NO_SUCH_AGAINST``, and never creates the default store."""
    from ..data.profile import Profile
    from ..data.validate import NO_SUCH_AGAINST

    pinned = "@" in uri or uri.startswith(("models:/", "runs:/"))
    if not pinned and _no_model_store():
        raise ModelNotFoundError(NO_SUCH_AGAINST.format(uri), _AGAINST_FIX)
    try:
        loaded = load_profile(uri)
    except ModelNotFoundError as exc:
        if pinned:
            raise
        raise ModelNotFoundError(NO_SUCH_AGAINST.format(uri), _AGAINST_FIX) from exc
    if isinstance(loaded, dict):
        loaded = Profile.from_dict(loaded)
    if not isinstance(loaded, Profile):
        raise DataError(f"the registry returned no profile for {uri!r}",
                        "register the model with its training data so nbprod stores a profile")
    return loaded


def resolve_against(against: Any):
    """:func:`nbprod.data.validate.resolve_against` with model URIs read from the registry."""
    from ..data.validate import resolve_against as resolve

    return resolve(against, model_profile=model_profile)


def validate(df: Any, against: Any = None, *, rules: Any = None, key: str | list[str] | None = None,
             tolerance: float | None = None, null_tolerance: float | None = None):
    """Check ``df`` against a profile and/or rules; collect every failure into a report.

    ``against`` is a :class:`~nbprod.data.profile.Profile`, :class:`~nbprod.data.rules.Rules`, a
    dict of rules, a path to a profile JSON (or a YAML rules file), or a model URI
    (``"credit-risk@champion"``, ``"models:/credit-risk/3"``) whose registered training profile is
    used. ``rules`` adds rules on top of a profile. ``key`` (default: the profile's key) is checked
    for duplicates. ``tolerance`` widens the seen range by that fraction of its span (default
    ``settings.range_tolerance``). ``null_tolerance``: how far (a fraction, default
    ``settings.null_tolerance``) a column's share of missing values may rise above the training
    share. This is :func:`nbprod.data.validate.validate` with the registry's :func:`model_profile`.
    """
    from ..data.validate import validate as check

    return check(df, against, rules=rules, key=key, tolerance=tolerance, null_tolerance=null_tolerance,
                 model_profile=model_profile)
