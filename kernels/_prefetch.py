"""a software prefetch for kernels that walk a matrix row by row

A row of a 1024-token float32 pattern is 4 KiB: every row crosses a page boundary (numpy aligns
arrays to 16 bytes, not to pages), and the hardware's stream prefetchers stop at a page, so each new
row starts with a run of cache misses the core waits for. The statistics kernel reading a head from
memory ran at about half its in-cache speed (0.74-0.81 ms per causal 1024 x 1024 head, 0.35 in
cache). Asking for the next row's cache lines while the current row is worked on, a quarter of them
before each of the row's loops (all at once, the requests queue behind each other and the later
ones wait), hides that wait: 0.37-0.41 ms (benchmarks/README.md, "Prefetching the next row").

`prefetch_items` is LLVM's `llvm.prefetch` (read, keep in all cache levels), which compiles to the
target's prefetch instruction or to nothing: a hint, never a fault, whatever the address. Rows must
be contiguous (the callers make their input C-contiguous): lines are counted by items.

numba's on-disk cache is keyed on the file of the kernel that calls it, not this one: after a change
here, delete `kernels/__pycache__/*.nbi` and `*.nbc` (as for `_jit.py`), or the callers keep their
compiled copies of the old code (an installed upgrade rewrites every file, which renews them all).
"""

from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic

from ._jit import jit

__all__ = ["prefetch_items", "line_range"]

_LINE_BYTES = 64  # a cache line on every x86-64 and most ARM cores; a wrong guess only wastes hints


@intrinsic
def _prefetch(typingctx, arr, index):
    """hint that `arr[index]` (a contiguous 1-D array, `0 <= index < len(arr)`) will be read soon"""
    if not (isinstance(arr, types.Array) and arr.ndim == 1 and arr.layout == "C" and isinstance(index, types.Integer)):
        return None  # numba then reports a typing error naming the arguments

    def codegen(context, builder, signature, args):
        array_type, _ = signature.args
        array = context.make_array(array_type)(context, builder, args[0])
        index = context.cast(builder, args[1], signature.args[1], types.intp)  # any integer type
        pointer = cgutils.get_item_pointer(context, builder, array_type, array, [index], wraparound=False)
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


@intrinsic
def _itemsize(typingctx, arr):
    """`arr.itemsize` as a constant of the compiled code (numba loads `.itemsize` from the array at
    run time, and the divisions by it in `line_range` then ran on every call, in the row loops)"""
    if not isinstance(arr, types.Array):
        return None

    def codegen(context, builder, signature, args):
        return context.get_constant(types.intp, context.get_abi_sizeof(context.get_data_type(arr.dtype)))

    return types.intp(arr), codegen


@jit
def line_range(start, stop, itemsize):
    """`(first, stop, step)`: the indices `range(first, stop, step)` that `prefetch_items` asks for to
    cover items `[start, stop)` of a row of `itemsize`-byte items, one per cache line, counted from
    the row's first item (an empty span asks for none)"""
    step = max(1, _LINE_BYTES // itemsize)
    # from the first item of `start`'s line: adjacent spans cover every line of the row between them
    return (start // step * step if start < stop else stop), stop, step


@jit
def prefetch_items(row, start, stop):
    """hint that items `[start, stop)` of the contiguous 1-D `row` will be read soon (`0 <= start <= stop <= len(row)`)

    A kernel splits a row into spans it asks for before each of its loops; their bounds are
    computed once per matrix: a division inside the row loop cost 0.08 ms per 1024 x 1024 head.
    """
    first, stop, step = line_range(start, stop, _itemsize(row))
    for j in range(first, stop, step):
        _prefetch(row, j)
    if stop == row.shape[0] and start < stop:
        _prefetch(row, stop - 1)  # the last line, which the count by items misses where the row starts mid-line
