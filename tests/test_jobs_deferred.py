"""Reading a notebook for a job does not compile rfc3987_syntax's grammars (~1.5 s per process that
nbformat's draft-4 validation never uses); code that checks IRIs still gets the same answers."""

import subprocess
import sys
from pathlib import Path

FILES = Path(__file__).parent / "files"

_SCRIPT = """
import sys
from nbprod.jobs import inspect
inspect(sys.argv[1])
print("after inspect:", "lark" in sys.modules)
files = [getattr(m, "__file__", None) for m in list(sys.modules.values())]  # as Hypothesis and autoreload do
print("after a walk of sys.modules:", "lark" in sys.modules)
import jsonschema
check = jsonschema.Draft7Validator({"format": "iri"}, format_checker=jsonschema.Draft7Validator.FORMAT_CHECKER)
print("iri:", check.is_valid("http://example.com/ä?q=1"), check.is_valid("http://a b"), "lark" in sys.modules)
"""


def test_the_iri_grammars_are_compiled_only_when_an_iri_is_checked():
    import importlib.util

    if importlib.util.find_spec("rfc3987_syntax") is None:
        import pytest

        pytest.skip("rfc3987_syntax is not installed: nothing to defer")
    out = subprocess.run([sys.executable, "-c", _SCRIPT, str(FILES / "params.ipynb")], capture_output=True,
                         text=True, timeout=300, check=True).stdout
    assert "after inspect: False" in out
    assert "after a walk of sys.modules: False" in out
    assert "iri: True False True" in out
