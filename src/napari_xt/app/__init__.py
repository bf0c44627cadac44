"""napari_xt.app: the torch-free middle that the CLI, batch workers and the dock share.

Request, event and error types, the one run driver, the model catalogue and the facades the widget calls. Nothing here
imports torch or Qt at import time: torch-using modules (``engine/``, ``model/``, ``train/``) are imported inside the
calls, which the dock runs in worker threads.
"""
