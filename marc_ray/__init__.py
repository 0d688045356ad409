"""marc_ray: certified selective LLM judges on Ray.

Stages (each a subpackage or module, each reading and writing files):
``annotate`` (simulated-annotator judge inference on Ray Data), ``fit`` (the MARC confidence
model on Ray Train / Tune), ``calibrate`` (fixed-sequence testing with exact binomial bounds),
``report`` and ``apply``. ``contracts`` owns every data schema.

Importing ``marc_ray`` loads no ray, torch or vllm.
"""

__version__ = "0.1.0"
