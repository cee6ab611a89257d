"""The deployment verbs through ``%nbprod`` in a real IPython shell, on a real detached server."""

from __future__ import annotations

import pytest

from nbprod.errors import DeploymentError

pytestmark = [pytest.mark.timeout(300), pytest.mark.slow]


def test_deploy_canary_promote_rollback_status_undeploy_magics(credit_shell):
    from nbprod import registry

    ip = credit_shell
    dep = ip.run_line_magic("nbprod", "deploy credit-risk@champion --name m --no-auth")
    assert dep.url.startswith("http://127.0.0.1:") and dep.weights == {"1": 100.0}
    canary = ip.run_line_magic("nbprod", "deploy credit-risk@challenger --name m --canary 20")
    assert canary.weights == {"1": 80.0, "2": 20.0}
    promoted = ip.run_line_magic("nbprod", "promote m")
    assert promoted.weights == {"2": 100.0} and registry.get_version("credit-risk@champion").version == "2"
    rolled = ip.run_line_magic("nbprod", "rollback m")
    assert rolled.weights == {"1": 100.0} and registry.get_version("credit-risk@champion").version == "1"
    table = ip.run_line_magic("nbprod", "status")
    assert table["m"].state == "running" and "m" in str(table)
    stopped = ip.run_line_magic("nbprod", "undeploy m")
    assert stopped["m"].state == "stopped"
    with pytest.raises(DeploymentError, match="is stopped") as info:  # shown as problem + fix
        ip.run_line_magic("nbprod", "promote m")
    assert info.value._render_traceback_()[-1].startswith("Fix: deploy it again")
