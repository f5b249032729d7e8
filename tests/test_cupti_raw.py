"""The raw CUPTI handover on the CPU (trtprof/capture/cupti_raw.py): synthetic activity buffers parsed in
bulk (kinds interleaved, unknown kinds, names by pointer, a truncated buffer, records of another size
than the dtype), the record walk, the library lookup, the C callbacks through ctypes, and KernelActivity
on the raw path against a stand-in libcupti compiled from support/fake_libcupti.c.

The record dtypes below are modelled on cupti_activity.h of CUDA 13.0 (CUpti_ActivityKernel10,
CUpti_ActivityMemcpy6, CUpti_ActivityMemset4) as cupti-python 13.0.1 lays them out: the fields trtprof
reads at their offsets, the records' full sizes; test_model_matches_cupti_python checks them against
cupti-python's own dtypes where it is installed."""
import ctypes
import json
import shutil
import subprocess
import sys
import types
from pathlib import Path

import numpy as np
import pytest

from trtprof.capture import cupti_raw as R
from trtprof.capture import kernels as CK

ROOT = Path(__file__).resolve().parent.parent
KERNEL, MEMCPY, MEMSET, RUNTIME = 10, 1, 2, 5   # CUpti_ActivityKind values


def _dt(fields, itemsize):
    names, formats, offsets = zip(*fields)
    return np.dtype({"names": names, "formats": formats, "offsets": offsets, "itemsize": itemsize})


KERNEL10 = _dt([("kind", "<i4", 0), ("start", "<u8", 16), ("end", "<u8", 24), ("device_id", "<u4", 40),
                ("context_id", "<u4", 44), ("stream_id", "<u4", 48), ("correlation_id", "<u4", 92),
                ("name", "<i8", 104), ("queued", "<u8", 120)], 216)
MEMCPY6 = _dt([("kind", "<i4", 0), ("bytes", "<u8", 8), ("start", "<u8", 16), ("end", "<u8", 24),
               ("device_id", "<u4", 32), ("context_id", "<u4", 36), ("stream_id", "<u4", 40),
               ("correlation_id", "<u4", 44)], 96)
MEMSET4 = _dt([("kind", "<i4", 0), ("value", "<u4", 4), ("bytes", "<u8", 8), ("start", "<u8", 16),
               ("end", "<u8", 24), ("device_id", "<u4", 32), ("context_id", "<u4", 36),
               ("stream_id", "<u4", 40), ("correlation_id", "<u4", 44)], 88)
KINDS = {KERNEL: ("kernel", KERNEL10, None), MEMCPY: ("memcpy", MEMCPY6, None), MEMSET: ("memset", MEMSET4, None)}
DTYPE = {KERNEL: KERNEL10, MEMCPY: MEMCPY6, MEMSET: MEMSET4}


def rec(kind, start=0, end=0, stream=7, corr=0, name=0, device=0, size=None, queued=0):
    """One record's bytes: `size` makes it longer than its dtype (a libcupti of another version)."""
    dt = DTYPE.get(kind)
    if dt is None:                                   # a kind trtprof does not read: only its kind
        b = np.zeros(size or 40, np.uint8)
        b[:4] = np.array([kind], "<u4").view(np.uint8)
        return b.tobytes()
    a = np.zeros(1, dt)
    a["kind"], a["start"], a["end"], a["stream_id"], a["correlation_id"], a["device_id"] = \
        kind, start, end, stream, corr, device
    if kind == KERNEL:
        a["name"], a["queued"] = name, queued
    return a.view(np.uint8).tobytes().ljust(size or dt.itemsize, b"\0")


def buf(*records):
    """(buffer bytes, record offsets) of records laid end to end, as CUPTI packs them."""
    offs, at = [], 0
    for r in records:
        offs.append(at)
        at += len(r)
    return b"".join(records), offs


class Reader:
    """Names' reader over fake pointers, counting reads."""
    def __init__(self, table):
        self.table, self.reads = table, []

    def __call__(self, p):
        self.reads.append(p)
        return self.table[p]


