"""annotate: simulated-annotator judge inference (Ray Data; vLLM, transformers, HTTP, replay)."""
