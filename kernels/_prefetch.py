"""a software prefetch for kernels that walk a matrix row by row

A row of a 1024-token float32 pattern is 4 KiB: one page. The hardware's stream prefetchers do not
cross a page, so every new row starts with a run of cache misses the core waits for, and a kernel
that reads a head from memory ran at about half its in-cache speed (the statistics kernel: 0.74-0.81
ms per causal 1024 x 1024 head from memory, 0.35 in cache). Asking for the next row's cache lines
while the current row is worked on, a quarter of them before each of the row's loops (all at once,
the requests queue behind each other and the later ones wait), hides that wait: 0.37-0.38 ms
(benchmarks/README.md, "Prefetching the next row").

`prefetch_part` is LLVM's `llvm.prefetch` (read, keep in all cache levels), which compiles to the
target's prefetch instruction or to nothing: a hint, never a fault, whatever the address.

numba's on-disk cache is keyed on the file of the kernel that calls it, not this one: after a change
here, delete `kernels/__pycache__/*.nbi` and `*.nbc` (as for `_jit.py`).
"""

from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic

from ._jit import jit

__all__ = ["prefetch_part", "part_range"]

_LINE_BYTES = 64  # a cache line on every x86-64 and most ARM cores; a wrong guess only wastes hints


@intrinsic
def _prefetch(typingctx, arr, index):
    """hint that `arr[index]` (a 1-D array, `0 <= index < len(arr)`) will be read soon"""
    if not (isinstance(arr, types.Array) and arr.ndim == 1 and isinstance(index, types.Integer)):
        return None

    def codegen(context, builder, signature, args):
        array_type, _ = signature.args
        array = context.make_array(array_type)(context, builder, args[0])
        pointer = cgutils.get_item_pointer(context, builder, array_type, array, [args[1]], wraparound=False)
        byte_pointer = ir.IntType(8).as_pointer()
        i32 = ir.IntType(32)
        # the `.p0i8` name of typed pointers; LLVM renames it where pointers are opaque
        declared = cgutils.get_or_insert_function(
            builder.module, ir.FunctionType(ir.VoidType(), [byte_pointer, i32, i32, i32]), "llvm.prefetch.p0i8"
        )
        # read (0), highest locality (3: keep in every level), data cache (1)
        builder.call(declared, [builder.bitcast(pointer, byte_pointer), i32(0), i32(3), i32(1)])
        return context.get_dummy_value()

    return types.void(arr, index), codegen


@jit
def part_range(n, itemsize, part, parts):
    """`(first, stop, step)`: the indices `range(first, stop, step)` of a row of `n` items of `itemsize`
    bytes that `prefetch_part` asks for, one per cache line of its part (parts together: every line)"""
    step = max(1, _LINE_BYTES // itemsize)
    first = (n * part // parts) // step * step  # from a line's first item: a part's lines are whole
    return first, n * (part + 1) // parts, step


@jit
def prefetch_part(row, part, parts):
    """hint that part `part` (of `parts` equal parts, `0 <= part < parts`) of the 1-D `row` will be read soon"""
    first, stop, step = part_range(row.shape[0], row.itemsize, part, parts)
    for j in range(first, stop, step):
        _prefetch(row, j)