def test_mixed_kinds_in_buffer_order_and_unknown_kinds_skipped():
    data, offs = buf(rec(KERNEL, 100, 150, stream=21, corr=1, name=0x1000, device=1, queued=90),
                     rec(MEMCPY, 160, 170, corr=2),
                     rec(RUNTIME, size=40),
                     rec(KERNEL, 200, 260, stream=21, corr=3, name=0x2000),
                     rec(MEMSET, 270, 280, corr=4),
                     rec(KERNEL, 300, 310, stream=13, corr=5, name=0x1000))
    p = R.parse(data, len(data), offs, KINDS, R.Names(Reader({0x1000: "gemm", 0x2000: "relu"})))
    c = p["columns"]
    assert set(c) == set(CK.FIELDS) and R.FIELDS == CK.FIELDS
    assert c["kind"].tolist() == ["kernel", "memcpy", "kernel", "memset", "kernel"]
    assert c["name"].tolist() == ["gemm", None, "relu", None, "gemm"]
    assert c["start_ns"].tolist() == [100, 160, 200, 270, 300] and c["end_ns"].tolist() == [150, 170, 260, 280, 310]
    assert c["stream"].tolist() == [21, 7, 21, 7, 13] and c["correlation"].tolist() == [1, 2, 3, 4, 5]
    assert c["device"].tolist() == [1, 0, 0, 0, 0]
    assert c["queued_ns"].tolist() == [90, 0, 0, 0, 0]  # a copy has no launch time; unknown is 0
    assert all(c[f].dtype == np.int64 for f in ("start_ns", "end_ns", "stream", "correlation", "device"))
    assert (p["skipped"], p["truncated"], p["fallback"], p["mismatch"]) == (1, 0, [], {})
    only_kernels = {KERNEL: KINDS[KERNEL]}      # memcpy not asked for: skipped like any other kind
    q = R.parse(data, len(data), offs, only_kernels, R.Names(Reader({0x1000: "gemm", 0x2000: "relu"})))
    assert q["columns"]["kind"].tolist() == ["kernel"] * 3 and q["skipped"] == 3


def test_large_timestamps_and_ids_keep_their_values():
    big = 1_765_000_000_123_456_789                # time_ns()-like, beyond 2**53
    data, offs = buf(rec(KERNEL, big, big + 1, stream=2 ** 32 - 1, corr=2 ** 31 + 5, name=0x10, queued=big - 7),
                     rec(KERNEL, big, big + 1, name=0x10, queued=2 ** 64 - 1))  # all ones: unknown
    c = R.parse(data, len(data), offs, KINDS, R.Names(Reader({0x10: "k"})))["columns"]
    assert c["queued_ns"].tolist() == [big - 7, -1]
    c = {f: v[:1] for f, v in c.items()}
    assert c["start_ns"].tolist() == [big] and c["end_ns"].tolist() == [big + 1]
    assert c["stream"].tolist() == [2 ** 32 - 1] and c["correlation"].tolist() == [2 ** 31 + 5]


def test_names_are_read_once_per_pointer_and_null_is_none():
    reader = Reader({0x1000: "gemm", 0x2000: "relu"})
    names = R.Names(reader)
    data, offs = buf(*(rec(KERNEL, 10 + i, 20 + i, name=p) for i, p in enumerate([0x1000, 0x2000, 0x1000, 0, 0x1000])))
    c = R.parse(data, len(data), offs, KINDS, names)["columns"]
    assert c["name"].tolist() == ["gemm", "relu", "gemm", None, "gemm"]
    assert sorted(reader.reads) == [0x1000, 0x2000]
    R.parse(data, len(data), offs, KINDS, names)   # the next buffer: from the cache
    assert sorted(reader.reads) == [0x1000, 0x2000]
    assert R.Names()(np.array([ctypes.addressof(ctypes.create_string_buffer(b"sm90_xmma"))])).tolist() != [None]


def test_real_name_pointers_through_string_at():
    keep = [ctypes.create_string_buffer(s) for s in (b"ampere_sgemm", b"void at::relu<\xce\xbc>")]
    ptrs = [ctypes.addressof(k) for k in keep]
    data, offs = buf(rec(KERNEL, 1, 2, name=ptrs[0]), rec(KERNEL, 3, 4, name=ptrs[1]))
    c = R.parse(data, len(data), offs, KINDS, R.Names())["columns"]
    assert c["name"].tolist() == ["ampere_sgemm", "void at::relu<\u03bc>"]


