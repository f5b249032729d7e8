"""The `trtprof` command line: one module per subcommand, each only parsing and printing."""
import click

from trtprof import __version__
from trtprof.cli.capture import capture
from trtprof.cli.compare import compare
from trtprof.cli.export import export
from trtprof.cli.nsys_import import nsys_import
from trtprof.cli.report import report


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="trtprof")
def main():
    """Profile Torch-TensorRT inference: output allocation, engine execution, fallbacks.

    \b
    Example:
      trtprof capture scripts/bert_prealloc.py --python-runtime
    """


main.add_command(capture)
main.add_command(compare)
main.add_command(export)
main.add_command(nsys_import)
main.add_command(report)
