"""Op-level tracing of a network for the latency lookup table (ProxylessNAS, arXiv:1812.00332,
§3.3; FBNet, arXiv:1812.03443, §3.2: a network's latency as the sum of its ops' latencies).

One forward pass with hooks on every module splits the network into **units** and
**containers**. The root and every module whose class name or path is in `containers` (a
DARTS cell, say) is a container; any other module called directly by a container is a unit, timed
as a whole (what it calls inside is part of it). A container's *glue* is what its own
`forward` does between its units: the additions and concatenation of a cell, the pooling
before a classifier. Its latency is measured by running the container with every unit
replaced by a stub that replays the unit's recorded output (see `latency_table.py`).

Every unit call gets a stable key: a hash of the module's class, its `repr` (which holds
every constructor size: channels, kernel, stride, groups, ...) and the shapes, dtypes and
memory formats of its inputs. A container's glue key leaves the module's `repr` out (it
would name the arch's ops) and uses its input, its output and its children's output
signatures instead. `nn.Sequential` containers are a loop with no tensor work, so their
glue is modelled as `a + b·(number of calls)` under one fixed key.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

SEQUENTIAL_KEY = "sequential"
_ADDRESS = re.compile(r" at 0x[0-9a-fA-F]+")


@dataclass
class Call:
    """One recorded call of a unit or container (tensors are kept only when asked for)."""

    module: nn.Module
    path: str
    kind: str  # "unit", "container" or "sequential" (an nn.Sequential container)
    in_sig: str
    args: tuple[Any, ...] = ()
    kwargs: dict[str, Any] = field(default_factory=dict)
    output: Any = None
    out_sig: str = ""
    key: str = ""
    label: str = ""
    children: list[Call] = field(default_factory=list)


def tensor_signature(t: torch.Tensor) -> str:
    """`[1,8,16,16]f32cl`: shape, dtype and memory format (contiguous, channels-last or
    the strides), which decides the kernels a CPU picks."""
    if t.is_contiguous():
        fmt = "c"
    elif t.dim() == 4 and t.is_contiguous(memory_format=torch.channels_last):
        fmt = "cl"
    else:
        fmt = "s" + ",".join(map(str, t.stride()))
    dtype = str(t.dtype).removeprefix("torch.")
    return f"[{','.join(map(str, t.shape))}]{dtype}{fmt}"


def value_signature(value: Any) -> str:
    """Signature of call arguments: tensors by shape/format, scalars by value."""
    if isinstance(value, torch.Tensor):
        return tensor_signature(value)
    if isinstance(value, list | tuple):
        return "(" + ",".join(value_signature(v) for v in value) + ")"
    if isinstance(value, dict):
        return "{" + ",".join(f"{k}:{value_signature(v)}" for k, v in sorted(value.items())) + "}"
    if value is None or isinstance(value, bool | int | float | str):
        return repr(value)
    return type(value).__name__


def module_text(module: nn.Module) -> str:
    """The module's class and `repr` without object addresses: its constructor sizes."""
    return f"{type(module).__qualname__}|{_ADDRESS.sub('', repr(module))}"


def unit_key(module: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any] | None = None,
             *, text: str | None = None) -> str:
    """The table key of a unit called with `args` (what the trace records for it)."""
    text = module_text(module) if text is None else text
    return _hash(f"unit|{text}|{value_signature(args)}|{value_signature(kwargs or {})}")


def _hash(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:20]


def _copy(value: Any) -> Any:
    if isinstance(value, torch.Tensor):
        return value.detach().clone()  # preserve_format: keeps the strides
    if isinstance(value, list | tuple):
        return type(value)(_copy(v) for v in value)
    if isinstance(value, dict):
        return {k: _copy(v) for k, v in value.items()}
    return value


def _kind(module: nn.Module, path: str, containers: frozenset[str], is_root: bool) -> str:
    if not (is_root or type(module).__name__ in containers or path in containers):
        return "unit"
    if type(module).forward is nn.Sequential.forward:
        return "sequential"
    return "container"


def trace(model: nn.Module, inputs: tuple[Any, ...], *, containers: frozenset[str],
          keep_tensors: bool = False) -> Call:
    """Run `model(*inputs)` once (eval, inference mode) and return its call tree.

    Args:
        model: the network; it is put in eval mode.
        inputs: positional inputs of the forward pass.
        containers: class names or module paths of the modules whose glue is measured (the
            root always is one); the modules they call directly are units.
        keep_tensors: keep copies of every call's inputs and outputs (to time them later).
    """
    paths: dict[int, str] = {}
    for name, m in model.named_modules():
        paths.setdefault(id(m), name or "<root>")
    texts: dict[int, str] = {}
    stack: list[Call | None] = []  # None marks a call inside a unit (part of that unit)
    roots: list[Call] = []

    def pre(module: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        parent = stack[-1] if stack else None
        if stack and (parent is None or parent.kind == "unit"):
            stack.append(None)
            return
        path = paths.get(id(module), "?")
        call = Call(module, path, _kind(module, path, containers, not stack),
                    in_sig=value_signature(args) + value_signature(kwargs))
        if keep_tensors:
            call.args, call.kwargs = _copy(args), _copy(kwargs)
        if call.kind == "unit":
            text = texts.setdefault(id(module), module_text(module))
            call.key = unit_key(module, args, kwargs, text=text)
            call.label = f"{type(module).__name__} {call.in_sig} @{call.path}"
        (parent.children if parent is not None else roots).append(call)
        stack.append(call)

    def post(module: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any],
             output: Any) -> None:
        call = stack.pop()
        if call is None:
            return
        call.out_sig = value_signature(output)
        if keep_tensors:
            call.output = _copy(output)
        if call.kind == "sequential":
            call.key, call.label = SEQUENTIAL_KEY, "nn.Sequential loop (a + b·calls)"
        elif call.kind == "container":
            children = ";".join(child.out_sig for child in call.children)
            call.key = _hash(f"glue|{type(module).__qualname__}|{call.in_sig}|"
                             f"{call.out_sig}|{children}")
            call.label = f"glue of {type(module).__name__} {call.in_sig} @{call.path}"

    handles = []
    for m in model.modules():
        handles.append(m.register_forward_pre_hook(pre, with_kwargs=True))
        handles.append(m.register_forward_hook(post, with_kwargs=True))
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode():
            model(*inputs)
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)
    return roots[0]


def walk(call: Call) -> Iterator[Call]:
    """Every call of the tree, parents before children."""
    yield call
    for child in call.children:
        yield from walk(child)
