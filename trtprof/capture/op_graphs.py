"""Graphs that call `tensorrt::execute_engine` themselves: saved, exported and loaded programs.

`torch_tensorrt.save` inlines each `_run_on_acc_N` as a `call_function` node of
`torch.ops.tensorrt.execute_engine.default` with a `get_attr` of `_run_on_acc_N_engine`, and the
PyTorch fallback subgraphs as plain nodes (v2.11.0 `dynamo/_exporter.py`, `inline_trt_modules`);
`load(...).module()` gives back such a GraphModule. The node holds the OpOverload, so nothing on
`torch.ops.tensorrt` is looked up when it runs. Adopting a graph:

- re-points each engine node to `ops.call` (one Python function between the graph and the op);
- brackets each fallback region, the compute nodes between two engine calls (and before the first /
  after the last), with two marker calls taking the region's inputs and outputs, which open and
  close a fallback range as `_run_on_gpu_N` does on a live module (same rows, GPU events at the
  boundaries). Why markers and not timing the gap from the op hook: the gap also holds the
  bookkeeping nodes (getitem, shape asserts) and would give no shapes; an fx Interpreter would cost
  microseconds per node;
- recompiles once (about a millisecond for a small graph, measured by bench/bench_op_path.py) and
  wraps the model's forward for an inference row per call (graph._hook).

Names: engines from their attribute (`_run_on_acc_0_engine`, `_run_on_acc_0.engine` ->
`_run_on_acc_0`), else the engine's own name; a region between `_run_on_acc_A` and `_run_on_acc_B` is `_run_on_gpu_{A+1}`, as the
partitioner numbered it, else `fallback_K`. `restore` undoes all of it.
"""
from __future__ import annotations

import operator
import re

import torch

from trtprof.capture import graph, ops
from trtprof.capture.state import ModelInfo, SubgraphInfo

_ACC = re.compile(r"_run_on_acc_(\d+)$")
# how export names an engine constant: torch_tensorrt's exporter `_run_on_acc_0_engine`, a plain
# torch.export of the live module `_run_on_acc_0.engine` or `_run_on_acc_0.lifted_custom_0`
_ENGINE_ATTR = re.compile(r"(_engine|\.engine|\.lifted_custom_\d+)$")
# nodes that are bookkeeping, not fallback compute (export's shape checks and guards)
_BOOKKEEPING = ("sym_size", "sym_numel", "sym_stride", "sym_storage_offset", "_assert", "guards",
                "sym_constrain", "_check", "_set_grad_enabled")


def is_engine_target(target) -> bool:
    return target is ops.call or isinstance(target, ops.OpProxy) or \
        "tensorrt.execute_engine" in str(getattr(target, "_name", "") or target).replace("::", ".")


def engine_nodes(gm) -> list:
    try:
        return [n for n in gm.graph.nodes if n.op == "call_function" and is_engine_target(n.target)]
    except Exception:
        return []


class Region:
    """Stands for a fallback subgraph of an adopted graph (the key of its ranges)."""

    __slots__ = ("name", "__weakref__")

    def __init__(self, name):
        self.name = name


def _marker(fn, region, label):
    def marker(*args):
        fn(region, args)
    marker.__name__ = marker.__qualname__ = f"trtprof_{label}"
    return marker


def _open(region, args):
    graph._fallback_pre(region, args)


def _close(region, outs):
    graph._fallback_post(region, (), outs)


def _compute(n, engines) -> bool:
    if n.op not in ("call_function", "call_method", "call_module") or n in engines:
        return False
    if n.target is operator.getitem or getattr(n.target, "__name__", "").startswith("trtprof_"):
        return False
    text = str(n.target)
    return not any(b in text for b in _BOOKKEEPING)


def _regions(g, engines: list) -> list:
    """(first node, last node, name) of each fallback region, in graph order."""
    order = list(g.nodes)
    pos = {n: i for i, n in enumerate(order)}
    eset = set(engines)
    cuts = [-1] + [pos[e] for e in engines] + [len(order)]
    nums = [None] + [_acc_number(e) for e in engines] + [None]
    out = []
    for k in range(len(cuts) - 1):
        inner = [n for n in order[cuts[k] + 1:cuts[k + 1]] if _compute(n, eset)]
        if not inner:
            continue
        a, b = nums[k], nums[k + 1]
        if a is not None:
            name = f"_run_on_gpu_{a + 1}"
        elif b is not None and b > 0:
            name = f"_run_on_gpu_{b - 1}"
        else:
            name = f"fallback_{k}"
        out.append((inner[0], inner[-1], name))
    return out


def _engine_arg(node):
    """The node an engine call takes its engine from (`execute_engine(inputs, engine)`), or None."""
    return node.args[1] if len(node.args) > 1 else None


def _attr_name(node) -> str | None:
    eng = _engine_arg(node)
    if getattr(eng, "op", None) == "get_attr":
        return _ENGINE_ATTR.sub("", eng.target).rsplit(".", 1)[-1]
    return None


def _reaches_output(node) -> bool:
    """Whether an engine node's outputs (directly or through getitem) are the graph's outputs."""
    users = list(node.users)
    for u in users:
        if u.op == "output" or u.target is operator.getitem and any(v.op == "output" for v in u.users):
            return True
    return False


def _acc_number(node):
    m = _ACC.search(_attr_name(node) or "")
    return int(m.group(1)) if m else None


def _engine_of(gm, node):
    eng = _engine_arg(node)
    if getattr(eng, "op", None) != "get_attr":
        return None
    obj = gm
    for part in eng.target.split("."):
        obj = getattr(obj, part)
    return obj


