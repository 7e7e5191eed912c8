"""`--backend dask --scheduler ADDRESS`: the same tasks on a dask.distributed cluster, the same files"""

from pathlib import Path

import numpy as np
import pytest

from pattern_lens._output.atomic import atomic_write_bytes
from pattern_lens.cli import main
from pattern_lens.figures import PatternLensError, figures_main
from pattern_lens.synthetic import write_synthetic_model

distributed = pytest.importorskip(
    "distributed", reason="dask.distributed is not installed (pip install 'pattern_lens[dask]')"
)


def ident(attn, save_dir):
    atomic_write_bytes(Path(save_dir) / "ident.bin", np.ascontiguousarray(attn).tobytes())


ident.figure_save_fmt = "bin"


def _tree(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("L*/H*/*")) if p.is_file()}


@pytest.fixture(scope="module")
def cluster():
    """a light local cluster on loopback TCP: one in-process worker with two threads"""
    with distributed.LocalCluster(
        n_workers=1, threads_per_worker=2, processes=False, protocol="tcp", host="127.0.0.1",
        dashboard_address=None,
    ) as c:
        yield c


def test_dask_run_writes_what_a_local_run_writes(tmp_path, cluster):
    args = dict(n_layers=3, n_heads=4, n_ctx=48, n_prompts=2, seed=9)
    local = write_synthetic_model(tmp_path / "local", **args)
    remote = write_synthetic_model(tmp_path / "dask", **args)
    s_local = figures_main(local.name, local.parent, None, False, [ident], n_jobs=1, progress=False, verbose=False)
    s_dask = figures_main(
        remote.name, remote.parent, None, False, [ident], backend="dask", scheduler=cluster.scheduler_address,
        progress=False, verbose=False,
    )
    assert s_local.ok and s_dask.ok
    assert s_dask.backend == "dask" and s_dask.n_jobs == 2 and s_dask.n_rendered == 24
    assert _tree(local) == _tree(remote)


def test_cli_dask_backend(tmp_path, cluster, capsys):
    model = write_synthetic_model(tmp_path, n_layers=2, n_heads=2, n_ctx=32, n_prompts=2, seed=2)
    code = main(["render", "-m", model.name, "-s", str(tmp_path), "--figure-funcs", "raw", "--backend", "dask",
                 "--scheduler", cluster.scheduler_address, "-q"])
    assert code == 0
    assert "dask" in capsys.readouterr().out
    assert len(list(model.rglob("raw.png"))) == 8


def test_dask_without_scheduler_or_client_is_a_clear_error(tmp_path):
    model = write_synthetic_model(tmp_path, n_layers=1, n_heads=1, n_ctx=8, n_prompts=1)
    try:
        distributed.get_client()
        pytest.skip("a dask client is already active in this process")
    except ValueError:
        pass
    with pytest.raises(PatternLensError, match="needs a scheduler address"):
        figures_main(model.name, tmp_path, None, False, [ident], backend="dask", progress=False, verbose=False)
