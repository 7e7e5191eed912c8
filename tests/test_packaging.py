"""the wheel: kernels installed as pattern_lens/kernels (real files), never as a top-level `kernels`; the gallery's page inside"""

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def wheel_names(tmp_path_factory) -> list[str]:
    out = tmp_path_factory.mktemp("wheel")
    cmd = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(out), str(REPO)]
    result = subprocess.run(cmd, capture_output=True, text=True)
    assert result.returncode == 0, f"building the wheel failed:\n{result.stdout}\n{result.stderr}"
    (wheel,) = out.glob("*.whl")
    with zipfile.ZipFile(wheel) as zf:
        return zf.namelist()


def test_kernels_inside_the_package(wheel_names):
    assert "pattern_lens/kernels/__init__.py" in wheel_names
    assert "pattern_lens/kernels/colormap.py" in wheel_names
    assert "pattern_lens/kernels/_jit.py" in wheel_names


def test_no_top_level_kernels(wheel_names):
    top_level = {name.split("/")[0] for name in wheel_names}
    assert "kernels" not in top_level
    assert {t for t in top_level if not t.endswith(".dist-info")} == {"pattern_lens"}
    assert not any("__pycache__" in name or name.endswith((".nbi", ".nbc")) for name in wheel_names)


def test_gallery_page_inside_the_package(wheel_names):
    frontend = sorted(p.name for p in (REPO / "pattern_lens" / "frontend").iterdir())
    assert {"index.html", "app.js", "style.css"} <= set(frontend)
    for name in frontend:
        assert f"pattern_lens/frontend/{name}" in wheel_names
