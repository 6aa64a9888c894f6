"""In-process model backends behind small synchronous interfaces (see ``base``)."""

import os

# huggingface_hub reads these once, when it is first imported, so they must be set before any
# backend module imports transformers. Packaged and local models never need the network, and
# a model server that quietly downloads gigabytes on a typo is worse than a clear error.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
# Per-load progress bars are noise in a server log and under the CLI's own progress display.
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
