"""Command-line interface. Importing this package registers every command on `app`.

The import order is the order `resnet-cli --help` lists the commands, so it is not sorted.
"""

from resnet_cli.cli import commands  # noqa: F401, I001  (list, summary)
from resnet_cli.cli import flops_cmd  # noqa: F401  (flops)
from resnet_cli.cli import compare_cmd  # noqa: F401  (compare, table)
from resnet_cli.cli import debug_cmd  # noqa: F401  (debug-shapes)
from resnet_cli.cli import bench_cmd  # noqa: F401  (bench, sweep)
from resnet_cli.cli import spec_cmd  # noqa: F401  (spec)
from resnet_cli.cli.app import app, main

__all__ = ["app", "main"]