def test_truncated_buffer_keeps_the_whole_records():
    data, offs = buf(rec(KERNEL, 10, 20, name=0x10), rec(MEMCPY, 30, 40), rec(KERNEL, 50, 60, name=0x10))
    valid = len(data) - 100                          # the last kernel record is cut short
    p = R.parse(data, valid, offs, KINDS, R.Names(Reader({0x10: "k"})))
    assert p["columns"]["start_ns"].tolist() == [10, 30] and p["truncated"] == 1 and p["mismatch"] == {}
    cut = R.parse(data, offs[2] + 2, offs, KINDS, R.Names(Reader({0x10: "k"})))   # not even its kind
    assert cut["columns"]["start_ns"].tolist() == [10, 30] and cut["truncated"] == 1
    assert R.parse(b"", 0, [], KINDS, R.Names(Reader({})))["columns"]["start_ns"].tolist() == []


def test_records_of_another_size_fall_back_and_say_so():
    # a libcupti whose kernel record is 224 bytes: the 216-byte dtype is not its record
    data, offs = buf(rec(KERNEL, 10, 20, name=0x10, size=224), rec(MEMCPY, 30, 40),
                     rec(KERNEL, 50, 60, name=0x10, size=224), rec(MEMCPY, 70, 80))
    p = R.parse(data, len(data), offs, KINDS, R.Names(Reader({0x10: "k"})))
    assert p["mismatch"] == {"kernel": [224]}
    assert [(c, at.tolist()) for c, at in p["fallback"]] == [(KERNEL, [offs[0], offs[2]])]
    assert p["columns"]["kind"].tolist() == ["memcpy", "memcpy"]     # the other kind still in bulk
    # a kind whose one record is the buffer's last: measured to `valid`, so checked as well
    data2, offs2 = buf(rec(MEMCPY, 30, 40), rec(KERNEL, 50, 60, name=0x10, size=224))
    p2 = R.parse(data2, len(data2), offs2, KINDS, R.Names(Reader({0x10: "k"})))
    assert p2["mismatch"] == {"kernel": [224]} and p2["columns"]["start_ns"].tolist() == [30]
    assert [(c, at.tolist()) for c, at in p2["fallback"]] == [(KERNEL, [offs2[1]])]
    # smaller than the dtype (an older libcupti): also not read with it
    small, offs3 = buf(rec(MEMSET, 1, 2, size=88), rec(MEMSET, 3, 4, size=88))
    p3 = R.parse(small, len(small), offs3, {MEMSET: ("memset", _dt([("kind", "<i4", 0), ("start", "<u8", 16),
                 ("end", "<u8", 24), ("device_id", "<u4", 32), ("stream_id", "<u4", 40),
                 ("correlation_id", "<u4", 44)], 96), None)}, R.Names(Reader({})))
    assert p3["mismatch"] == {"memset": [88]} and len(p3["columns"]["start_ns"]) == 0


def test_a_buffer_of_one_record_is_checked_too():
    one, at = buf(rec(KERNEL, 50, 60, name=0x10, size=224))
    p = R.parse(one, len(one), at, KINDS, R.Names(Reader({0x10: "k"})))
    assert p["mismatch"] == {"kernel": [224]} and [c for c, _ in p["fallback"]] == [KERNEL]
    assert len(p["columns"]["start_ns"]) == 0 and p["truncated"] == 0
    same, at = buf(rec(KERNEL, 50, 60, name=0x10))          # the dtype's own size: read in bulk
    q = R.parse(same, len(same), at, KINDS, R.Names(Reader({0x10: "k"})))
    assert q["mismatch"] == {} and q["columns"]["start_ns"].tolist() == [50]
    # where consecutive records of the kind give its size, bytes after the last record do not count
    two, at = buf(rec(KERNEL, 1, 2, name=0x10), rec(KERNEL, 3, 4, name=0x10), b"\0" * 8)
    r = R.parse(two, len(two), at[:2], KINDS, R.Names(Reader({0x10: "k"})))
    assert r["mismatch"] == {} and r["columns"]["start_ns"].tolist() == [1, 3]


def _walker(sizes):
    """cuptiActivityGetNextRecord over a Python bytes buffer at fake address `base`."""
    def next_record(base, valid, ref):
        data = next_record.data
        cur = ref._obj.value
        at = 0 if cur is None else cur - base + sizes[int.from_bytes(data[cur - base:cur - base + 4], "little")]
        if at + 4 > valid or at + sizes.get(int.from_bytes(data[at:at + 4], "little"), 1 << 30) > valid:
            return R.MAX_LIMIT_REACHED
        ref._obj.value = base + at
        return 0
    return next_record


