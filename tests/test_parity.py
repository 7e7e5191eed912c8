"""real data: all 768 pythia-14m heads, rendered by `raw`, byte for byte the reference's own PNGs"""

import numpy as np
import pytest

from pattern_lens.attn_figure_funcs import raw


def _heads(parity_dir):
    for prompt_dir in sorted((parity_dir / "prompts").iterdir()):
        with np.load(prompt_dir / "activations.npz") as npz:
            for key in sorted(npz.files):
                layer = int(key.split(".")[1])
                patterns = npz[key]
                for head in range(patterns.shape[1]):
                    yield prompt_dir / f"L{layer}" / f"H{head}" / "raw.png", patterns[0, head]


def test_all_parity_pngs_byte_identical(parity_dir, tmp_path):
    checked, different = 0, []
    for expected_png, pattern in _heads(parity_dir):
        raw(pattern, tmp_path)
        if (tmp_path / "raw.png").read_bytes() != expected_png.read_bytes():
            different.append(str(expected_png.relative_to(parity_dir)))
        checked += 1
    assert checked == 768, f"expected 768 heads in the parity corpus, found {checked}"
    assert not different, f"{len(different)} PNGs differ, e.g. {different[:5]}"


@pytest.mark.parametrize("dtype", [np.float64, np.float16])
def test_parity_patterns_other_dtypes_match_reference(parity_dir, dtype, tmp_path):
    """the same real patterns in float64 and float16 against the reference algorithm run live"""
    import reference_impl as ref

    for i, (_, pattern) in enumerate(_heads(parity_dir)):
        if i % 16:
            continue
        matrix = pattern.astype(dtype)
        raw(matrix, tmp_path)
        expected = ref.png_bytes(ref.preprocess(matrix, normalize=True, cmap="Blues"))
        assert (tmp_path / "raw.png").read_bytes() == expected


def test_all_parity_heads_fast_profile_same_pixels(parity_dir, tmp_path):
    """the fast profile on the same 768 heads: every PNG decodes to the reference PNG's pixels"""
    import io

    from PIL import Image

    from pattern_lens import export_profile

    def pixels(data: bytes) -> np.ndarray:
        with Image.open(io.BytesIO(data)) as img:
            return np.asarray(img.convert("RGB"))

    different, fast_bytes, reference_bytes = [], 0, 0
    for expected_png, pattern in _heads(parity_dir):
        with export_profile("fast"):
            raw(pattern, tmp_path)
        ours, expected = (tmp_path / "raw.png").read_bytes(), expected_png.read_bytes()
        if not np.array_equal(pixels(ours), pixels(expected)):
            different.append(str(expected_png.relative_to(parity_dir)))
        fast_bytes, reference_bytes = fast_bytes + len(ours), reference_bytes + len(expected)
    assert not different, f"{len(different)} fast PNGs decode differently, e.g. {different[:5]}"
    assert fast_bytes < reference_bytes
