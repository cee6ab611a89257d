# The public names of nbprod, the one list of them: type checkers and IDEs read this stub, and
# nbprod/__init__.py builds its lazy __getattr__, __dir__ and __all__ from the same lines
# (nbprod._lazy.attach). A name added here is public; keep it to the verbs, what they return and
# what users build (Profile, Rules). Internals stay importable from their modules.

from . import audit as audit
from . import config as config
from . import datasets as datasets
from . import errors as errors
from ._info import info as info
from ._version import __version__ as __version__
from .batch.score import ScoreResult as ScoreResult
from .batch.score import score as score
from .config import settings as settings
from .data.profile import Profile as Profile
from .data.profile import profile as profile
from .data.rules import Rules as Rules
from .data.validate import ValidationReport as ValidationReport
from .deployments.api import deploy as deploy
from .deployments.api import promote as promote
from .deployments.api import restore as restore
from .deployments.api import rollback as rollback
from .deployments.api import set_split as set_split
from .deployments.api import status as status
from .deployments.api import undeploy as undeploy
from .deployments.prediction import PredictionResult as PredictionResult
from .deployments.results import Deployment as Deployment
from .deployments.results import StatusTable as StatusTable
from .driftstats.api import drift as drift
from .driftstats.report import DriftReport as DriftReport
from .errors import NbprodError as NbprodError
from .jobs import CheckReport as CheckReport
from .jobs import JobDiff as JobDiff
from .jobs import JobResult as JobResult
from .jobs import RunTable as RunTable
from .jobs import check as check
from .jobs import diff as diff
from .jobs import get_run as get_run
from .jobs import inspect as inspect
from .jobs import rerun as rerun
from .jobs import run as run
from .jobs import runs as runs
from .jobs import track_input as track_input
from .magics import load_ipython_extension as load_ipython_extension
from .magics import unload_ipython_extension as unload_ipython_extension
from .monitoring.feedback import FeedbackResult as FeedbackResult
from .monitoring.feedback import feedback as feedback
from .monitoring.monitor import monitor as monitor
from .monitoring.report import MonitorReport as MonitorReport
from .monitoring.widget import panel as monitor_panel  # noqa: F401 - public under another name
from .packaging import Bundle as Bundle
from .packaging import package as package
from .registry.against import validate as validate
from .registry.evaluate import EvaluationResult as EvaluationResult
from .registry.evaluate import evaluate as evaluate
from .registry.loading import LoadedModel as LoadedModel
from .registry.loading import load_model as load_model
from .registry.register import register as register
from .registry.versions import ModelTable as ModelTable
from .registry.versions import ModelVersion as ModelVersion
from .registry.versions import delete_alias as delete_alias
from .registry.versions import download as download
from .registry.versions import get_version as get_version
from .registry.versions import load_profile as load_profile
from .registry.versions import models as models
from .registry.versions import set_alias as set_alias
from .service import serve as serve
