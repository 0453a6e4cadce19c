"""optforge: discover neural-network optimizers."""

import os as _os

# litellm fetches its model price map over the network at import unless told otherwise; offline
# machines would stall there. Set before anything imports litellm.
_os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

__version__ = "0.1.0"
