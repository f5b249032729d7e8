"""CUPTI's completed activity buffers taken raw and read in bulk with numpy (KernelActivity's "raw" path).

Why: cupti-python's `activity_register_callbacks` turns every record of a completed buffer into a Python
object before its callback runs; with our copy of the fields that cost 70-110 us a record on the H200
(bench/cupti_handover.py, cupti-python 13.0.1), several times a BERT inference per inference recorded.
Here CUPTI's two buffer callbacks are registered through ctypes on the very libcupti cupti-python loaded
(found in /proc/self/maps, opened with RTLD_NOLOAD so that no second copy can load); the completed
callback walks the record offsets with cuptiActivityGetNextRecord, then reads each field trtprof keeps
for all records of a kind in one numpy step, through cupti-python's own record dtypes
(activity_kernel10_dtype...) laid over the buffer. Subscribing, enabling, flushing and the clock stay
with cupti-python.

A dtype is used only where it is this libcupti's record: the spacing between consecutive records of a
kind must equal its itemsize (8-byte aligned, as CUPTI packs them). A kind whose one record in a buffer
is the buffer's last is measured to the buffer's valid end instead, so that a buffer of one record is
checked too (only then: where consecutive records give the size, bytes CUPTI might leave after the last
record do not count against it). Where it does not match (a libcupti of another version than the
dtypes), that kind's records in that buffer go through cupti-python's record classes one by one, as
before, and `mismatch` says so. `parse` and `walk` are pure: the CPU tests feed them synthetic buffers.
Importing this module imports neither cupti nor torch.
"""
from __future__ import annotations

import ctypes
import os

import numpy as np

from trtprof.capture.kernels import FIELDS, _columns as columns  # one record layout for both paths

# kind -> (cupti-python dtype, cupti-python record class) for CUDA 13.0's CUpti_ActivityKernel10,
# CUpti_ActivityMemcpy6 and CUpti_ActivityMemset4, looked up by attribute
RECORDS = {"kernel": ("activity_kernel10_dtype", "ActivityKernel10"),
           "memcpy": ("activity_memcpy6_dtype", "ActivityMemcpy6"),
           "memset": ("activity_memset4_dtype", "ActivityMemset4")}
NEEDED_FIELDS = ("kind", "start", "end", "stream_id", "correlation_id", "device_id")
MAX_LIMIT_REACHED = 12      # CUPTI_ERROR_MAX_LIMIT_REACHED: no more records in this buffer
ALIGN = 8                   # ACTIVITY_RECORD_ALIGNMENT


class Unavailable(Exception):
    """The raw path cannot be set up here; the message says why, in one line."""


def layouts(cupti, codes: dict) -> dict:
    """{CUpti_ActivityKind value: (kind, dtype, record class or None)} for `codes` ({value: kind}),
    from cupti-python's attributes; Unavailable when a dtype or a field we read is missing."""
    out = {}
    for code, kind in codes.items():
        dname, cname = RECORDS[kind]
        dt = getattr(cupti, dname, None)
        if not isinstance(dt, np.dtype) or dt.names is None:
            raise Unavailable(f"this cupti-python has no {dname}")
        need = NEEDED_FIELDS + (("name",) if kind == "kernel" else ())
        lacking = [f for f in need if f not in dt.names]
        if lacking:
            raise Unavailable(f"{dname} lacks {', '.join(lacking)}")
        out[int(code)] = (kind, dt, getattr(cupti, cname, None))
    return out


def walk(next_record, base: int, valid: int) -> tuple[np.ndarray, int]:
    """(record offsets from `base`, final status) by calling cuptiActivityGetNextRecord(buffer, valid,
    &record) until it stops: status MAX_LIMIT_REACHED is the buffer's normal end, anything else an error."""
    rec = ctypes.c_void_p(None)
    ref, offs = ctypes.byref(rec), []
    while True:
        status = next_record(base, valid, ref)
        if status != 0:
            return np.array(offs, dtype=np.int64), int(status)
        offs.append(rec.value - base)


