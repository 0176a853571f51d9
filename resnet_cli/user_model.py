"""The user's own model, named `path/to/file.py:factory` or `package.module:attr`, built without touching the original.

The attribute may be a function returning an `nn.Module`, an `nn.Module` subclass, or a module instance.
Factories and classes are called under `torch.device(...)`, so nothing is allocated on meta; an instance is
deep-copied before it is moved, so the user's object keeps its device, mode and hooks; so is a factory's result that
holds modules the factory did not make (`return healthy`). The user's print() goes to stderr, and sys.exit() in
their code is a UserError. Importing this module does not import torch (the CLI parses MODEL before any command runs).
"""

from __future__ import annotations

import ast
import contextlib
import copy
import functools
import importlib
import importlib.util
import inspect
import os
import sys
import sysconfig
import traceback
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from resnet_cli.errors import UserError
from resnet_cli.spec import DEVICES, DTYPES, SpecError, parse_shape
from resnet_cli.units import typed_first_line

if TYPE_CHECKING:
    from torch import nn

DEFAULT_INPUT = (1, 3, 224, 224)


@dataclass(frozen=True)
class UserModelRequest:
    """A model from the user's code, the keyword arguments for its factory, and the input to run it on."""

    reference: str  # "path/to/file.py:factory" or "package.module:attr"
    kwargs: tuple[tuple[str, Any], ...]
    input_shape: tuple[int, ...]
    device: str = "meta"
    dtype: str = "float32"  # the input's dtype; the model keeps its own
    weights: str | None = None
    default_input: bool = False  # no --input: input_shape is the default 1x3x224x224

    @property
    def name(self) -> str:
        return self.reference

    @property
    def label(self) -> str:
        """How titles name the model (as ModelRequest.label does for presets)."""
        return self.reference


def is_user_model_reference(text: str | None) -> bool:
    """True for 'file.py:attr', 'package.module:attr' and 'file.py'; preset names never look like that."""
    return bool(text) and (":" in text or text.endswith(".py"))  # type: ignore[union-attr]


def parse_model_args(items: list[str] | None) -> dict[str, Any]:
    """--arg key=value pairs as keyword arguments; values are Python literals (10, 0.5, True, (3, 4)) or strings."""
    kwargs: dict[str, Any] = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        key = key.strip()
        if not sep or not key.isidentifier():
            raise UserError(f"--arg {item!r}: write key=value with a Python name as key, e.g. --arg num_classes=10")
        try:
            kwargs[key] = ast.literal_eval(value.strip())
        except (ValueError, SyntaxError):
            kwargs[key] = value.strip()
    return kwargs


def parse_user_input_shape(text: str | None) -> tuple[int, ...]:
    """--input for a user model: 'NxCxHxW', 'CxHxW' (batch 1) or 'S' (1x3xSxS); None gives 1x3x224x224."""
    return DEFAULT_INPUT if text is None else parse_shape(text)


def user_model_request(
    reference: str,
    args: list[str] | None,
    *,
    input: str | None = None,
    device: str = "meta",
    dtype: str = "float32",
    weights: str | None = None,
    **build_flags: Any,
) -> UserModelRequest:
    """A UserModelRequest from raw flag values; build flags are refused (they describe presets, not user code)."""
    given = [name for name, value in build_flags.items() if value is not None]
    if given:
        flag = "--" + given[0].replace("_", "-")
        raise UserError(
            f"{flag} changes a preset, but {reference} is your own model; change it in your code "
            f"or pass it to the factory with --arg key=value"
        )
    if device not in DEVICES:
        raise SpecError(f"--device {device!r} is not one of {', '.join(DEVICES)}")
    if dtype not in DTYPES:
        raise SpecError(f"--dtype {dtype!r} is not one of {', '.join(DTYPES)}")
    return UserModelRequest(
        reference=reference,
        kwargs=tuple(parse_model_args(args).items()),
        input_shape=parse_user_input_shape(input),
        device=device,
        dtype=dtype,
        weights=weights,
        default_input=input is None,
    )


