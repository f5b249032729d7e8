"""On the GPU machine: two ranks under torchrun through `trtprof capture`, each with its own engine on
cuda:(LOCAL_RANK mod GPUs) (both on cuda:0 on a one-GPU machine), meeting after every inference.

Checks each rank's capture and device, the straggler view against the per-rank latencies, and the
one clock: no rank starts inference i+1 before every rank ended inference i (`lockstep_check`).
"""
import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.gpu
ROOT = Path(__file__).resolve().parents[2]
N = 60
TOL_NS = 200_000  # event-to-host-clock anchoring tolerance, as in test_gpu_capture


@pytest.fixture(scope="module", params=["cpp", "python"])
def folder(request, tmp_path_factory):
    out = tmp_path_factory.mktemp(request.param) / "ranks"
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
               NCCL_NVLS_ENABLE="0", TORCH_SYMM_MEM_DISABLE_MULTICAST="1", NVSHMEM_DISABLE_NVLS="1")
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
                           "-m", "trtprof", "capture", "-o", str(out), str(ROOT / "support/gpu/ranks_job.py"), str(N),
                           request.param], capture_output=True, text=True, env=env, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return out, proc.stderr


def test_each_rank_has_its_capture_and_device(folder):
    import torch

    from trtprof.timeline.ranks import load_ranks

    out, stderr = folder
    ranks = load_ranks(out)
    assert ranks.ranks == [0, 1] and ranks.complete and ranks.offsets == {0: 0, 1: 0}
    gpus = torch.cuda.device_count()
    for r, cap in ranks.captures.items():
        dev = cap.meta["rank"]["device"]
        assert dev["index"] == r % gpus and dev["name"] and dev["uuid"], dev
        df = cap.timeline
        assert df.loc[df["event"] == "exec", "gpu_start_ns"].notna().all()
        assert (df["event"] == "inference").sum() >= N - 1
    uuids = {c.meta["rank"]["device"]["uuid"] for c in ranks.captures.values()}
    assert len(uuids) == min(2, gpus), uuids
    assert "straggler" in stderr, stderr[-3000:]
    if importlib.util.find_spec("plotly") is None:  # the device's bundle has no plotly: a one-line note
        assert "merged report not written" in stderr and "plotly" in stderr, stderr[-3000:]
    else:
        assert (out / "report.html").is_file(), stderr[-3000:]


def test_straggler_matches_latencies_and_clock_holds(folder):
    from trtprof.analysis import ranks as analysis
    from trtprof.timeline.ranks import load_ranks

    ranks = load_ranks(folder[0])
    res = analysis.analyse_ranks(ranks, n_boot=100)
    lat = {r: x.latency.set_index(["model", "inference"])["latency_ns"] / 1e6 for r, x in res.per_rank.items()}
    assert len(res.straggler) >= N - 2
    for row in res.straggler.itertuples(index=False):
        vals = {r: s.get((row.model, row.inference)) for r, s in lat.items()}
        assert row.slowest_ms == pytest.approx(max(vals.values())) and vals[row.slowest_rank] == pytest.approx(row.slowest_ms)
        assert row.fastest_ms == pytest.approx(min(vals.values()))
    order = analysis.lockstep_check(ranks)
    assert order["pairs"] >= 2 * (N - 3) and order["min_margin_ns"] > -TOL_NS, order
