# The public names of nbprod.serving, listed once: type checkers read this stub and __init__.py
# builds its lazy __getattr__, __dir__ and __all__ from it (nbprod._lazy.attach).
from .app import ServingHooks as ServingHooks
from .app import create_app as create_app
from .spec import DbSource as DbSource
from .spec import DeploymentSpec as DeploymentSpec
from .spec import Route as Route
from .spec import StaticSource as StaticSource
from .spec import hash_token as hash_token
from .spec import load_spec as load_spec
from .spec import save_spec as save_spec
