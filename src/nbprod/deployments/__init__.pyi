# The public names of nbprod.deployments, listed once: type checkers read this stub and
# __init__.py builds its lazy __getattr__, __dir__ and __all__ from it (nbprod._lazy.attach).
from .alerting import AlertSettings as AlertSettings
from .api import deploy as deploy
from .api import promote as promote
from .api import restore as restore
from .api import rollback as rollback
from .api import set_split as set_split
from .api import status as status
from .api import undeploy as undeploy
from .options import ServerSettings as ServerSettings
from .results import Deployment as Deployment
from .results import DeploymentStatus as DeploymentStatus
from .results import StatusTable as StatusTable
