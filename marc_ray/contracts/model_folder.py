"""The folder of a fitted confidence model: the names of its files.

``fit`` writes the folder (``fit.estimator.MarcConfidence.save``); ``run_folder`` lists its files,
``calibrate`` hashes the weights into the certificate and reads the model's row ids, and the
report reads its training record. The names live here, below all of them, so that reading a file
name never imports the estimator (and torch with it).
"""

from __future__ import annotations

__all__ = ["CONFIG_FILE", "MODEL_FILE"]

MODEL_FILE = "model.safetensors"  # the weights (safetensors: no pickle on load)
CONFIG_FILE = "config.json"       # the model's settings, its training record (γ per epoch), row ids
