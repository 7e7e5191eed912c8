"""one `.npz` layer read every way: numpy.load, zlib, ISA-L, libdeflate (new output, or a reused buffer), CRC-32

    flock /tmp/pattern_lens_bench.lock python benchmarks/bench_inflate.py [--n-ctx 512]

Writes one prompt of the synthetic 12 x 12 model (a deflated `.npz`, as the reference writes it),
then times each way of getting layer 3's bytes (best of 5, one core). The "reused buffer" row calls
libdeflate through the symbols the `deflate` extension exports, into one preallocated array: it
answers whether reusing an output buffer across layers is worth a private interface (it was not:
the same time as a fresh `bytearray`, benchmarks/README.md).
"""

from __future__ import annotations

import argparse
import ctypes
import sys
import tempfile
import time
import zipfile
import zlib
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # this checkout's pattern_lens, not an installed one

def best_of(fn, k: int = 5) -> float:
    """the shortest of `k` timed calls of `fn`, seconds (the benchmark scripts' timer)"""
    best = float("inf")
    for _ in range(k):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def main() -> None:
    import deflate
    from isal import isal_zlib

    from pattern_lens._input.npz import ActivationsFile
    from pattern_lens.synthetic import write_synthetic_model

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--n-ctx", type=int, default=512)
    args = p.parse_args()
    model = write_synthetic_model(Path(tempfile.mkdtemp()), n_layers=4, n_heads=12, n_ctx=args.n_ctx, n_prompts=1)
    path = next((model / "prompts").iterdir()) / "activations.npz"
    key = "blocks.3.attn.hook_pattern"
    with zipfile.ZipFile(path) as zf:
        info = zf.getinfo(key + ".npy")
    with open(path, "rb") as f:
        f.seek(info.header_offset)
        head = f.read(30)
        f.seek(info.header_offset + 30 + int.from_bytes(head[26:28], "little") + int.from_bytes(head[28:30], "little"))
        comp = f.read(info.compress_size)
    size = info.file_size
    lib = ctypes.CDLL(deflate._deflate.__file__)
    lib.libdeflate_alloc_decompressor.restype = ctypes.c_void_p
    lib.libdeflate_deflate_decompress.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_size_t,
                                                  ctypes.c_void_p, ctypes.c_size_t, ctypes.c_void_p]
    dec = lib.libdeflate_alloc_decompressor()
    out = np.empty(size, np.uint8)
    src = np.frombuffer(comp, np.uint8)
    got = ctypes.c_size_t()
    raw = bytes(deflate.deflate_decompress(comp, size))
    rows = {
        "numpy.load of the member": lambda: np.load(path)[key],
        "ActivationsFile.read_layer (this reader)": lambda: ActivationsFile(path).read_layer(3),
        "zlib.decompress": lambda: zlib.decompress(comp, -15, size),
        "isal_zlib.decompress": lambda: isal_zlib.decompress(comp, -15, size),
        "deflate.deflate_decompress (new bytearray)": lambda: deflate.deflate_decompress(comp, size),
        "libdeflate into a reused buffer (ctypes)": lambda: lib.libdeflate_deflate_decompress(
            dec, src.ctypes.data, len(comp), out.ctypes.data, out.size, ctypes.byref(got)),
        "zlib.crc32": lambda: zlib.crc32(raw),
        "deflate.crc32": lambda: deflate.crc32(raw),
    }
    print(f"layer of {size / 2**20:.1f} MiB, deflated to {len(comp) / 2**20:.1f} MiB")
    for label, fn in rows.items():
        s = best_of(fn)
        print(f"{label:<44} {s * 1e3:8.2f} ms  {size / s / 2**20:8.0f} MiB/s")


if __name__ == "__main__":
    main()