class Names:
    """Kernel names by CUPTI's `const char *`: each pointer read once. CUPTI shares one name string
    across all records of a kernel, so the pointer identifies the name for as long as CUPTI keeps it."""

    def __init__(self, read=None):
        self.cache: dict = {0: None}
        self.read = read or (lambda p: ctypes.string_at(p).decode("utf-8", "replace"))

    def __call__(self, ptrs) -> np.ndarray:
        uniq, inv = np.unique(np.asarray(ptrs, dtype=np.int64), return_inverse=True)
        cache, vals = self.cache, np.empty(len(uniq), dtype=object)
        for i, p in enumerate(uniq.tolist()):
            if p not in cache:
                cache[p] = self.read(p)
            vals[i] = cache[p]
        return vals[inv.reshape(-1)]


def parse(buf, valid: int, offsets, kinds: dict, names) -> dict:
    """Records of a completed buffer -> {"columns": FIELDS arrays (CUPTI clock, buffer order), "fallback":
    [(code, offsets)] kinds whose dtype is not this libcupti's record (by the spacing of consecutive
    records, or the last record's to `valid` where a kind has no other), "mismatch": {kind: spacings seen},
    "skipped": records of other kinds, "truncated": records that run past `valid`}.

    `kinds` is layouts(): {code: (kind, dtype, _)}; `names` maps name pointers to strings (Names)."""
    raw = np.frombuffer(buf, dtype=np.uint8, count=valid)
    offs = np.asarray(offsets, dtype=np.int64)
    spacing = np.diff(np.append(offs, valid))      # to the next record the walk gave, even a cut one
    last = np.zeros(len(offs), dtype=bool)
    last[-1:] = True
    ok = (offs >= 0) & (offs + 4 <= valid)
    truncated = int((~ok).sum())
    offs, spacing, last = offs[ok], spacing[ok], last[ok]
    code = _field(*_gather(raw, offs, np.dtype([("kind", "<u4")])), "kind")
    parts, fallback, mismatch, known = [], [], {}, np.zeros(len(offs), dtype=bool)
    for c, (kind, dt, _cls) in kinds.items():
        sel = code == c
        known |= sel
        if not sel.any():
            continue
        size = dt.itemsize
        whole = (size + ALIGN - 1) // ALIGN * ALIGN
        cut = sel & last & (spacing < size)          # the buffer's last record, cut short
        truncated += int(cut.sum())
        sel &= ~cut
        inner = sel & ~last                           # spacing to the next record: the record's size
        bad = (inner if inner.any() else sel) & (spacing != whole)   # else to `valid`
        if bad.any():
            mismatch[kind] = sorted(set(spacing[bad].tolist()))
            fallback.append((c, offs[sel]))
            continue
        if not sel.any():
            continue
        at = offs[sel]
        rows, idx = _gather(raw, at, dt)
        n = len(at)
        parts.append((at, {"kind": np.full(n, kind, dtype=object),
                           "name": names(_field(rows, idx, "name")) if kind == "kernel"
                           else np.full(n, None, dtype=object),
                           "start_ns": _field(rows, idx, "start"), "end_ns": _field(rows, idx, "end"),
                           "stream": _field(rows, idx, "stream_id"),
                           "correlation": _field(rows, idx, "correlation_id"),
                           "device": _field(rows, idx, "device_id"),
                           # launch-side time (latency timestamps); absent from memcpy/memset records
                           "queued_ns": _field(rows, idx, "queued") if "queued" in dt.names and kind == "kernel"
                           else np.zeros(n, dtype=np.int64)}))
    return {"columns": merge(parts), "fallback": fallback, "mismatch": mismatch,
            "skipped": int((~known).sum()), "truncated": truncated}


