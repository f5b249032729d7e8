"""The `trtprof` command line: one module per subcommand, each only parsing, calling and printing.

Errors reach the user through one place (`common.Group`): every `TrtprofError` is one line on
stderr and its exit code. The subcommand modules import only click at their top, so `--help` and the
commands that read captures never load torch.
"""
import click

from trtprof._version import __version__
from trtprof.cli import common
from trtprof.cli.capture import capture
from trtprof.cli.compare import compare
from trtprof.cli.export import export
from trtprof.cli.nsys_import import nsys_import
from trtprof.cli.report import report


@click.group(cls=common.Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="trtprof")
def main():
    """Profile Torch-TensorRT inference: output allocation, engine execution, fallbacks.

    \b
    Example:
      trtprof capture examples/bert_prealloc.py --python-runtime
      trtprof report reports/cases/small-cpp
    """


main.add_command(capture)
main.add_command(compare)
main.add_command(export)
main.add_command(nsys_import)
main.add_command(report)
