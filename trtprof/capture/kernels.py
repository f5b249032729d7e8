"""Kernel and memcpy activity from CUPTI (through cupti-python), on trtprof's host clock.

Why CUPTI: CUDA events around a call bracket the engine's work *and* the time the GPU waits for the
host (BERT on the H200: events 1889 us per call, kernels busy 474 us). CUPTI's activity API gives each
kernel's own start and end; CUPTI buffers the records and hands them over on its own thread, so the hot
path only pays for CUPTI's launch instrumentation, and only while the kinds are enabled: `resume()` /
`pause()` around recorded inferences (on for 1 call in 10: +0.2 %; always on: +8 to +13 %).
No RUNTIME/DRIVER API records (they doubled latency): rows get their kernels by the time each kernel's
launch was queued (CUPTI's latency timestamps, `queued_ns`), inside the host window of the row that
launched it, else by GPU window (`trtprof.timeline.kernels.attribute_timeline` says why).

Handover: by default CUPTI's completed buffers are taken raw and read in bulk with numpy
(`cupti_raw.py`: cupti-python would first make a Python object of every record); `handover="python"`, or
TRTPROF_CUPTI_HANDOVER=python, keeps cupti-python's own callback interface, so that the two can be
compared; `info()["handover"]["path"]` says which one ran, and `raw_reason` why the raw one did not.

Optional: without cupti-python, or when CUPTI already serves another client of this process (nsys,
torch.profiler; CUPTI before 13.3 serves one), `start()` returns False and `reason` says why in one
line; nothing here raises into user code. Importing this module imports neither cupti nor torch.

Clock: CUPTI's timestamps read like `time.time_ns()` on the H200, trtprof's like
`time.perf_counter_ns()`. `measure_offset` brackets `cupti.get_timestamp()` between two host reads
several times and keeps the tightest bracket: host = cupti + offset_ns, within +/- error_ns. The offset
is measured at `start()` and again at every `flush()`; `clock["drift_ns"]` says how far it moved (a
wall-clock step), for meta.json.
"""
from __future__ import annotations

import os
import threading
import time

# MEMSET is not among the default kinds: enabled, it hung TensorRT-RTX engine deserialization
# (torch_tensorrt.save, and load, never returned; H200, torch_tensorrt 2.11, scripts/probe_save.py),
# while kernel and memcpy activity alone did not. KernelActivity(kinds=...) still takes it.
KINDS = ("kernel", "memcpy")
# The handover's cost and the flush schedule, measured on cupti-python's path (bench/cupti_handover.py,
# H200, cupti-python 13.0.1, BERT's 138 kernels per call, 2026-12-04): cupti-python turns every record
# into a Python object before our callback copies it out, 70-110 us per record in all, whichever thread
# does it. A buffer that fills is handed over on CUPTI's thread, whose callback holds the GIL inside
# whatever inference runs (3 s stalls with 8 MB buffers); a forced flush at a safe point pays the same
# cost between inferences instead. So: buffers large enough to outlast the flush period (64 MB: no pause at all
# within 400 inferences), flushed at a safe point when half a buffer is estimated to be waiting.
# The raw path (cupti_raw.py) took 1.2 us a record on the H200 (scripts/probe_cupti_raw.py, 2026-12-06);
# the schedule is kept: with it a filled buffer's handover stays off the recorded inferences.
BUFFER_BYTES = 64 << 20     # each buffer CUPTI asks for
RECORD_BYTES = 256          # a kernel record's size, rounded up (CUpti_ActivityKernel10: 200-odd bytes)
FIRST_FLUSH_NS = 1_000_000_000  # the first forced flush, before any rate is known
FLUSH_PERIOD_NS = None      # a fixed period instead of the schedule (bench/cupti_handover.py)
_KIND_ENUM = {"kernel": "CONCURRENT_KERNEL", "memcpy": "MEMCPY", "memset": "MEMSET"}
FIELDS = ("kind", "name", "start_ns", "end_ns", "stream", "correlation", "device", "queued_ns")
HANDOVER_ENV = "TRTPROF_CUPTI_HANDOVER"
HANDOVERS = ("raw", "python")   # the first is the default
_NEEDED = ("activity_register_callbacks", "activity_enable", "activity_disable", "activity_flush_all",
           "get_timestamp", "ActivityKind")


