# The public names of nbprod.monitoring, listed once: type checkers read this stub and
# __init__.py builds its lazy __getattr__, __dir__ and __all__ from it (nbprod._lazy.attach).
# The verbs monitor() and feedback() are nbprod.monitor and nbprod.feedback: here those names are
# the submodules they live in, so they are not listed.
from .alerts import AlertCheck as AlertCheck
from .alerts import Rule as Rule
from .alerts import check as check
from .alerts import parse_rule as parse_rule
from .feedback import FeedbackResult as FeedbackResult
from .predlog import PredictionLog as PredictionLog
from .report import MonitorReport as MonitorReport
from .summary import HealthSummary as HealthSummary
from .summary import health as health
from .widget import MonitorPanel as MonitorPanel
from .widget import panel as panel
