"""Where the pipeline keeps its two models (torch-free, so the CLI can name them for free).

`heldout.pt` never heard the test actors: every reported number scores it. `model.pt` is the
same recipe trained on every actor: what `predict`, `serve`, `export` and the images use.
"""

from pathlib import Path

HELD_OUT_MODEL = Path("models/heldout.pt")
RELEASE_MODEL = Path("models/model.pt")