def test_walk_collects_offsets_until_the_end_or_an_error():
    data, offs = buf(rec(KERNEL, 1, 2), rec(RUNTIME, size=40), rec(MEMCPY, 3, 4))
    nxt = _walker({KERNEL: 216, RUNTIME: 40, MEMCPY: 96})
    nxt.data = data
    got, status = R.walk(nxt, 0x7000, len(data))
    assert got.tolist() == offs and status == R.MAX_LIMIT_REACHED
    got, status = R.walk(nxt, 0x7000, len(data) - 1)        # the last record does not fit
    assert got.tolist() == offs[:2]
    assert R.walk(lambda *_: 1, 0x7000, 10)[1] == 1          # CUPTI_ERROR_INVALID_PARAMETER: said, not hidden


def test_layouts_need_the_dtypes_and_fields(monkeypatch):
    ok = types.SimpleNamespace(activity_kernel10_dtype=KERNEL10, activity_memcpy6_dtype=MEMCPY6,
                               ActivityKernel10=object)
    got = R.layouts(ok, {KERNEL: "kernel", MEMCPY: "memcpy"})
    assert got == {KERNEL: ("kernel", KERNEL10, object), MEMCPY: ("memcpy", MEMCPY6, None)}
    with pytest.raises(R.Unavailable, match="no activity_memset4_dtype"):
        R.layouts(ok, {MEMSET: "memset"})
    no_name = types.SimpleNamespace(activity_kernel10_dtype=MEMCPY6)
    with pytest.raises(R.Unavailable, match="lacks name"):
        R.layouts(no_name, {KERNEL: "kernel"})


def test_mapped_finds_each_library_file_once(tmp_path):
    maps = tmp_path / "maps"
    maps.write_text(
        "7f00-7f10 r--p 00000000 103:02 4242 /site/nvidia/cu13/lib/libcupti.so.13\n"
        "7f10-7f20 r-xp 00010000 103:02 4242 /site/nvidia/cu13/lib/libcupti.so.13\n"
        "7f30-7f40 r--p 00000000 103:02 77 /usr/lib/libcuptiish_helper.so\n"
        "7f50-7f60 rw-p 00000000 00:00 0 \n"
        "7f60-7f70 r--p 00000000 103:02 99 /site/nvidia/cuda_cupti/lib/libcupti.so.12 (deleted)\n")
    assert R.mapped(maps=str(maps)) == ["/site/nvidia/cu13/lib/libcupti.so.13",
                                        "/site/nvidia/cuda_cupti/lib/libcupti.so.12 (deleted)"]
    assert R.mapped(maps=str(tmp_path / "absent")) == []


def test_c_callbacks_through_ctypes_align_hand_over_and_release(monkeypatch):
    got = []
    monkeypatch.setitem(R._STATE, "owner", lambda *a: got.append(a))
    monkeypatch.setitem(R._STATE, "bytes", 4096)
    b, size, mx = ctypes.c_void_p(), ctypes.c_size_t(), ctypes.c_size_t(99)
    R._C_REQUESTED(ctypes.pointer(b), ctypes.pointer(size), ctypes.pointer(mx))
    addr = b.value
    assert addr % 8 == 0 and size.value == 4096 and mx.value == 0 and addr in R._BUFFERS
    data, _ = buf(rec(MEMCPY, 5, 6))
    ctypes.memmove(addr, data, len(data))
    R._C_COMPLETED(None, 21, addr, 4096, len(data))
    assert addr not in R._BUFFERS and len(got) == 1
    ctx, sid, address, view, valid = got[0]
    assert (ctx, sid, address, valid) == (None, 21, addr, len(data)) and view.tobytes() == data

    def boom(*_):
        raise ValueError("owner failed")
    monkeypatch.setitem(R._STATE, "owner", boom)
    lost = R._STATE["lost"]
    R._C_REQUESTED(ctypes.pointer(b), ctypes.pointer(size), ctypes.pointer(mx))
    R._C_COMPLETED(None, 0, b.value, 4096, 0)                # must not raise into CUPTI's thread
    assert R._STATE["lost"] == lost + 1 and b.value not in R._BUFFERS
    monkeypatch.setitem(R._STATE, "bytes", -100)           # an allocation that fails: NULL, counted
    R._C_REQUESTED(ctypes.pointer(b), ctypes.pointer(size), ctypes.pointer(mx))
    assert b.value is None and size.value == 0 and R._STATE["lost"] == lost + 2


