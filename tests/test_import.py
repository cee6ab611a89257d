"""`import nbprod` and `%load_ext nbprod` must stay light: no heavy library until a verb needs it."""

import json
import subprocess
import sys

import pytest

import nbprod

HEAVY = ["pandas", "numpy", "mlflow", "sklearn", "altair", "scipy", "sqlalchemy", "papermill", "pyarrow"]

PROBE = """
import json, sys
before = set(sys.modules)
import nbprod
after_import = sorted(m.split('.')[0] for m in set(sys.modules) - before)
from IPython.core.interactiveshell import InteractiveShell
ip = InteractiveShell.instance()
before = set(sys.modules)
ip.run_line_magic("load_ext", "nbprod")
after_load = sorted(m.split('.')[0] for m in set(sys.modules) - before)
print(json.dumps({"import": after_import, "load_ext": after_load}))
"""


def test_import_and_load_ext_pull_in_no_heavy_library():
    out = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, check=True)
    loaded = json.loads(out.stdout.strip().splitlines()[-1])
    for phase, modules in loaded.items():
        heavy = sorted(set(HEAVY) & set(modules))
        assert not heavy, f"{phase} imported {heavy}"


@pytest.mark.parametrize("name", [n for n in nbprod.__all__ if n not in ("__version__",)])
def test_every_public_name_resolves(name):
    assert getattr(nbprod, name) is not None


def test_unknown_attribute_is_an_attribute_error():
    with pytest.raises(AttributeError, match="no attribute 'frobnicate'"):
        nbprod.frobnicate  # noqa: B018 - the attribute lookup is what raises
