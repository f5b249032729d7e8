"""GPU: inference from two threads and on a user-chosen stream is attributed to the right thread and
stream (real Torch-TensorRT, C++ and Python runtimes). Run with scripts/gpu_tests.sh."""
import threading

import pytest

import trtprof

pytestmark = pytest.mark.gpu


@pytest.fixture(scope="module")
def models():
    import torch
    import torch_tensorrt

    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(128, 128), torch.nn.ReLU(), torch.nn.Linear(128, 128))
    net = net.eval().cuda().half()
    x = torch.randn(8, 128, device="cuda", dtype=torch.half)
    def build(rt):
        return torch_tensorrt.compile(net, ir="dynamo", inputs=[x], min_block_size=1,
                                      use_python_runtime=(rt == "python"))
    # the C++ runtime serialises calls of one engine (a mutex): both threads share one module; the
    # Python runtime's execution context is not thread-safe: one module per thread
    cpp = build("cpp")
    return {"cpp": (cpp, cpp), "python": (build("python"), build("python"))}, x


@pytest.mark.parametrize("rt", ["cpp", "python"])
def test_two_threads_and_a_user_stream(tmp_path, models, rt):
    import torch

    trts, x = models
    user_stream = torch.cuda.Stream()
    idents = {}

    def worker(name, trt, stream, n=20):
        idents[name] = threading.get_ident()
        with torch.cuda.stream(stream):
            for _ in range(n):
                trt(x)
            stream.synchronize()

    with trtprof.profile(out=tmp_path / "c") as cap:
        for m in set(trts[rt]):  # compiled before the capture: hook them now, so call 0 is whole
            assert cap.instrument(m)
        ts = [threading.Thread(target=worker, args=("default", trts[rt][0], torch.cuda.default_stream())),
              threading.Thread(target=worker, args=("user", trts[rt][1], user_stream))]
        for t in ts:
            t.start()
        for t in ts:
            t.join()
    df = cap.timeline
    inf = df[df.event == "inference"]
    assert len(inf) == 40 and set(inf.thread) == set(idents.values())
    by_thread = inf.groupby("thread").stream.agg(set).to_dict()
    assert by_thread[idents["user"]] == {user_stream.cuda_stream}
    assert by_thread[idents["default"]] == {torch.cuda.default_stream().cuda_stream}
    ex = df[df.event == "exec"]
    assert len(ex) == 40 and ex.gpu_start_ns.notna().all() and (ex.gpu_start_ns < ex.gpu_end_ns).all()
    if rt == "cpp":  # events on the caller stream: the thread's stream
        for name in idents:
            got = set(ex[ex.thread == idents[name]].stream)
            want = user_stream.cuda_stream if name == "user" else torch.cuda.default_stream().cuda_stream
            assert got == {want}
    else:  # the Python runtime runs engines on its own engine stream, never the caller's
        assert not (set(ex.stream) & {user_stream.cuda_stream, torch.cuda.default_stream().cuda_stream})
    # every exec row belongs to an inference of its own thread
    for _, row in ex.iterrows():
        own = inf[(inf.thread == row.thread) & (inf.inference == row.inference) & (inf.model == row.model)]
        assert len(own) == 1