def test_model_matches_cupti_python():
    cupti = pytest.importorskip("cupti.cupti")
    for ours, name in ((KERNEL10, "activity_kernel10_dtype"), (MEMCPY6, "activity_memcpy6_dtype"),
                       (MEMSET4, "activity_memset4_dtype")):
        theirs = getattr(cupti, name)
        assert theirs.itemsize == ours.itemsize, name
        for f in ours.names:
            assert theirs.fields[f][1] == ours.fields[f][1], (name, f)
            assert theirs.fields[f][0].itemsize == ours.fields[f][0].itemsize, (name, f)


def test_unaligned_offsets_are_read_byte_by_byte():
    # CUPTI aligns records to 8 bytes; offsets that are not take the slower byte-wise copy, same values
    data, offs = buf(b"\0" * 4, rec(KERNEL, 10, 20, corr=9, name=0x10), rec(MEMCPY, 30, 40, stream=3))
    p = R.parse(data, len(data), offs[1:], KINDS, R.Names(Reader({0x10: "k"})))
    c = p["columns"]
    assert c["start_ns"].tolist() == [10, 30] and c["correlation"].tolist() == [9, 0]
    assert c["stream"].tolist() == [7, 3] and c["name"].tolist() == ["k", None]


# -- KernelActivity on the raw path, against a compiled stand-in libcupti ----------------------------------
CHILD_SETUP = r'''
import ctypes, json, sys, threading, types
import numpy as np
sys.path[:0] = [sys.argv[2], sys.argv[2] + "/tests"]
lib = ctypes.CDLL(sys.argv[1])                    # loaded first, as cupti-python loads libcupti
lib.fake_deliver.argtypes = [ctypes.c_char_p, ctypes.c_size_t, ctypes.c_uint32]
from test_cupti_raw import KERNEL10, MEMCPY6, MEMSET4, rec, buf
from test_kernels import FakeCupti
from trtprof.capture import kernels as CK

class Kernel10:                                   # cupti-python's record class, for the fallback
    @staticmethod
    def from_ptr(ptr, readonly=False):
        a = np.frombuffer((ctypes.c_uint8 * KERNEL10.itemsize).from_address(ptr), dtype=KERNEL10)[0]
        return types.SimpleNamespace(kind=int(a["kind"]), start=int(a["start"]), end=int(a["end"]),
                                     name=ctypes.string_at(int(a["name"])).decode(), stream_id=int(a["stream_id"]),
                                     correlation_id=int(a["correlation_id"]), device_id=int(a["device_id"]))

class Fake(FakeCupti):
    activity_kernel10_dtype, activity_memcpy6_dtype, activity_memset4_dtype = KERNEL10, MEMCPY6, MEMSET4
    ActivityKernel10 = Kernel10
    def __init__(self):
        super().__init__()
        self.buffers, self.registered = [], 0
    def activity_register_callbacks(self, requested, completed):
        self.registered += 1
        super().activity_register_callbacks(requested, completed)
    def activity_flush_all(self, flag):
        if self.callbacks is not None:            # cupti-python's path
            return super().activity_flush_all(flag)
        for data, stream in self.buffers:
            assert lib.fake_deliver(data, len(data), stream) == 0
        self.buffers = []

def deliver_on_another_thread(data):
    t = threading.Thread(target=lambda: lib.fake_deliver(data, len(data), 0))
    t.start(); t.join()

for kind, size in ((10, 216), (1, 96), (2, 88), (5, 40)):
    lib.fake_set_record_size(kind, size)
names = [ctypes.create_string_buffer(s) for s in (b"gemm", b"relu")]
gemm, relu = (ctypes.addressof(n) for n in names)
out = {}
'''
CHILD = CHILD_SETUP + r'''
fake = Fake()
sys.modules["cupti"] = types.SimpleNamespace(cupti=fake)     # what `from cupti import cupti` finds
ka = CK.KernelActivity()
out["started"] = ka.start()
out["path"], out["library"] = ka.info()["handover"]["path"], ka.info()["handover"].get("library")
a, _ = buf(rec(10, 5_000_000, 5_000_400, stream=21, corr=1, name=gemm), rec(1, 5_000_500, 5_000_600, corr=2),
           rec(5, size=40), rec(10, 0, 0, name=relu), rec(10, 5_000_700, 5_000_900, corr=3, name=relu))
fake.buffers.append((a, 21))
lib.fake_set_dropped(3)
f1 = ka.flush()
out["f1"] = {k: v.tolist() for k, v in f1.items()}
out["offset"] = ka.clock["offset_ns"]
b, _ = buf(rec(10, 6_000_000, 6_000_100, corr=4, name=gemm))
deliver_on_another_thread(b)                      # a full buffer: CUPTI's own thread, no flush running
lib.fake_set_record_size(10, 224)                 # a libcupti whose kernel record is longer
c, _ = buf(rec(10, 7_000_000, 7_000_100, corr=5, name=relu, size=224), rec(1, 7_000_200, 7_000_300, corr=6),
           rec(10, 7_000_400, 7_000_500, corr=7, name=gemm, size=224), rec(1, 7_000_600, 7_000_700, corr=8))
d, _ = buf(rec(10, 8_000_000, 8_000_100, corr=9, name=gemm, size=224))   # one record: checked too
fake.buffers += [(c, 0), (d, 0)]
f2 = ka.flush()
out["f2"] = {k: v.tolist() for k, v in f2.items()}
out["info"] = ka.info()
out["note"] = ka.handover_note()
ka.stop()
deliver_on_another_thread(b)                      # after stop: released unread, nothing raised
out["after_stop"] = ka.info()["handover"]["buffers"]
out["registered_by_cupti_python"] = fake.registered
fake2 = Fake()
sys.modules["cupti"] = types.SimpleNamespace(cupti=fake2)
kp = CK.KernelActivity(handover="python")
out["python_started"], out["python_path"] = kp.start(), kp.info()["handover"]["path"]
out["python_registered"] = fake2.registered
kp.stop()
print(json.dumps(out))
'''


