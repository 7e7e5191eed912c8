"""stage 4: looking at the figures: the offline gallery (gallery.py), the server (serve.py), the
adapter to optional per-head summaries (summaries.py), each prompt's token axis (axes.py), and one
head's row of exact weights for the hover (values.py)"""

__all__: list[str] = []