def build_user_model(request: UserModelRequest) -> nn.Module:
    """Build the referenced model on `request.device` (weights loaded if given); the user's objects stay untouched.

    With weights, the model is built twice: on meta to check the file, then on the device to load it."""
    from torch import nn

    from resnet_cli.model import check_state_dict, read_state_dict, resolve_device

    device = resolve_device(request.device)
    if request.weights is not None:
        # Keys, shapes and dtypes are checked against a meta build, so a file that does not fit allocates nothing;
        # only then is the model built on the device (meta keeps no values to load).
        state = read_state_dict(request.weights)
        model = build_user_model(replace(request, device="meta", weights=None))
        check_state_dict(model, state, request.weights, _size_arguments(request))
        if device.type != "meta":
            model = build_user_model(replace(request, weights=None))
            model.load_state_dict(state, strict=True)
        return model
    kwargs = dict(request.kwargs)
    target_text, attr = _split(request.reference)
    folder = _source_folder(target_text)
    # The user's print() goes to stderr while their code is imported and built: --format json and csv stay parseable.
    with _on_sys_path(folder), contextlib.redirect_stdout(sys.stderr):
        target = _resolve(request.reference, target_text, attr)
        if isinstance(target, nn.Module):
            if kwargs:
                raise UserError(
                    f"--arg {next(iter(kwargs))}=...: {request.reference} is a module instance, which takes no "
                    f"arguments; point MODEL at a class or function to pass arguments"
                )
            try:
                model = copy.deepcopy(target)  # the user's instance is never moved or hooked
            except Exception as exc:
                raise UserError(f"{request.reference}: the module instance cannot be copied ({typed_first_line(exc)}); "
                                f"point MODEL at a function that builds it") from None
            model = model.to(device)
        elif callable(target):
            model = _call_factory(request.reference, target, kwargs, device)
        else:
            raise UserError(
                f"{request.reference} is a {type(target).__name__}, not an nn.Module, an nn.Module class "
                f"or a function returning one"
            )
    return model


# The factory parameters that set a classifier's outputs and the input channels, as common model code names them.
_SIZE_PARAMETERS = {"classes": ("num_classes", "n_classes", "classes"), "channels": ("in_channels", "in_chans")}


def _size_arguments(request: UserModelRequest) -> dict[str, str]:
    """The --arg forms that set the classes and input channels, for the ones the user's factory takes."""
    target_text, attr = _split(request.reference)
    try:
        with _on_sys_path(_source_folder(target_text)), contextlib.redirect_stdout(sys.stderr):
            names = set(inspect.signature(_resolve(request.reference, target_text, attr)).parameters)
    except Exception:  # no signature (a builtin, a module instance): no hint, only the mismatch
        return {}
    found = {size: next((n for n in options if n in names), None) for size, options in _SIZE_PARAMETERS.items()}
    return {size: f"--arg {name}={{}}" for size, name in found.items() if name is not None}


def _call_factory(reference: str, factory: Any, kwargs: dict[str, Any], device: Any) -> nn.Module:
    import torch
    from torch import nn

    label = f"{reference}({', '.join(f'{k}={v!r}' for k, v in kwargs.items())})"
    from resnet_cli.meta_shapes import ShapeOnlyMeta

    with _modules_given_state() as built:
        try:
            with device, ShapeOnlyMeta() if device.type == "meta" else contextlib.nullcontext():
                model = factory(**kwargs)
        except SystemExit as exc:  # sys.exit() in the factory must not become resnet-cli's exit code
            raise UserError(f"{label} raised {typed_first_line(exc)}{_where(exc)}") from None
        except Exception as exc:
            if device.type != "meta" or not _meta_specific(exc):
                raise UserError(f"{label} raised {typed_first_line(exc)}{_where(exc)}") from None
            # Some factories need real tensors (loading weights, .item()); build on cpu, then move the result. Any
            # other failure would only repeat (and a factory that downloads would download twice).
            try:
                with torch.device("cpu"):
                    model = factory(**kwargs)
            except (Exception, SystemExit) as cpu_exc:
                raise UserError(f"{label} raised {typed_first_line(cpu_exc)}{_where(cpu_exc)}") from None
    if not isinstance(model, nn.Module):
        raise UserError(f"{label} returned a value of type {type(model).__name__}, not an nn.Module")
    if any(id(m) not in built and _holds_state(m) for m in model.modules()):
        # A module made before the call (`return healthy`, `nn.Sequential(backbone, head)`) is the user's: copy it.
        try:
            model = copy.deepcopy(model)
        except Exception as exc:
            raise UserError(f"{label} returned a module that existed before the call and cannot be copied "
                            f"({typed_first_line(exc)}); return a new module") from None
    # Parameters a factory placed explicitly (device="cpu") follow the others, as model.to(device) would move them.
    return model.to(device)