@pytest.fixture(scope="module")
def fake_libcupti(tmp_path_factory):
    cc = shutil.which("cc") or shutil.which("gcc")
    if cc is None:
        pytest.skip("no C compiler for the stand-in libcupti")
    lib = tmp_path_factory.mktemp("libcupti") / "libcupti.so.13"
    subprocess.run([cc, "-shared", "-fPIC", "-O1", "-o", str(lib), str(ROOT / "support" / "fake_libcupti.c")],
                   check=True, capture_output=True)
    return lib


def test_kernel_activity_raw_path_end_to_end(fake_libcupti):
    r = subprocess.run([sys.executable, "-c", CHILD, str(fake_libcupti), str(ROOT)], capture_output=True, text=True,
                       cwd=ROOT, timeout=120)
    assert r.returncode == 0, r.stderr[-3000:]
    out = json.loads(r.stdout.strip().splitlines()[-1])
    assert out["started"] and out["path"] == "raw" and out["library"] == str(fake_libcupti)
    off = out["offset"]
    f1 = out["f1"]
    assert f1["kind"] == ["kernel", "memcpy", "kernel"] and f1["name"] == ["gemm", None, "relu"]
    assert f1["start_ns"] == [5_000_000 + off, 5_000_500 + off, 5_000_700 + off]
    assert f1["stream"] == [21, 7, 7] and f1["correlation"] == [1, 2, 3]
    f2 = out["f2"]                                  # buffer b (CUPTI's thread), then c (kernels one by one)
    assert sorted(f2["correlation"]) == [4, 5, 6, 7, 8, 9]
    assert dict(zip(f2["correlation"], f2["name"])) == {4: "gemm", 5: "relu", 6: None, 7: "gemm", 8: None, 9: "gemm"}
    info = out["info"]
    h = info["handover"]
    assert info["dropped"] == 1                      # the record without timestamps
    assert h["cupti_dropped"] == 3 and h["records"] == 4 + 1 + 4 + 1 and h["buffers"] == 4
    assert h["buffers_on_cupti_thread"] == 1 and h["flushes"] == 2
    assert h["fallback_records"] == 2 + 1 and h["mismatch"] == {"kernel": [224]}
    assert "another size" in info["last_error"] and info["callback_errors"] == 0
    assert "raw buffers" in out["note"] and "1 buffer(s) filled first" in out["note"]
    assert out["after_stop"] == 4 and out["registered_by_cupti_python"] == 0
    assert out["python_started"] and out["python_path"] == "python" and out["python_registered"] == 1


