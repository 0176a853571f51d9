"""Options shared by commands: the build flags, collapsed into one ModelRequest, and --format."""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, Literal, Optional

import typer

from resnet_cli.errors import UserError
from resnet_cli.spec import (
    BUILD_FLAGS,
    DEVICES,
    DTYPES,
    BuildFlag,
    read_spec_file,
    request_from_flags,
    request_with_spec_file,
    with_file_fields,
)

BUILD = "Build flags (override the preset field by field)"
RUN = "Model, input and device"

FormatOption = Annotated[
    Literal["table", "json", "csv", "markdown"],
    typer.Option("--format", "-f", help="Output format."),
]


def _opt(*names: str, help: str, panel: str = BUILD, **kwargs: Any) -> Any:
    return typer.Option(*names, help=help, rich_help_panel=panel, **kwargs)


def _build_flag_parameter(flag: BuildFlag) -> inspect.Parameter:
    """The Typer option of one ResNetSpec field, from its declaration (BUILD_FLAGS); None keeps the preset's value."""
    names: tuple[str, ...] = (f"{flag.option}/--no-{flag.name}",) if flag.kind == "bool" else ()
    value_type = {"choice": Literal[flag.choices], "int": int, "float": float, "bool": bool, "int-list": str}[flag.kind]
    annotation = Annotated[Optional[value_type], _opt(*names, help=flag.help)]
    return inspect.Parameter(flag.field, inspect.Parameter.KEYWORD_ONLY, annotation=annotation, default=None)


def build_parameters(default_device: str) -> list[inspect.Parameter]:
    """MODEL, the build flags (each defaulting to 'keep the preset') and the run options, as keyword parameters."""
    run_options: list[tuple[str, Any, Any]] = [
        ("input", Annotated[Optional[str], _opt(
            "--input", "-i", help="Input NxCxHxW; 3x224x224 = batch 1; 224 = 1x3x224x224. \\[default: 1x3x224x224; 1x3x32x32 for the cifar stem]",
            panel=RUN)], None),
        ("weights", Annotated[Optional[str], _opt(help="State dict to load strictly into the model.", panel=RUN)], None),
        ("device", Annotated[Literal[DEVICES], _opt(
            help="meta computes shapes without allocating; cpu/cuda run for real.", panel=RUN)], default_device),
        ("dtype", Annotated[Literal[DTYPES], _opt(help="Parameter and input dtype.", panel=RUN)], "float32"),
    ]  # fmt: skip
    model = Annotated[Optional[str], typer.Argument(
        help="Preset name (see `resnet-cli list`) or 'custom' (= resnet50's spec changed by the flags).",
        show_default=False)]  # fmt: skip
    return [
        inspect.Parameter("model", inspect.Parameter.KEYWORD_ONLY, annotation=model, default=None),
        *(_build_flag_parameter(flag) for flag in BUILD_FLAGS.values()),
        *(inspect.Parameter(n, inspect.Parameter.KEYWORD_ONLY, annotation=a, default=d) for n, a, d in run_options),
    ]


USER_MODEL_HELP = (
    "Preset name, 'custom' (= resnet50's spec changed by the flags), or your own model: "
    "path/to/file.py:factory or package.module:attr (a function or nn.Module class, or a module instance)."
)
ModelArgOption = Annotated[
    Optional[list[str]],
    typer.Option("--arg", help="key=value passed to your model's factory (repeatable); values are Python literals.",
                 rich_help_panel=RUN, show_default=False, metavar="KEY=VALUE"),
]
# --spec FILE: the build flags' values from a YAML or JSON file (resnet-cli spec prints one); flags beside it win.
SPEC_FILE_PARAMETER = inspect.Parameter("spec_file", inspect.Parameter.KEYWORD_ONLY, default=None, annotation=Annotated[
    Optional[str], _opt("--spec", help="YAML or JSON spec file (as `resnet-cli spec` prints); flags override it.",
                        metavar="FILE", show_default=False)])  # fmt: skip


