"""The tutorial's three cases as plain inference loops, to run under `trtprof capture --prealloc ...`.

    trtprof capture --prealloc alternate:50 examples/bert_cases.py small --iters 600
    trtprof capture --prealloc alternate:25 examples/bert_cases.py breaks --iters 300
    trtprof capture --prealloc alternate:50 examples/bert_cases.py shapes --iters 600

small  : BERT-base fp16, batch 1, seq 128, one engine (the tutorial's "small inference"; --batch/--seq
         change the input, e.g. a batch large enough that the GPU, not the host's launches, sets the pace)
breaks : the same with every GELU left to PyTorch: one fallback per layer ("multiple graph breaks")
shapes : a dynamic sequence range; the sequence length alternates every --period inferences between
         128 and 96 ("input shape changes")
The script itself never touches the pre-allocation mode: trtprof sets it.

--wrapper K: alternate blocks of K inferences plain and K through the module that
`torch_tensorrt.runtime.enable_cudagraphs` returns (whole-graph CUDA graphs on `breaks`, per-engine on
`small`), a fresh wrapper per block, so one capture gives CUDA graphs off vs on of the runtime's own
wrapper (its warm-up and capture calls are left out of the statistics):

    trtprof capture examples/bert_cases.py breaks --iters 300 --wrapper 25
"""
from __future__ import annotations

import argparse
import contextlib
import sys

import torch

from bert_models import bert_inputs, build_bert, compile_bert


class FirstOutput(torch.nn.Module):
    """BERT's first output (the last hidden states) alone: Torch-TensorRT 2.11's
    CudaGraphsTorchTensorRTModule clones every output, and a transformers ModelOutput has no clone."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, input_ids, attention_mask):  # named: torch.export matches inputs to dynamic shapes
        return self.model(input_ids, attention_mask)[0]


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("case", choices=["small", "breaks", "shapes"])
    p.add_argument("--python-runtime", action="store_true")
    p.add_argument("--iters", type=int, default=600)
    p.add_argument("--warmup", type=int, default=20)
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--seq", type=int, default=128, help="sequence length (shapes: the longer of the two)")
    p.add_argument("--period", type=int, default=1, help="shapes: inferences per sequence length")
    p.add_argument("--wrapper", type=int, default=0, metavar="K",
                   help="alternate K plain inferences with K through enable_cudagraphs' module")
    args = p.parse_args(argv)
    if not torch.cuda.is_available():
        print("no CUDA: these cases need a GPU and torch_tensorrt", file=sys.stderr)
        return 0
    import torch_tensorrt

    model = build_bert()
    if args.wrapper:  # the wrapper clones each output: give it BERT's hidden states as one tensor
        model = FirstOutput(model)
    trt = compile_bert(model, args.batch, args.seq, python_runtime=args.python_runtime,
                       graph_breaks=args.case == "breaks",
                       dynamic_seq=(args.seq // 2, args.seq) if args.case == "shapes" else None)
    seqs = [args.seq, args.seq * 3 // 4] if args.case == "shapes" else [args.seq]
    batches = {s: bert_inputs(args.batch, s) for s in seqs}
    with torch.no_grad():
        for i in range(args.warmup):
            trt(*batches[seqs[(i // args.period) % len(seqs)]])
            torch.cuda.synchronize()
        block = args.wrapper or args.iters
        for start in range(0, args.iters, block):
            graphs = args.wrapper and (start // block) % 2 == 1
            with (torch_tensorrt.runtime.enable_cudagraphs(trt) if graphs else contextlib.nullcontext(trt)) as m:
                for i in range(start, min(start + block, args.iters)):
                    m(*batches[seqs[((args.warmup + i) // args.period) % len(seqs)]])
                    torch.cuda.synchronize()  # one inference at a time, like the tutorial's timing loop
    engines = sum(1 for n, _ in trt.named_children() if n.startswith("_run_on_acc"))
    fallbacks = sum(1 for n, _ in trt.named_children() if n.startswith("_run_on_gpu"))
    print(f"{args.case} (batch {args.batch}, seq {args.seq}): {args.iters} inferences after {args.warmup} warm-ups; {engines} engines, "
          f"{fallbacks} fallbacks")
    return 0


if __name__ == "__main__":
    sys.exit(main())
