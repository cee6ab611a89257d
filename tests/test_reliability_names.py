"""Names may not end in a newline (issue 11, point 11): a regex ending in ``$`` also matches before a
final ``\\n``, so every name check matches the whole text (``fullmatch`` / ``\\Z``)."""

from __future__ import annotations

import pytest

from nbprod.errors import DeploymentError, ModelNotFoundError, PackagingError, RegistrationError

BAD = ["ok\n", "ok\r\n", "\nok", "o\nk"]


@pytest.mark.parametrize("name", BAD)
def test_model_names_aliases_and_uris_with_a_newline_are_refused(name):
    from nbprod.registry.uris import check_alias, check_name, parse_model_uri

    with pytest.raises(RegistrationError):
        check_name(name)
    with pytest.raises(RegistrationError):
        check_alias(name.replace("ok", "champion"))
    with pytest.raises(ModelNotFoundError):
        parse_model_uri(f"models:/{name}/3")
    with pytest.raises(ModelNotFoundError):
        parse_model_uri(f"credit@{name.replace('ok', 'champion')}x")


def test_register_refuses_a_name_ending_in_a_newline_and_writes_nothing(nbprod_home):
    from sklearn.linear_model import LogisticRegression

    import nbprod
    from nbprod.datasets import credit

    X, y = credit(200)
    X = X.select_dtypes("number").fillna(0)
    with pytest.raises(RegistrationError, match="illegal model name"):
        nbprod.register(LogisticRegression(max_iter=200).fit(X, y), "ok\n", X, y)
    from nbprod.registry.store import client

    assert [m.name for m in client().search_registered_models()] == []


@pytest.mark.parametrize("name", BAD)
def test_deployment_names_with_a_newline_are_refused(nbprod_home, name):
    import nbprod

    for call in (lambda: nbprod.status(name), lambda: nbprod.undeploy(name), lambda: nbprod.promote(name),
                 lambda: nbprod.rollback(name)):
        with pytest.raises(DeploymentError, match="not a valid deployment name"):
            call()


def test_kubernetes_quantities_and_image_names_with_a_newline_are_refused():
    from nbprod.packaging.api import _check_args, _check_image

    with pytest.raises(PackagingError):
        _check_image("registry.example.com/credit:3\n")
    for cpu, memory in (("500m\n", "512Mi"), ("500m", "512Mi\n")):
        with pytest.raises(PackagingError):
            _check_args(None, 1, cpu, memory, 8080, 1)


@pytest.mark.parametrize("alias", ["v1", "V3", "v007", "latest", "@@champion", "1st", ""])
def test_aliases_mlflow_reserves_or_cannot_hold_are_refused_with_a_fix(alias):
    """``v1`` passed nbprod's check and failed inside MLflow with a traceback ("Version alias name 'v1' is
    reserved"), after a register's eight seconds of work; ``@@x`` was silently read as ``x``."""
    from nbprod.registry.uris import check_alias

    with pytest.raises(RegistrationError, match="illegal alias") as err:
        check_alias(alias)
    assert "'v' followed by digits" in err.value.fix


@pytest.mark.parametrize("alias, kept", [("champion", "champion"), ("@champion", "champion"), ("v1beta", "v1beta"),
                                         ("vx", "vx"), ("_v1", "_v1")])
def test_other_aliases_are_kept(alias, kept):
    from nbprod.registry.uris import check_alias

    assert check_alias(alias) == kept
