"""`pattern-lens gallery`: write the offline gallery into a data folder and say how to open it"""

from __future__ import annotations

import argparse

__all__ = ["add_gallery_arguments", "run_gallery"]


def add_gallery_arguments(p: argparse.ArgumentParser) -> None:
    """the options of `pattern-lens gallery`"""
    from pattern_lens.consts import DATA_DIR

    p.add_argument("data", nargs="?", default=DATA_DIR, metavar="DATA", help=f"the data folder (default: {DATA_DIR})")


def run_gallery(args: argparse.Namespace) -> int:
    """write the gallery into the data folder and say how to open it"""
    from pattern_lens._view.gallery import write_gallery

    info = write_gallery(args.data)
    print(f"gallery of {info.n_models} models, {info.n_prompts} prompts: {info.file_url()}")
    print(f"(opened from disk it shows everything but .svgz figures and hover values; for those: pattern-lens serve {args.data})")
    return 0