def _gather(raw: np.ndarray, at: np.ndarray, dt: np.dtype):
    """(records, index): `records[index]` are the records of dtype `dt` at byte offsets `at` (each
    inside `raw`). Where the offsets are 8-byte aligned, as CUPTI places records, `records` is a
    strided view with a record at every 8 bytes, so a field is read for the chosen records alone
    (no copy of whole records); else the records are copied out byte by byte."""
    if not (at % ALIGN).any():
        count = max(0, (len(raw) - dt.itemsize) // ALIGN + 1)
        return np.ndarray((count,), dtype=dt, buffer=raw, strides=(ALIGN,)), at // ALIGN
    rows = raw[at[:, None] + np.arange(dt.itemsize)].view(dt).reshape(-1)
    return rows, np.arange(len(at))


def _field(records, index, name: str) -> np.ndarray:
    return records[name][index].astype(np.int64)


def merge(parts) -> dict:
    """[(offsets, columns)] -> one set of columns in buffer order."""
    if not parts:
        return columns([])
    order = np.argsort(np.concatenate([p[0] for p in parts]), kind="stable")
    return {f: np.concatenate([p[1][f] for p in parts])[order] for f in FIELDS}


def mapped(fragment: str = "libcupti.so", maps: str = "/proc/self/maps") -> list[str]:
    """Distinct paths of the mapped files whose name contains `fragment` (this process's libraries)."""
    seen = {}
    try:
        with open(maps) as f:
            for line in f:
                parts = line.split(None, 5)
                if len(parts) == 6 and fragment in os.path.basename(parts[5].strip()):
                    seen.setdefault((parts[3], parts[4]), parts[5].strip())   # (device, inode)
    except OSError:
        return []
    return sorted(set(seen.values()))


# -- CUPTI's callbacks ---------------------------------------------------------------------------------
# One pair of C entry points for the process, never freed (CUPTI may call them as long as it lives);
# they hand each buffer to the current owner. Buffers are numpy arrays held here until completed.
REQUESTED = ctypes.CFUNCTYPE(None, ctypes.POINTER(ctypes.c_void_p), ctypes.POINTER(ctypes.c_size_t),
                             ctypes.POINTER(ctypes.c_size_t))
COMPLETED = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_uint32, ctypes.c_void_p, ctypes.c_size_t,
                             ctypes.c_size_t)
_BUFFERS: dict = {}         # address -> (numpy array, offset of the aligned start)
_STATE = {"owner": None, "bytes": 64 << 20, "lost": 0}


def _requested(buf, size, max_records):
    try:
        n = int(_STATE["bytes"])
        arr = np.empty(n + ALIGN, dtype=np.uint8)      # not zeroed: CUPTI writes before we read
        pad = -arr.ctypes.data % ALIGN
        addr = arr.ctypes.data + pad
        _BUFFERS[addr] = (arr, pad)
        buf[0], size[0], max_records[0] = addr, n, 0
    except BaseException:       # noqa: BLE001 - CUPTI's thread: nothing may propagate
        _STATE["lost"] += 1
        buf[0], size[0], max_records[0] = None, 0, 0   # CUPTI drops the records it cannot place


def _completed(ctx, stream_id, buffer, size, valid):
    held = _BUFFERS.pop(buffer, None) if buffer else None
    owner = _STATE["owner"]
    try:
        if owner is not None and held is not None:
            arr, pad = held
            owner(ctx, stream_id, buffer, arr[pad:pad + valid], int(valid))
    except BaseException:       # noqa: BLE001 - the owner counts its own errors; this is the last guard
        _STATE["lost"] += 1


_C_REQUESTED, _C_COMPLETED = REQUESTED(_requested), COMPLETED(_completed)


def lost() -> int:
    """Buffers this process could not allocate for CUPTI, or whose records could not be handed to
    their owner (a count since the process started: callers keep their own baseline)."""
    return int(_STATE["lost"])