CHILD_REFUSED = CHILD_SETUP + r'''
from trtprof.capture.install import Instrumenter

class RegisterRefused(Fake):
    def activity_register_callbacks(self, requested, completed):
        raise self.cuptiError("CUPTI_ERROR_NOT_INITIALIZED")

class EnableRefused(Fake):
    def activity_enable(self, kind):
        raise self.cuptiError("CUPTI_ERROR_INVALID_KIND")

def use(fake):
    sys.modules["cupti"] = types.SimpleNamespace(cupti=fake)
    return fake

lib.fake_set_register_status(17)                  # CUPTI refuses the raw callbacks
fake = use(Fake())
ka = CK.KernelActivity()
out["refused"] = {"started": ka.start(), "handover": ka.info()["handover"], "registered": fake.registered}
fake.launch(10, 10, 20, name="a")
out["refused"]["names"] = ka.flush()["name"].tolist()
ka.stop()
use(RegisterRefused())                            # ... and cupti-python's callbacks as well
kb = CK.KernelActivity()
out["both"] = {"started": kb.start(), "handover": kb.info()["handover"], "reason": kb.reason}
lib.fake_set_register_status(0)                   # the raw callbacks taken, enabling refused
use(EnableRefused())
ins = Instrumenter(None)
ins._start_kernels()
out["enable"] = {"kernel_info": ins.kernel_info, "notes": ins.notes}
print(json.dumps(out))
'''


def _child(code: str, lib) -> dict:
    """Run `code` in a fresh interpreter against the stand-in libcupti; its last stdout line, as JSON."""
    r = subprocess.run([sys.executable, "-c", code, str(lib), str(ROOT)], capture_output=True, text=True,
                       cwd=ROOT, timeout=120)
    assert r.returncode == 0, r.stderr[-3000:]
    return json.loads(r.stdout.strip().splitlines()[-1])


def test_refused_registration_or_enable_reports_the_path_that_ran(fake_libcupti):
    # a handover path is named only where it runs: a refused raw registration falls back to cupti-python's
    # callbacks, a refusal of those or of activity_enable leaves none, and kernels.handover says why
    out = _child(CHILD_REFUSED, fake_libcupti)
    ref = out["refused"]
    assert ref["started"] and ref["registered"] == 1 and ref["names"] == ["a"]
    assert ref["handover"]["path"] == "python" and ref["handover"]["cupti_dropped"] is None
    assert ref["handover"]["raw_reason"] == "RuntimeError: cuptiActivityRegisterCallbacks returned 17 (?)"
    both = out["both"]
    assert not both["started"] and both["handover"]["path"] is None
    assert "returned 17" in both["handover"]["raw_reason"] and "NOT_INITIALIZED" in both["reason"]
    info = out["enable"]["kernel_info"]
    assert info["recorded"] is False and "INVALID_KIND" in info["reason"]
    h = info["handover"]                            # where meta.json's kernels.handover is
    assert h["path"] is None and h["cupti_dropped"] is None and h["raw_reason"] == info["reason"]
    assert "\n" not in h["raw_reason"] and any(info["reason"] in n for n in out["enable"]["notes"])


CHILD_DROPS = CHILD_SETUP + r'''
from trtprof.capture.install import Instrumenter
fake = Fake()
sys.modules["cupti"] = types.SimpleNamespace(cupti=fake)
ins = Instrumenter(None, kernel_sink=lambda records: None)
ins._start_kernels()
a, _ = buf(rec(10, 5_000_000, 5_000_400, corr=1, name=gemm))
fake.buffers.append((a, 0))
lib.fake_set_dropped(3)                           # read when buffer a completes
ins.kernels.flush()
lib.fake_set_dropped(5)                           # no buffer completes after these
from trtprof.capture import cupti_raw as R       # a buffer that cannot be allocated: CUPTI's request fails
saved, R._STATE["bytes"] = R._STATE["bytes"], -(1 << 40)
b, size, most = ctypes.c_void_p(), ctypes.c_size_t(), ctypes.c_size_t()
R._C_REQUESTED(ctypes.byref(b), ctypes.byref(size), ctypes.byref(most))
R._STATE["bytes"] = saved
ins._stop_kernels()
out = {"kernel_info": ins.kernel_info, "notes": ins.notes}
print(json.dumps(out))
'''


def test_dropped_records_are_counted_and_noted(fake_libcupti):
    # records CUPTI dropped for lack of buffer space: all of them in meta.json (those no completed buffer
    # reported too, read after the flush) and a note, since the kernel table cannot show what it misses
    out = _child(CHILD_DROPS, fake_libcupti)
    h = out["kernel_info"]["handover"]
    assert h["path"] == "raw" and h["records"] == 1 and h["cupti_dropped"] == 3 + 5 and h["buffers_lost"] == 1
    noted = [n for n in out["notes"] if "CUPTI dropped" in n]
    assert len(noted) == 1 and "8 record(s)" in noted[0] and "\n" not in noted[0]
    assert "1 buffer(s) of records could not be allocated" in noted[0]


