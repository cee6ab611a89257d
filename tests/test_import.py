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


# Modules that neither `import nbprod` nor `%load_ext nbprod` loads import at the top like ordinary
# code (issue 10, section 4); a function-local import there needs its reason in a comment.
TOP_IMPORTS = ["deployments", "packaging", "service.py", "audit.py"]


def _local_imports(path) -> list[str]:
    import ast

    lines = path.read_text(encoding="utf-8").splitlines()
    found = []
    for node in ast.walk(ast.parse("\n".join(lines))):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            for inner in ast.walk(node):
                if isinstance(inner, (ast.Import, ast.ImportFrom)):
                    said = lines[inner.lineno - 1] + lines[inner.lineno - 2]  # the line, or a comment above
                    if "#" not in said:
                        found.append(f"{path.name}:{inner.lineno}: {lines[inner.lineno - 1].strip()}")
    return found


def test_modules_that_import_nbprod_never_loads_import_at_the_top():
    from pathlib import Path

    src = Path(nbprod.__file__).parent
    out = subprocess.run([sys.executable, "-c", PROBE.replace("m.split('.')[0]", "m")], capture_output=True,
                         text=True, check=True)
    loaded = json.loads(out.stdout.strip().splitlines()[-1])
    for name in TOP_IMPORTS:
        module = "nbprod." + name.removesuffix(".py")
        assert not [m for phase in loaded.values() for m in phase if m == module or m.startswith(module + ".")]
        files = [src / name] if name.endswith(".py") else sorted((src / name).glob("*.py"))
        for path in files:
            assert not _local_imports(path), _local_imports(path)


def test_a_servers_supervisor_imports_no_app():
    """Importing what ``nbprod serve`` needs to start does not import the app (numpy, Starlette, the
    registry): a server imports the app's modules where it builds the app, or — with ``workers > 1`` —
    once before it forks the workers (``preload``, test_server_startup.py); never the registry,
    which only a start-up cache miss needs (issue 13)."""
    probe = ("import json, sys\n"
             "import nbprod.cli\n"
             "from nbprod.commands.serving import _run\n"
             "from nbprod.service import serve\n"
             "from nbprod.serving.spec import DbSource\n"
             "from nbprod.deployments.store import record_server\n"
             "app = ('numpy', 'starlette', 'nbprod.serving.app', 'nbprod.registry', 'websockets', 'mlflow')\n"
             "print(json.dumps(sorted(m for m in app if m in sys.modules)))\n")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert json.loads(out.stdout.strip().splitlines()[-1]) == []
