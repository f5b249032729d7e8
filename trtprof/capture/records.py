"""The raw record one instrumented range produces, in the order the hot path fills it.

Why a flat list and not a dataclass: the hooks run inside every inference, and building a list of
positional slots is the cheapest way to hand a range over. The data model (`trtprof.model.schema`)
gives each slot its dtype and meaning; this module only fixes names and order, so the capture layer
never depends on pandas.
"""

FIELDS = (
    "seq",            # row number in recording order (per capture)
    "pid",            # process that recorded the row
    "thread",         # threading.get_ident() of the caller
    "model",          # label of the top-level compiled module ("model0", ...), "" when none
    "inference",      # index of that module's top-level call, -1 when outside one
    "subgraph",       # submodule name ("_run_on_acc_0", "_run_on_gpu_1") or the model label
    "subgraph_kind",  # engine | fallback | model
    "runtime",        # python | cpp (Torch-TensorRT runtimes) | torch (fallback, model)
    "event",          # inference | call | alloc | exec | fallback
    "call",           # per-subgraph call index (0-based)
    "host_start_ns",  # host clock (time.perf_counter_ns, CLOCK_MONOTONIC)
    "host_end_ns",
    "gpu_start_ns",   # GPU start/end from CUDA events, converted to the host clock; None without CUDA
    "gpu_end_ns",
    "stream",         # CUDA stream handle the events were recorded on
    "input_shapes",   # shapes of the call's tensor inputs, "(1,128);(1,128)"
    "shapes",         # alloc rows: shapes allocated; exec/call rows: output shapes
    "bytes",          # alloc rows: bytes allocated
    "prealloc",       # pre-allocated-outputs mode was on for this call
    "alloc_phase",    # alloc rows: before_exec | after_enqueue
    "outputs",        # engine call/exec rows: preallocated | new
    "shape_changed",  # input shapes differ from this subgraph's previous call
    "reallocated",    # pre-alloc mode on, but outputs had to be created before execution
    "new_segment",    # alloc rows (C++ runtime): served by a new cudaMalloc segment, not the cache
    "exclude",        # left out of statistics (e.g. first call after a pre-alloc mode flip)
    "note",           # free text: why a row is special
)
INDEX = {name: i for i, name in enumerate(FIELDS)}
N = len(FIELDS)


def blank():
    """A record with every slot empty; the hooks fill the slots they know."""
    return [None] * N
