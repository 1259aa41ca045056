"""Fine-tuning and export: config (`config.py`), data (`datasets.py`, `readers.py`, `encoding.py`), the recipe
(`run.py` with `model_setup.py`, `batching.py`, `loss.py`, `callbacks.py`, `plots.py`) and `export.py`."""
