"""Re-export of :mod:`marc_ray.metrics` (the ranking metrics moved to a leaf module that both
``fit`` and ``calibrate`` import); ``from marc_ray.calibrate.metrics import auroc`` keeps working."""

from ..metrics import *  # noqa: F401,F403
from ..metrics import __all__, as_confidence_and_agreement  # noqa: F401
