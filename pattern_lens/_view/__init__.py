"""stage 4: looking at the figures: the offline gallery (gallery.py), the server (serve.py), and the
adapter to optional per-head summaries (summaries.py)"""

__all__: list[str] = []