def measure_offset(read, samples: int = 16, clock=time.perf_counter_ns):
    """(offset_ns, error_ns) with clock() ~= read() + offset_ns: the tightest of `samples` brackets
    (clock, read, clock); error_ns is that bracket's half width."""
    best = None
    for _ in range(max(1, samples)):
        t0 = clock()
        c = read()
        t1 = clock()
        if best is None or t1 - t0 < best[1] - best[0]:
            best = (t0, t1, c)
    t0, t1, c = best
    return (t0 + t1) // 2 - c, (t1 - t0 + 1) // 2


def _one_line(exc) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}".rstrip(": ")


def _taken(exc) -> bool:
    return "MULTIPLE_SUBSCRIBERS" in str(exc).upper()


def _ignore(*_args):  # the subscriber's callback: no domain is enabled, so CUPTI never calls it
    return None


class KernelActivity:
    """One process's CUPTI activity source. start() -> bool; pause()/resume() around recorded
    inferences; flush() -> records so far; stop() -> the last records. Safe to call in any state."""

    def __init__(self, kinds=KINDS, buffer_bytes: int | None = None, handover: str | None = None):
        self.kinds = tuple(k for k in kinds if k in _KIND_ENUM)
        self.reason = None          # one line when unavailable
        self.clock = None           # {"source", "offset_ns", "error_ns", "drift_ns"} once started
        self.dropped = self.callback_errors = 0     # records without timestamps; bad records
        self.last_error = None      # one line: the latest failure inside a call that must not raise
        self.resume_failures = 0    # recorded inferences (sampling) for which the kinds could not be enabled
        # CUPTI's latency timestamps (each kernel's `queued`: when its launch entered the command buffer, on
        # the launching thread): True once on, else why not in one line. They cost ~0.1 us a kernel more
        # than kernel activity alone (H100, scripts/probe_launch_time.py, 2026-12-08)
        self.launch_times = None
        self._buffer_bytes = int(buffer_bytes or BUFFER_BYTES)
        self._cupti = self._subscriber = None
        self._codes: dict = {}      # int(ActivityKind) -> our kind name
        self._on: set = set()       # the codes we enabled
        self._started = self._enabled = False
        self._lock = threading.Lock()
        self._pending: list = []
        self._streams: dict = {}
        # what the handover costs the process (meta.json): CUPTI's buffers handed to us, the time our
        # callback spent copying records out, and the time inside activity_flush_all (callbacks included)
        self.handover = {"buffers": 0, "records": 0, "callback_ns": 0, "flushes": 0, "flush_ns": 0,
                         "max_flush_ns": 0, "buffers_on_cupti_thread": 0, "cupti_thread_ns": 0,
                         # which path ran ("raw", "python"; None until one does), why not raw, records CUPTI
                         # says it dropped (raw path only: None on cupti-python's), records read one by one
                         # because a dtype did not match this libcupti's record size, and those sizes
                         "path": None, "raw_reason": None, "cupti_dropped": None, "fallback_records": 0,
                         "mismatch": {}, "buffers_lost": 0}
        want = str(handover or os.environ.get(HANDOVER_ENV) or HANDOVERS[0]).strip().lower()
        if want not in HANDOVERS:
            self.handover["raw_reason"] = f"unknown handover {want!r} (raw or python): raw"
            want = HANDOVERS[0]
        self._want = want
        self._raw = None            # cupti_raw.Reader on the raw path
        self._lost0 = 0             # cupti_raw.lost() when the raw path was attached
        self._flushing = False      # our thread is inside activity_flush_all: a callback now is ours
        self._last_flush = self._next_flush = 0

    # -- availability ------------------------------------------------------------------------------
    def _load(self) -> bool:
        if self._cupti is not None or self.reason is not None:
            return self._cupti is not None
        try:
            from cupti import cupti  # optional dependency: cupti-python
        except Exception as e:  # not installed (ImportError), or libcupti missing or mismatched
            why = "is not installed" if isinstance(e, ImportError) else "did not import"
            self.reason = f"kernel activity off: cupti-python {why} ({_one_line(e)})"
            return False
        missing = [n for n in _NEEDED if not hasattr(cupti, n)]
        missing += [f"ActivityKind.{_KIND_ENUM[k]}" for k in self.kinds
                    if not hasattr(getattr(cupti, "ActivityKind", None), _KIND_ENUM[k])]
        if missing:
            self.reason = f"kernel activity off: this cupti-python lacks {', '.join(missing)}"
            return False
        self._codes = {int(getattr(cupti.ActivityKind, _KIND_ENUM[k])): k for k in self.kinds}
        self._cupti = cupti
        return True

    def available(self) -> bool:
        """cupti-python imports and nothing has failed so far; `reason` says why not. Whether CUPTI is
        free (no nsys, no torch.profiler) is only known once start() tried."""
        return self._load() and self.reason is None

    # -- lifetime ----------------------------------------------------------------------------------
    def start(self, paused: bool = False) -> bool:
        """Claim CUPTI and enable the kinds (unless paused). False, with `reason`, when it cannot.

        cupti.subscribe first: it is how CUPTI says it already serves another client
        (CUPTI_ERROR_MULTIPLE_SUBSCRIBERS_NOT_SUPPORTED), whereas registering activity callbacks
        over another client's would silently steal its buffers."""
        if self._started:
            return True
        if not self.available():
            return False
        c = self._cupti
        try:
            self._subscribe()
            self._register()
            off, err = measure_offset(c.get_timestamp)
            self.clock = {"source": "cupti.get_timestamp", "offset_ns": int(off), "error_ns": int(err),
                          "drift_ns": 0}
            self._started = True
            self._launch_times()
            now = time.perf_counter_ns()
            self._last_flush, self._next_flush = now, now + (FLUSH_PERIOD_NS or FIRST_FLUSH_NS)
            if not paused:
                self._set(True, strict=True)
        except Exception as e:
            self._started = False
            self._release()
            self.reason = ("kernel activity off: CUPTI is already in use in this process (nsys or "
                           f"torch.profiler?): {_one_line(e)}") if _taken(e) \
                else f"kernel activity off: {_one_line(e)}"
            self._raw, h = None, self.handover      # no path runs: the handover must not name one
            h["path"], h["cupti_dropped"] = None, None
            if self._want == "raw":                 # the raw path was asked for and does not run
                h["raw_reason"] = h["raw_reason"] or self.reason
            return False
        return True

    def _launch_times(self) -> None:
        """Ask CUPTI for each kernel's `queued` time (before any kind is enabled); where it refuses, the
        rows get their kernels by GPU window alone, and `launch_times` says why."""
        fn = getattr(self._cupti, "activity_enable_latency_timestamps", None)
        if fn is None:
            self.launch_times = "this cupti-python has no activity_enable_latency_timestamps"
            return
        try:
            fn(1)
            self.launch_times = True
        except Exception as e:
            self.launch_times = _one_line(e)

    def _subscribe(self) -> None:
        """Raises only when CUPTI says it serves another client; any other failure of this probe
        is noted in last_error and collection goes on without it."""
        fn = getattr(self._cupti, "subscribe", None)
        if fn is None:
            return
        try:
            self._subscriber = fn(_ignore, None)
        except Exception as e:
            if _taken(e):
                raise
            self.last_error = _one_line(e)

    def _register(self) -> None:
        """CUPTI's buffer callbacks: the raw path where it can be set up and CUPTI takes its callbacks,
        else cupti-python's, with `raw_reason` (so that `path` names the one that runs). A CUPTI failure
        of cupti-python's registration raises: then no path runs."""
        h = self.handover
        if self._want == "raw":
            try:
                from trtprof.capture import cupti_raw
                reader = cupti_raw.Reader(self._cupti, self._codes)
                reader.lib.attach(self._take_raw, self._buffer_bytes)
            except Exception as e:  # Unavailable, an import failure, CUPTI refusing: cupti-python's path serves
                h["raw_reason"] = _one_line(e)
            else:
                self._raw, self._lost0 = reader, cupti_raw.lost()
                h["path"], h["cupti_dropped"] = "raw", 0
                return
        self._cupti.activity_register_callbacks(self._requested, self._completed)
        h["path"] = "python"

    def _set(self, on: bool, strict: bool = False) -> bool:
        """Enable our kinds, or disable those we enabled: never another client's."""
        c, ok = self._cupti, True
        for code in (self._codes if on else sorted(self._on)):
            try:
                (c.activity_enable if on else c.activity_disable)(code)
                (self._on.add if on else self._on.discard)(code)
            except Exception as e:
                if strict:
                    raise
                self.last_error, ok = _one_line(e), False
        self._enabled = on and ok
        return ok

    @property
    def enabled(self) -> bool:
        """The kinds are on now (not paused)."""
        return self._enabled

    def resume(self) -> bool:
        """Enable the kinds again (before a recorded inference). Never raises; a failure is counted
        (`resume_failures`, said in the capture's notes: that inference's rows have no kernels)."""
        if not self._started or self._enabled:
            return self._started
        ok = self._set(True)
        if not ok:
            self.resume_failures += 1
        return ok

    def pause(self) -> bool:
        """Disable the kinds (after a recorded inference): kernels already launched are still
        recorded. Never raises."""
        return self._started and (not self._enabled or self._set(False))

    def _release(self) -> None:
        c = self._cupti
        if c is None:
            return
        self._set(False)
        if self.launch_times is True:  # a later CUPTI client in the process would pay for them
            try:
                c.activity_enable_latency_timestamps(0)
            except Exception as e:
                self.last_error = _one_line(e)
        if self._raw is not None:
            self._raw.lib.detach(self._take_raw)    # later buffers are released unread
        if self._subscriber is not None:
            try:
                c.unsubscribe(self._subscriber)
            except Exception as e:
                self.last_error = _one_line(e)
            self._subscriber = None

    def stop(self, finalize: bool = False) -> dict:
        """Flush, disable every kind, unsubscribe (and cupti.finalize() when asked: detaches CUPTI
        so that a later profiler in this process finds it free). Returns the last records; never
        raises."""
        try:
            out = self.flush()
            if self._started:
                self._release()
                if finalize and hasattr(self._cupti, "finalize"):
                    self._cupti.finalize()
        except Exception as e:
            self.last_error = _one_line(e)
            out = _columns([])
        self._started = self._enabled = False
        return out

    # -- records -----------------------------------------------------------------------------------
    def _requested(self):
        return self._buffer_bytes, 0  # (buffer size, max records: 0 = as many as fit)

    def _rows(self, activities) -> list:
        """Plain tuples (FIELDS order) from record objects; a bad record is skipped and counted.
        Attributes by getattr: record classes differ by kind/version."""
        out, codes = [], self._codes
        try:
            for a in activities:
                try:
                    kind = codes.get(int(getattr(a, "kind", -1)))
                    if kind is not None:
                        out.append((kind, getattr(a, "name", None) if kind == "kernel" else None,
                                    int(getattr(a, "start", 0)), int(getattr(a, "end", 0)),
                                    int(getattr(a, "stream_id", -1)), int(getattr(a, "correlation_id", -1)),
                                    int(getattr(a, "device_id", -1)),
                                    _stamp(getattr(a, "queued", 0)) if kind == "kernel" else 0))
                except Exception as e:
                    self.callback_errors += 1
                    self.last_error = _one_line(e)
        except Exception as e:  # the batch itself would not iterate
            self.callback_errors += 1
            self.last_error = _one_line(e)
        return out

    def _completed(self, activities) -> None:
        """cupti-python's path, on CUPTI's thread: copy plain values out, never raise."""
        t0 = time.perf_counter_ns()
        out = self._rows(activities)
        self._take([_columns(out)] if out else [], len(out), t0)

    def _take_raw(self, ctx, stream_id, address: int, buf, valid: int) -> None:
        """The raw path, on CUPTI's thread or inside our flush: cupti_raw.Reader reads the buffer (records
        of another size than the dtypes one by one through self._rows); never raise."""
        t0 = time.perf_counter_ns()
        try:
            got = self._raw.buffer(ctx, stream_id, address, buf, valid, self._rows)
        except Exception as e:
            got = {"chunks": [], "records": 0, "errors": 1, "error": _one_line(e)}
        if got["errors"] or got.get("error"):
            self.callback_errors += got["errors"]
            self.last_error = got.get("error") or self.last_error
        self._take(got["chunks"], got["records"], t0, got)

    def _take(self, chunks: list, n: int, t0: int, extra: dict | None = None) -> None:
        """Append a buffer's records under the lock and count the handover (by thread; the raw path's
        dropped, fallback and mismatch figures too)."""
        with self._lock:
            self._pending.extend(chunks)
            h = self.handover
            if extra:
                h["fallback_records"] += extra.get("fallback_records", 0)
                h["cupti_dropped"] += extra.get("cupti_dropped", 0)
                for kind, sizes in extra.get("mismatch", {}).items():
                    h["mismatch"][kind] = sorted(set(h["mismatch"].get(kind, [])) | set(sizes))
            h["buffers"] += 1
            h["records"] += n
            dt = time.perf_counter_ns() - t0
            h["callback_ns"] += dt
            if not self._flushing:  # a full buffer, handed over inside whatever ran
                h["buffers_on_cupti_thread"] += 1
                h["cupti_thread_ns"] += dt

    def flush(self, forced: bool = True) -> dict:
        """Records delivered since the last flush, as numpy arrays keyed by FIELDS, times on the
        host clock. Synchronize first: CUPTI delivers work that has completed. Never raises."""
        if self._started:
            try:
                t0 = time.perf_counter_ns()
                self._flushing = True
                try:
                    self._cupti.activity_flush_all(1 if forced else 0)
                finally:
                    self._flushing = False
                if self._raw is not None:   # drops after the last completed buffer (CUPTI had none to fill)
                    n = self._raw.lib.dropped(None, 0)
                    with self._lock:
                        self.handover["cupti_dropped"] += n
                dt, h = time.perf_counter_ns() - t0, self.handover
                h["flushes"] += 1
                h["flush_ns"] += dt
                h["max_flush_ns"] = max(h["max_flush_ns"], dt)
                off, _err = measure_offset(self._cupti.get_timestamp)
                self.clock["drift_ns"] = max(self.clock["drift_ns"], abs(int(off) - self.clock["offset_ns"]))
            except Exception as e:
                self.last_error = _one_line(e)
        with self._lock:
            chunks, self._pending = self._pending, []
        cols = _concat(chunks)
        n = len(cols["start_ns"])
        self._schedule(n, time.perf_counter_ns())
        good = (cols["start_ns"] > 0) & (cols["end_ns"] > 0)
        self.dropped += n - int(good.sum())
        off = self.clock["offset_ns"] if self.clock else 0
        out = {f: v[good] for f, v in cols.items()}
        out["start_ns"] = out["start_ns"] + off
        out["end_ns"] = out["end_ns"] + off
        import numpy as np

        q = out["queued_ns"]  # 0 (CUPTI_TIMESTAMP_UNKNOWN) or all ones read as -1: unknown
        out["queued_ns"] = np.where(q > 0, q + off, -1)
        return out

    def handover_note(self) -> str | None:
        """One line for the capture's notes: what taking the records from CUPTI cost, and where."""
        h = self.handover
        if not h["records"]:
            return None
        spent = (h["flush_ns"] + h["cupti_thread_ns"]) / 1e9
        how = "raw buffers" if h.get("path") == "raw" else "cupti-python"
        line = (f"kernel activity: taking {h['records']} records from CUPTI took {spent:.2f} s "
                f"({1e6 * spent / h['records']:.1f} us a record, {how}), paid at safe points between "
                "inferences and at the end (in no recorded latency)")
        if h["buffers_on_cupti_thread"]:
            line += (f"; {h['buffers_on_cupti_thread']} buffer(s) filled first and were handed over inside "
                     f"running inferences ({h['cupti_thread_ns'] / 1e9:.2f} s of their callback time), whose "
                     "latencies include it")
        return line

    def dropped_note(self) -> str | None:
        """One line for the capture's notes when records are missing from the kernel table and
        nothing in the table itself shows it: CUPTI dropped them for lack of buffer space, a buffer
        could not be allocated or read (raw path), or the kinds could not be switched on for some
        recorded inferences (sampling)."""
        h, parts = self._count_lost(), []
        if h["cupti_dropped"]:
            parts.append(f"CUPTI dropped {h['cupti_dropped']} record(s) for lack of buffer space "
                         "(kernels.handover.cupti_dropped)")
        if h["buffers_lost"]:
            parts.append(f"{h['buffers_lost']} buffer(s) of records could not be allocated or read "
                         "(kernels.handover.buffers_lost)")
        if self.resume_failures:
            parts.append(f"kernel activity could not be switched on for {self.resume_failures} recorded "
                         f"inference(s) ({self.last_error})")
        if not parts:
            return None
        return ("kernel activity: " + "; ".join(parts) + ": the kernel table misses them, so rows may show "
                "fewer kernels and less GPU busy time than ran")

    def due(self, now: int) -> bool:
        """Whether a forced flush is due at this safe point (perf_counter_ns `now`)."""
        return self._started and now >= self._next_flush

    def _schedule(self, records: int, now: int) -> None:
        """The next forced flush: when half a buffer is estimated to be waiting, at the rate of
        records since the last flush (within 0.1-30 s); FIRST_FLUSH_NS until a rate is known."""
        if FLUSH_PERIOD_NS is not None:
            period = FLUSH_PERIOD_NS
        elif records <= 0 or now <= self._last_flush:
            period = FIRST_FLUSH_NS
        else:
            half = self._buffer_bytes // RECORD_BYTES // 2
            period = min(30_000_000_000, max(100_000_000, half * (now - self._last_flush) // records))
        self._last_flush, self._next_flush = now, now + period

    def stream_id(self, handle):
        """CUPTI's id of a CUDA stream handle (torch's `stream.cuda_stream`), as in the records'
        `stream`; None when this cupti-python cannot say. Windows need it to match by stream."""
        if handle in self._streams:
            return self._streams[handle]
        sid = None
        if self._load():
            for name, args in (("get_stream_id_ex", (0, handle, 0)), ("get_stream_id", (0, handle))):
                fn = getattr(self._cupti, name, None)
                if fn is None:
                    continue
                try:
                    sid = int(fn(*args))
                    break
                except Exception as e:
                    self.last_error = _one_line(e)
        self._streams[handle] = sid
        return sid

    def _count_lost(self) -> dict:
        """The handover counts with the raw path's lost buffers brought up to date."""
        if self._raw is not None:
            from trtprof.capture import cupti_raw
            self.handover["buffers_lost"] = cupti_raw.lost() - self._lost0
        return self.handover

    def info(self) -> dict:
        """What meta.json should say about this source."""
        h = self._count_lost()
        h = dict(h, mismatch=dict(h["mismatch"]))
        if self._raw is not None:
            h["library"] = self._raw.lib.path
        return {"available": self.reason is None and self._cupti is not None, "reason": self.reason,
                "kinds": list(self.kinds), "clock": self.clock, "launch_times": self.launch_times,
                "dropped": self.dropped,
                "callback_errors": self.callback_errors, "last_error": self.last_error,
                "resume_failures": self.resume_failures, "handover": h}


def _concat(chunks) -> dict:
    """Column chunks (one per buffer) -> one set of columns."""
    import numpy as np
    if not chunks:
        return _columns([])
    if len(chunks) == 1:
        return dict(chunks[0])
    return {f: np.concatenate([c[f] for c in chunks]) for f in FIELDS}


def _stamp(v) -> int:
    """A CUPTI timestamp as a signed int64 (all ones, an unknown time on some kinds, becomes -1)."""
    v = int(v or 0)
    return v - (1 << 64) if v >= 1 << 63 else v


def _columns(recs, offset_ns: int = 0) -> dict:
    """Tuples (FIELDS order, CUPTI clock) -> dict of numpy arrays on the host clock."""
    import numpy as np
    cols = list(zip(*recs)) if recs else [()] * len(FIELDS)
    out = {f: np.array(v, dtype=object if f in ("kind", "name") else np.int64) for f, v in zip(FIELDS, cols)}
    out["start_ns"] = out["start_ns"] + np.int64(offset_ns)
    out["end_ns"] = out["end_ns"] + np.int64(offset_ns)
    return out
