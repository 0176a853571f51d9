"""resnet-cli: build any ResNet variant from flags and inspect it.

`from resnet_cli import build_model, ResNetSpec`; torch is imported only when a model is built.
"""

from typing import Any

from resnet_cli.errors import SpecError, UserError
from resnet_cli.spec import PRESETS, ResNetSpec

__all__ = ["PRESETS", "ResNetSpec", "SpecError", "UserError", "build_model", "trace_model"]
__version__ = "0.1.0"


def __getattr__(name: str) -> Any:
    # Lazy so that `resnet-cli --help` never pays for importing torch.
    if name == "build_model":
        from resnet_cli.model import build_model

        return build_model
    if name == "trace_model":
        from resnet_cli.trace import trace_model

        return trace_model
    raise AttributeError(f"module 'resnet_cli' has no attribute {name!r}")
