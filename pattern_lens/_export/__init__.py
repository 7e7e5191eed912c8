"""stage 3 of the data flow: one matrix -> the bytes of its file (PNG, SVG, SVGZ)

- `colormap`: normalisation and matplotlib-exact colormap tables, driving the numba kernels
- `encode`: `matrix_file_bytes`, the file content in the active export profile
- `fast_png`: the fast profile's indexed PNG with the exact profile's pixels
- `png_fast`: the hand-built PNG and gzip encoders (ISA-L deflate)
- `reference`: the reference's algorithm, the baseline the benchmarks compare against
"""