def test_raw_path_unavailable_falls_back_with_a_reason(monkeypatch):
    # no libcupti mapped in this process (a CPU machine): cupti-python's callbacks serve, and info says why
    from test_kernels import FakeCupti, _fake

    class Fake(FakeCupti):
        activity_kernel10_dtype, activity_memcpy6_dtype = KERNEL10, MEMCPY6
    if R.mapped():
        pytest.skip("a libcupti is mapped in this process")
    fake = Fake()
    _fake(monkeypatch, fake)
    ka = CK.KernelActivity()
    assert ka.start() and fake.callbacks is not None
    h = ka.info()["handover"]
    assert h["path"] == "python" and "0 libcupti files are mapped" in h["raw_reason"]
    fake.launch(10, 10, 20, name="a")
    assert ka.flush()["name"].tolist() == ["a"]
    ka.stop()
    plain = FakeCupti()                               # a cupti-python without the dtypes
    _fake(monkeypatch, plain)
    kb = CK.KernelActivity()
    assert kb.start() and "no activity_kernel10_dtype" in kb.info()["handover"]["raw_reason"]
    kb.stop()


def test_handover_choice_by_argument_and_environment(monkeypatch):
    monkeypatch.delenv(CK.HANDOVER_ENV, raising=False)
    assert CK.KernelActivity()._want == "raw"
    monkeypatch.setenv(CK.HANDOVER_ENV, "Python")
    assert CK.KernelActivity()._want == "python"
    assert CK.KernelActivity(handover="raw")._want == "raw"          # the argument wins
    monkeypatch.setenv(CK.HANDOVER_ENV, "fast")
    k = CK.KernelActivity()
    assert k._want == "raw" and "unknown handover 'fast'" in k.handover["raw_reason"]


def test_probe_compare_on_synthetic_runs():
    # scripts/probe_cupti_raw.py runs on the GPU machine; its checks and cost figures are pure and run here
    import importlib.util
    spec = importlib.util.spec_from_file_location("probe_cupti_raw", ROOT / "scripts" / "probe_cupti_raw.py")
    probe = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(probe)
    names = ["add", "relu", "mul", "sub"]

    def run(path, us, **over):
        r = {"info": {"handover": {"path": path, "cupti_dropped": 0 if path == "raw" else None},
                      "dropped": 0, "callback_errors": 0},
             "kernels_per_window": {"4": 10}, "copies_per_window": {"1": 10}, "counts": {"outside": 0},
             "records": {"kernel": 40, "memcpy": 10}, "distinct_sequences": 1, "name_sequences": [[names, 10]],
             "handover_us_per_record": us, "callback_us_per_record": us / 2, "loop_us_per_iter": 30.0}
        r.update(over)
        return r
    good = probe.compare({"raw": run("raw", 2.0), "python": run("python", 90.0), "raw-small": run("raw", 3.0)}, 10)
    assert good["failed"] == [] and good["checks"]["names_agree_across_runs"] is True
    assert good["cost"]["python_over_raw"] == 45.0
    bad = probe.compare({"raw": run("python", 2.0, kernels_per_window={"4": 9, "5": 1},
                                    name_sequences=[[names[::-1], 10]]),
                         "python": run("python", 90.0, info={"handover": {"path": "python"}, "dropped": 2,
                                                             "callback_errors": 0}),
                         "raw-small": {"error": "timed out after 30 s"}}, 10)
    assert sorted(bad["failed"]) == ["names_agree_across_runs", "python: nothing_dropped", "raw-small: ran",
                                     "raw: kernels_per_window", "raw: path"]
    # per window: kernels and copies counted, kernel names in start order, one sequence per window
    from trtprof.timeline.kernels import attribute
    recs = {"kind": np.array(["kernel", "kernel", "memcpy", "kernel", "kernel", "kernel"], dtype=object),
            "name": np.array(["relu", "add", None, "add", "relu", "stray"], dtype=object),
            "start_ns": np.array([20, 10, 30, 110, 120, 500]), "end_ns": np.array([25, 15, 35, 115, 125, 510]),
            "stream": np.array([7] * 6)}
    win = {"seq": [0, 1], "stream": [7, 7], "start_ns": [0, 100], "end_ns": [50, 150]}
    per = probe._per_window(recs, attribute(recs, win))
    assert per["kernels_per_window"] == {"2": 2} and per["copies_per_window"] == {"1": 1, "0": 1}
    assert per["name_sequences"] == [[["add", "relu"], 2]] and per["distinct_sequences"] == 1
