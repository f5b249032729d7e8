"""BERT-base for the GPU scripts: built from `BertConfig()` (random weights, no hub download).

Shared by bert_prealloc.py and the benchmarks so every figure comes from the same model and compile
settings: fp16, int32 inputs (input_ids, token_type_ids), `torch_tensorrt.compile(ir="dynamo")`.
"""
from __future__ import annotations

import importlib.util

import torch


def build_bert(device: str = "cuda", half: bool = True):
    """BERT-base with random weights, or None when transformers is missing."""
    try:
        from transformers import BertConfig, BertModel
    except ImportError:
        return None
    model = BertModel(BertConfig(torchscript=True)).eval()
    return (model.half() if half else model).to(device)


def bert_inputs(batch: int = 1, seq: int = 128, device: str = "cuda"):
    return [torch.randint(0, 5, (batch, seq), dtype=torch.int32, device=device) for _ in range(2)]


def compile_bert(model, batch: int = 1, seq: int = 128, *, python_runtime: bool = False,
                 graph_breaks: bool = False, dynamic_seq: tuple[int, int] | None = None):
    """Compile like the tutorial. `graph_breaks`: GELU left to PyTorch (one fallback per layer);
    `dynamic_seq=(min, max)`: a dynamic sequence-length range, so shape changes are legal."""
    import torch_tensorrt

    if dynamic_seq:
        lo, hi = dynamic_seq
        inputs = [torch_tensorrt.Input(min_shape=(batch, lo), opt_shape=(batch, seq), max_shape=(batch, hi),
                                       dtype=torch.int32) for _ in range(2)]
    else:
        inputs = bert_inputs(batch, seq)
    kwargs = {}
    if importlib.util.find_spec("tensorrt_rtx") is None:  # TensorRT-RTX is strongly typed: no precisions
        kwargs["enabled_precisions"] = {torch.half}
    if graph_breaks:
        kwargs.update(torch_executed_ops={"torch.ops.aten.gelu.default"}, min_block_size=1)
    return torch_tensorrt.compile(model, ir="dynamo", inputs=inputs, use_python_runtime=python_runtime,
                                  **kwargs)
