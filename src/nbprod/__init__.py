"""nbprod: from a Jupyter notebook to a monitored, reversible model service, on MLflow.

The public verbs are imported lazily: ``import nbprod`` loads no pandas, mlflow, scikit-learn or
altair; the first call of a verb imports what that verb needs. In a notebook::

    %load_ext nbprod
    %nbprod validate df --against profile.json

The public names are listed once, in ``__init__.pyi`` beside this file (what type checkers and
IDEs read); :func:`nbprod._lazy.attach` builds ``__getattr__``, ``__dir__`` and ``__all__`` from it.
"""

from ._lazy import attach
from ._version import __version__ as __version__

__getattr__, __dir__, __all__ = attach(__name__, __file__)
del attach
