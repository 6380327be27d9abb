"""The live model of the Jupyter server's state, in the read-only room `datastore:state`."""

from .model import MAPS, STATE_ROOM, StateModel
from .service import ServerState, StatePolicy
from .sources import JupyterServices

__all__ = ["MAPS", "STATE_ROOM", "JupyterServices", "ServerState", "StateModel", "StatePolicy"]