class Library:
    """The libcupti cupti-python uses, opened through ctypes for the three calls cupti-python's
    callback interface cannot give raw: register the buffer callbacks, walk a buffer, dropped counts."""

    def __init__(self, cupti):
        try:
            cupti.get_timestamp()           # cupti-python loads libcupti at its first call
        except Exception as e:
            raise Unavailable(f"cupti.get_timestamp failed: {type(e).__name__}: {e}") from None
        paths = mapped()
        if len(paths) != 1:
            raise Unavailable(f"{len(paths)} libcupti files are mapped ({', '.join(paths) or 'none'}); "
                              "which one cupti-python uses is unknown")
        self.path, self.cupti = paths[0], cupti
        mode = os.RTLD_NOLOAD | os.RTLD_LAZY
        try:
            lib = ctypes.CDLL(self.path, mode=mode)          # releases the GIL around calls
            fast = ctypes.PyDLL(self.path, mode=mode)        # keeps it: the walk's short calls
            self.register = lib.cuptiActivityRegisterCallbacks
            self.next_record = fast.cuptiActivityGetNextRecord
            self.dropped_fn = lib.cuptiActivityGetNumDroppedRecords
        except (OSError, AttributeError) as e:
            raise Unavailable(f"{self.path}: {type(e).__name__}: {e}") from None
        self.register.argtypes, self.register.restype = [REQUESTED, COMPLETED], ctypes.c_int
        self.next_record.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.POINTER(ctypes.c_void_p)]
        self.next_record.restype = ctypes.c_int
        self.dropped_fn.argtypes = [ctypes.c_void_p, ctypes.c_uint32, ctypes.POINTER(ctypes.c_size_t)]
        self.dropped_fn.restype = ctypes.c_int

    def attach(self, owner, buffer_bytes: int) -> None:
        """Make `owner(ctx, stream_id, address, bytes, valid)` the receiver of completed buffers and
        register the callbacks with CUPTI; raises RuntimeError naming CUPTI's status on failure (a
        CUPTI that serves another client says MULTIPLE_SUBSCRIBERS there, as cupti-python would)."""
        _STATE["owner"], _STATE["bytes"] = owner, int(buffer_bytes)
        status = self.register(_C_REQUESTED, _C_COMPLETED)
        if status != 0:
            _STATE["owner"] = None
            try:
                name = self.cupti.Result(status).name
            except Exception:
                name = "?"
            raise RuntimeError(f"cuptiActivityRegisterCallbacks returned {status} ({name})")

    @staticmethod
    def detach(owner) -> None:
        """Buffers completed from now on are released unread (unless another owner attached)."""
        if _STATE["owner"] == owner:
            _STATE["owner"] = None

    def dropped(self, ctx, stream_id) -> int:
        """Records CUPTI dropped for lack of buffer space in this context/stream queue (0 when it says
        nothing)."""
        n = ctypes.c_size_t(0)
        return int(n.value) if self.dropped_fn(ctx, stream_id, ctypes.byref(n)) == 0 else 0


class Reader:
    """The raw path of one KernelActivity: the library, the record layouts of its kinds, the names."""

    def __init__(self, cupti, codes: dict):
        self.kinds = layouts(cupti, codes)
        self.lib = Library(cupti)
        self.names = Names()

    def buffer(self, ctx, stream_id, address: int, buf, valid: int, rows) -> dict:
        """One completed buffer -> {"chunks": column sets, "records", "errors", "error": one line or
        None, "fallback_records", "cupti_dropped", "mismatch"}. `rows(record objects)` reads the records
        of a kind whose dtype is not this libcupti's, through cupti-python's record classes."""
        got = {"chunks": [], "records": 0, "errors": 0, "error": None, "fallback_records": 0,
               "cupti_dropped": 0, "mismatch": {}}
        offs, status = walk(self.lib.next_record, address, valid)
        if status != MAX_LIMIT_REACHED:
            got["errors"] += 1
            got["error"] = f"cuptiActivityGetNextRecord returned {status} after {len(offs)} records"
        p = parse(buf, valid, offs, self.kinds, self.names)
        got["chunks"].append(p["columns"])
        got["records"] = len(p["columns"]["start_ns"])
        for code, at in p["fallback"]:
            cls = self.kinds[code][2]
            out = rows(cls.from_ptr(address + int(o), readonly=True) for o in at.tolist()) if cls is not None else []
            got["errors"] += len(at) - len(out)
            got["fallback_records"] += len(out)
            if out:
                got["chunks"].append(columns(out))
                got["records"] += len(out)
        if p["mismatch"]:
            got["mismatch"] = p["mismatch"]
            got["error"] = (f"CUPTI records of another size than cupti-python's dtypes ({p['mismatch']}): "
                            "read one by one through cupti-python")
        if p["truncated"]:
            got["errors"] += p["truncated"]
            got["error"] = f"{p['truncated']} record(s) ran past the buffer's valid bytes"
        got["cupti_dropped"] = self.lib.dropped(ctx, stream_id)
        return got
