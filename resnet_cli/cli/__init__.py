"""Command-line interface. Importing this package registers every command on `app`."""

from resnet_cli.cli import commands  # noqa: F401  (registers list, summary)
from resnet_cli.cli import bench_cmd  # noqa: F401  (registers bench, sweep)
from resnet_cli.cli import flops_cmd  # noqa: F401  (registers flops)
from resnet_cli.cli import compare_cmd  # noqa: F401  (registers compare, table)
from resnet_cli.cli import debug_cmd  # noqa: F401  (registers debug-shapes)
from resnet_cli.cli.app import app, main

__all__ = ["app", "main"]