def adopt(ins, gm) -> ModelInfo | None:
    """Instrument a graph that calls the op; None when it has no engine node (or is adopted)."""
    if gm in ins.models:
        return ins.models[gm]
    nodes = engine_nodes(gm)
    if not nodes:
        return None
    g = gm.graph
    for n in [n for n in g.nodes if getattr(n.target, "__name__", "").startswith("trtprof_fallback")]:
        g.erase_node(n)  # a copy of a graph adopted before (deepcopy, ExportedProgram.module)
    model = ModelInfo(f"model{ins.model_count}", type(gm).__name__, shareable=True)
    ins.model_count += 1
    ins.models[gm] = model
    ins.register(gm, model)
    saved = []
    for n in nodes:
        engine = _engine_of(gm, n)
        if engine is not None and id(engine) not in ins.by_id:
            name = _attr_name(n) or ops.engine_name(engine, f"engine{len(model.children)}")
            sub = SubgraphInfo(name, "engine", ops.kind_of(ins, engine), model)
            sub.requires_oa = ops.requires_output_allocator(engine)
            sub.reread = True
            sub.returns_output = _reaches_output(n)
            model.children.append((engine, ops.register(ins, engine, sub)))
        saved.append((n, n.target))
        n.target = ops.call
    markers = []
    for first, last, name in _regions(g, nodes):
        region = Region(name)
        sub = SubgraphInfo(name, "fallback", "torch", model)
        model.children.append((region, ins.register(region, sub)))
        members = []
        n = first
        while True:
            members.append(n)
            if n is last:
                break
            n = n.next
        mset = set(members)
        inputs = list(dict.fromkeys(a for m in members for a in m.all_input_nodes
                                    if a not in mset and a.op != "get_attr"))
        outputs = [m for m in members if any(u not in mset for u in m.users)]
        with g.inserting_before(first):
            markers.append(g.call_function(_marker(_open, region, "fallback_open"), tuple(inputs)))
        with g.inserting_after(last):
            markers.append(g.call_function(_marker(_close, region, "fallback_close"), tuple(outputs)))
    gm.recompile()
    ins.op.graphs.append((gm, saved, markers, model))
    graph._hook(ins, gm, graph._model_pre, graph._model_post, model)
    return model


def restore(entries: list) -> None:
    """Put every adopted graph back as it was (targets, no markers) and recompile it."""
    for gm, saved, markers, _ in reversed(entries):
        for n, target in saved:
            n.target = target
        for m in markers:
            gm.graph.erase_node(m)
        gm.recompile()
    entries.clear()


def runnable_graphs(ins) -> list:
    """The live GraphModules that call the op and are not yet the capture's. Left out: an
    ExportedProgram's own `graph_module` (it takes the lifted weights as inputs and is not what runs;
    `.module()` makes a runnable copy, adopted as it is made), and graphs whose every engine is one
    the capture already records through its runtime module (what torch.export and
    torch_tensorrt.save leave alive: the exporter puts the live module's own engine object in the
    graph, v2.11.0 `_exporter.py` `inline_trt_modules`), and graphs that take their engine as an
    input (`_lifted`)."""
    import gc

    gm_type, ep_type = torch.fx.GraphModule, getattr(torch.export, "ExportedProgram", ())
    # collect first: a GraphModule is a reference cycle (module <-> graph), so the graph_module of an
    # ExportedProgram already dropped (`torch_tensorrt.load(p).module()`, export inside save) stays in
    # gc.get_objects(), without its program, until the collector runs
    gc.collect()
    objs = gc.get_objects()
    # type(), not isinstance(): some objects warn when asked for __class__
    lifted = {id(o.graph_module) for o in objs if ep_type and issubclass(type(o), ep_type)}
    out = []
    for o in objs:
        if issubclass(type(o), gm_type) and id(o) not in lifted and o not in ins.models:
            nodes = engine_nodes(o)
            if nodes and not any(_lifted(n) for n in nodes) and not all(_known(ins, o, n) for n in nodes):
                out.append(o)
    return out


def _lifted(node) -> bool:
    """The engine comes in as an input (a lifted constant): the graph of an export, not one that
    runs by itself (torch_tensorrt.save's export leaves one, alive until its cycle is collected)."""
    return getattr(_engine_arg(node), "op", None) == "placeholder"


def _known(ins, gm, node) -> bool:
    try:
        engine = _engine_of(gm, node)
    except Exception:
        return False
    info = ins.by_id.get(id(engine)) if engine is not None else None
    # a live runtime module's engine: found through its module (a model), not a loaded graph's
    return info is not None and info.model is not None and not info.reread


def scan(ins) -> int:
    """Adopt the runnable graphs alive now (programs loaded before the capture began)."""
    return sum(adopt(ins, gm) is not None for gm in runnable_graphs(ins))


def owned_returns(ins) -> list[str]:
    """Engines of adopted graphs, called in this capture, whose outputs leave the graph in buffers
    the engine owns."""
    names = []
    for _, _, _, model in ins.op.graphs if ins.op is not None else ():
        for engine, sub in model.children:  # read now: a user may set the flag after loading
            if sub.kind == "engine" and sub.calls and sub.returns_output and \
                    ops.outputs_unowned(engine) is False:
                names.append(sub.name)
    return list(dict.fromkeys(names))


def uncovered(ins) -> list[str]:
    """Runnable graphs still not adopted when the capture stops (made other than through
    `.module()`): their engine calls were not recorded, which the capture's notes say, naming each
    graph's engines so that a user can tell which program it is."""
    out = []
    for gm in runnable_graphs(ins):
        names = [_attr_name(n) or str(n.name) for n in engine_nodes(gm)]
        out.append(f"{type(gm).__name__} with {', '.join(names[:3])}{' ...' if len(names) > 3 else ''}")
    return out