def with_model_request(
    default_device: str = "meta", user_models: bool = False, skip: tuple[str, ...] = ()
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Give a command every build flag and --spec FILE; the command receives them as one `request: ModelRequest`.

    With `user_models`, MODEL may also name the user's own model (plus `--arg key=value`); the command then
    receives a `resnet_cli.user_model.UserModelRequest` instead. `skip` leaves run options out (they keep their
    defaults).
    """

    def decorate(func: Callable[..., Any]) -> Callable[..., Any]:
        own = [p for p in inspect.signature(func, eval_str=True).parameters.values() if p.name != "request"]
        build = [p for p in build_parameters(default_device) if p.name not in skip]
        build_names = [p.name for p in build]
        if user_models:
            model_param = build[0].replace(annotation=Annotated[Optional[str], typer.Argument(
                help=USER_MODEL_HELP, show_default=False)])  # in "Arguments": one panel name per kind
            arg_param = inspect.Parameter("arg", inspect.Parameter.KEYWORD_ONLY, annotation=ModelArgOption, default=None)
            dtype_help = _opt(help="Input dtype; a preset's parameters too (your own model keeps its dtypes).", panel=RUN)
            dtype_annotation = Annotated[Literal[DTYPES], dtype_help]
            rest = [p.replace(annotation=dtype_annotation) if p.name == "dtype" else p for p in build[1:]]
            build = [model_param, *rest, arg_param]
        params = [build[0], SPEC_FILE_PARAMETER, *own, *build[1:]]

        @functools.wraps(func)
        def command(**kwargs: Any) -> Any:
            flags = {name: kwargs.pop(name) for name in build_names}
            model = flags.pop("model")
            spec_path = kwargs.pop("spec_file")
            if model is not None and not model.strip():
                raise UserError(
                    f"MODEL {model!r} is empty; give a preset (see `resnet-cli list`), custom, or your own model as "
                    f"path/to/file.py:factory"
                )
            if user_models:
                from resnet_cli.user_model import is_user_model_reference, user_model_request

                model_args = kwargs.pop("arg")
                if is_user_model_reference(model):
                    if spec_path is not None:
                        raise UserError(
                            f"--spec {spec_path} describes a preset's spec, but {model} is your own model; change "
                            f"it in your code or pass it to the factory with --arg key=value"
                        )
                    return func(request=user_model_request(model, model_args, **flags), **kwargs)
                if model_args:
                    raise UserError(
                        f"--arg {model_args[0]}: arguments go to your own model (path/to/file.py:factory or "
                        f"package.module:attr), but MODEL {model or 'custom'!r} is a preset"
                    )
            if spec_path is not None:
                return func(request=request_with_spec_file(read_spec_file(spec_path), model, **flags), **kwargs)
            return func(request=request_from_flags(model, **flags), **kwargs)

        return with_signature(command, params)

    return decorate


def with_signature(command: Callable[..., Any], params: list[inspect.Parameter]) -> Callable[..., Any]:
    """Make Typer read `params` (all keyword-only) as the options of `command`, a `functools.wraps` wrapper."""
    del command.__wrapped__  # Typer must read the new signature, not the wrapped function's
    command.__signature__ = inspect.Signature(  # type: ignore[attr-defined]
        [p.replace(kind=inspect.Parameter.KEYWORD_ONLY) for p in params]
    )
    command.__annotations__ = {p.name: p.annotation for p in params}
    return command


def with_build_flags(skip: tuple[str, ...] = ()) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Give a command the build flags (without MODEL and `skip`) and --spec FILE as one `flags` dict, to apply to
    several models; a file naming its own `model:` is refused (it describes one network)."""

    def decorate(func: Callable[..., Any]) -> Callable[..., Any]:
        own = [p for p in inspect.signature(func, eval_str=True).parameters.values() if p.name != "flags"]
        build = [p for p in build_parameters("meta") if p.name not in ("model", *skip)]
        names = [p.name for p in build]

        @functools.wraps(func)
        def command(**kwargs: Any) -> Any:
            spec_path = kwargs.pop("spec_file")
            flags = {name: kwargs.pop(name) for name in names}
            if spec_path is not None:
                spec_file = read_spec_file(spec_path)
                if spec_file.model is not None:
                    raise UserError(
                        f"--spec {spec_path} names model: {spec_file.model}, but this command applies the file's "
                        f"fields to every MODEL it takes; remove the model: line"
                    )
                flags = with_file_fields(spec_file, flags)
            return func(flags=flags, **kwargs)

        return with_signature(command, [*own, SPEC_FILE_PARAMETER, *build])

    return decorate


def amp_option(panel: str) -> Any:
    """--amp bf16|fp16 (torch.autocast to that dtype), in the command's help panel; `bench` and `flops --mode train`
    share it."""
    return Annotated[
        Optional[Literal["bf16", "fp16"]],
        typer.Option(help="Mixed precision: torch.autocast to this dtype.", show_default=False, rich_help_panel=panel),
    ]

PlotOption = Annotated[
    Optional[str],
    typer.Option("--plot", help="Also write a chart here; .png or .svg (needs matplotlib).", show_default=False),
]


def check_plot(path: str | None) -> None:
    """Before any work: a UserError (exit 2) when the --plot path cannot be written (see check_plot_path)."""
    if path is not None:
        from resnet_cli.render.plots import check_plot_path

        check_plot_path(path)


def write_plot(path: str, title: str, panels: list) -> None:
    """Write a --plot bar chart and say where on stderr (stdout stays the result, e.g. JSON)."""
    from resnet_cli.render.plots import write_bar_figure

    say_plot_written(write_bar_figure(path, title, panels))


def say_plot_written(path: Path) -> None:
    """'Plot written to PATH' on stderr."""
    from rich.console import Console

    Console(stderr=True, highlight=False, emoji=False).print(f"Plot written to {path}", markup=False)


BUDGET_PANEL = "Budgets for CI (exit 1 when over; docs/ci.md)"


def with_budgets(func: Callable[..., Any]) -> Callable[..., Any]:
    """Give a command the --max-* options of `analysis.budgets.BUDGETS`; it receives them parsed, as one
    `budgets: list[Limit]` (a malformed value stops with exit 2 before any work)."""
    from resnet_cli.analysis.budgets import BUDGETS, parse_limits

    own = [p for p in inspect.signature(func, eval_str=True).parameters.values() if p.name != "budgets"]
    options = [
        inspect.Parameter(budget.parameter, inspect.Parameter.KEYWORD_ONLY, default=None, annotation=Annotated[
            Optional[str], typer.Option(budget.flag, help=budget.help, metavar=budget.metavar, show_default=False,
                                        rich_help_panel=BUDGET_PANEL)])
        for budget in BUDGETS
    ]  # fmt: skip

    @functools.wraps(func)
    def command(**kwargs: Any) -> Any:
        given = {budget.parameter: kwargs.pop(budget.parameter) for budget in BUDGETS}
        return func(budgets=parse_limits(given), **kwargs)

    return with_signature(command, [*own, *options])


def say_over_budget(result: Any, limits: list) -> bool:
    """One 'Budget exceeded: ...' line on stderr per limit `result` is above; True when there was any."""
    from rich.console import Console

    from resnet_cli.analysis.budgets import over_budget
    from resnet_cli.units import format_bytes

    exceeded = over_budget(result, limits)
    console = Console(stderr=True, soft_wrap=True, highlight=False, emoji=False)
    for over in exceeded:
        limit, value, unit = over.limit, over.figure.value, " B" if over.limit.budget.in_bytes else ""
        size = f" ({format_bytes(value)})" if unit else ""
        console.print(f"Budget exceeded: {over.figure.measure} {value:,}{unit}{size} > {limit.budget.flag} {limit.text} "
                      f"({limit.value:,}{unit})", markup=False)  # fmt: skip
    return bool(exceeded)


def _check_output(value: str | None) -> str | None:
    """Before any work: a UserError (exit 2) when the --output file cannot be written."""
    if value is not None:
        check_output_path(value)
    return value


OutputOption = Annotated[
    Optional[str],
    typer.Option("--output", "-o", help="Write the result to this file instead of stdout.", show_default=False,
                 metavar="FILE", callback=_check_output),
]


def check_output_path(path: str) -> None:
    """A UserError for an --output path in a missing folder, a folder, or a file that cannot be written (no
    permission, a read-only file system); the path is left as it was."""
    from resnet_cli.render.plots import check_writable

    check_writable(path, "--output", example="report.json")