# Messages of errors that only meta tensors cause: the factory reads values, copies data or hits a missing kernel.
_META_ONLY = ("meta", "item()", "tolist", "data-dependent", "no data", "data_ptr", "storage")


def _meta_specific(error: BaseException) -> bool:
    """Whether building on the CPU could get past `error`: raised because tensors were on meta."""
    text = str(error).lower()
    return isinstance(error, NotImplementedError) or any(p in text for p in _META_ONLY)


@contextlib.contextmanager
def _modules_given_state() -> Iterator[set[int]]:
    """The ids of modules that register a parameter, buffer or submodule inside the block: those it builds."""
    from torch.nn.modules import module as torch_module

    built: set[int] = set()

    def note(module: nn.Module, name: str, value: Any) -> None:
        built.add(id(module))

    handles = [
        torch_module.register_module_parameter_registration_hook(note),
        torch_module.register_module_buffer_registration_hook(note),
        torch_module.register_module_module_registration_hook(note),
    ]
    try:
        yield built
    finally:
        for handle in handles:
            handle.remove()


def _holds_state(module: nn.Module) -> bool:
    """Has parameters, buffers or submodules of its own (a module without them is not changed by moving it).

    TorchScript modules register theirs in C++, unseen by the hooks; they are refused later anyway."""
    import torch

    if isinstance(module, torch.jit.ScriptModule):
        return False
    own = (module.parameters(recurse=False), module.buffers(recurse=False), module.children())
    return any(next(items, None) is not None for items in own)


def _split(reference: str) -> tuple[str, str]:
    """'a/b.py:make' -> ('a/b.py', 'make'); the attribute may be dotted ('pkg.mod:Builder.small')."""
    if ":" not in reference:
        return reference, ""
    target, _, attr = reference.rpartition(":")
    if not target.strip():
        raise UserError(f"{reference}: no file or module before ':'; give path/to/file.py:factory or "
                        "package.module:attr")  # fmt: skip
    return target, attr


def _is_file(target: str) -> bool:
    return target.endswith(".py") or "/" in target or os.sep in target


def _source_folder(target: str) -> str:
    # As `python file.py` does, the file's own folder is importable; for package.module, the working directory.
    return str(Path(target).resolve().parent) if _is_file(target) else os.getcwd()


@contextlib.contextmanager
def _on_sys_path(folder: str) -> Iterator[None]:
    added = folder not in sys.path
    if added:
        sys.path.insert(0, folder)
    try:
        yield
    finally:
        if added and folder in sys.path:
            sys.path.remove(folder)


def _resolve(reference: str, target: str, attr: str) -> Any:
    module = _import_file(reference, Path(target)) if _is_file(target) else _import_module(reference, target)
    if not attr:
        found = _candidates(module)
        example = f"{target}:{found[0]}" if found else f"{target}:build_model"
        listed = f" (found: {', '.join(found)})" if found else ""
        raise UserError(f"{reference}: name what to build after a colon, e.g. {example}{listed}")
    obj: Any = module
    for part in attr.split("."):
        if not hasattr(obj, part):
            found = _candidates(module)
            listed = f"; models and factories there: {', '.join(found)}" if found else ""
            raise UserError(f"{reference}: {target} has no attribute {part!r}{listed}")
        obj = getattr(obj, part)
    return obj


def _import_file(reference: str, path: Path) -> Any:
    if not path.is_file():
        raise UserError(f"{reference}: no such file {path}")
    name = f"resnet_cli_user_{path.stem}_{abs(hash(str(path.resolve())))}"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise UserError(f"{reference}: {path} is not a Python file")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses and pickling look the module up by name
    try:
        spec.loader.exec_module(module)
    except (Exception, SystemExit) as exc:
        del sys.modules[name]
        hint = _package_hint(path, reference) if isinstance(exc, ImportError) and "relative import" in str(exc) else ""
        raise UserError(f"{reference}: importing {path} raised {typed_first_line(exc)}{_where(exc)}{hint}") from None
    return module


def _package_hint(path: Path, reference: str) -> str:
    """'; it is part of the package P: use P.module:attr ...' for a file whose relative imports need its package."""
    folder, parts = path.resolve().parent, [path.stem]
    while (folder / "__init__.py").is_file():
        parts.insert(0, folder.name)
        folder = folder.parent
    if len(parts) == 1:
        return ""
    attr = reference.rpartition(":")[2] if ":" in reference else "ATTR"
    return (f"; the file uses relative imports, so load it as part of its package: {'.'.join(parts)}:{attr} "
            f"(run from {folder} or put it on PYTHONPATH)")


def _import_module(reference: str, name: str) -> Any:
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as exc:
        if exc.name and name.startswith(exc.name):
            raise UserError(
                f"{reference}: no module named {exc.name!r} (run from the folder that contains it, add it to "
                f"PYTHONPATH, or give a file path such as path/to/{name.replace('.', '/')}.py:ATTR)"
            ) from None
        raise UserError(f"{reference}: importing {name} raised {typed_first_line(exc)}{_where(exc)}") from None
    except (Exception, SystemExit) as exc:
        raise UserError(f"{reference}: importing {name} raised {typed_first_line(exc)}{_where(exc)}") from None


def _candidates(module: Any) -> list[str]:
    """Names in `module` that could be built: nn.Module classes, functions and instances defined there."""
    from torch import nn

    found = []
    for name, value in vars(module).items():
        if name.startswith("_"):
            continue
        if isinstance(value, nn.Module):
            found.append(name)
        elif (inspect.isclass(value) and issubclass(value, nn.Module)) or inspect.isfunction(value):
            if getattr(value, "__module__", None) == module.__name__:
                found.append(name)
    return found


def _where(exc: BaseException) -> str:
    if isinstance(exc, SyntaxError) and exc.filename and exc.lineno:
        return f" ({exc.filename}:{exc.lineno})"
    frame = innermost_user_frame(exc)
    return f" ({frame.filename}:{frame.lineno})" if frame else ""


def innermost_user_frame(exc: BaseException) -> traceback.FrameSummary | None:
    """The innermost traceback frame in the user's code: outside torch, the standard library and resnet_cli.

    resnet_cli's model.py counts as user code, so a preset's failure points into the block that raised.
    """
    frames = traceback.extract_tb(exc.__traceback__)
    for frame in reversed(frames):
        if is_user_file(frame.filename):
            return frame
    return None


@functools.lru_cache(maxsize=4096)
def is_user_file(filename: str) -> bool:
    """Whether a frame's file is the user's code: not torch, the standard library, site-packages or resnet_cli
    (except its model.py, so that a preset's failure points into the block that raised)."""
    path = Path(filename).resolve()
    package = Path(__file__).resolve().parent
    if path.is_relative_to(package):
        return path == package / "model.py"
    if filename.startswith("<"):
        return False
    return not any(path.is_relative_to(folder) for folder in _library_folders())


def _library_folders() -> list[Path]:
    folders = {Path(sysconfig.get_paths()[key]).resolve() for key in ("stdlib", "purelib", "platlib")}
    torch_module = sys.modules.get("torch")
    if torch_module is not None and getattr(torch_module, "__file__", None):
        folders.add(Path(torch_module.__file__).resolve().parent)
    return sorted(folders)
