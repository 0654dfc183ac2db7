"""Shared helper: replace every nn.Linear of the decoder (not the LM head) with a quantized module."""

from __future__ import annotations

from collections.abc import Callable


def linear_layers(model, skip=("lm_head",)):
    """(parent, attribute name, module) of every torch.nn.Linear outside `skip`."""
    import torch

    out = []
    for name, module in model.named_modules():
        for child_name, child in module.named_children():
            full = f"{name}.{child_name}" if name else child_name
            if isinstance(child, torch.nn.Linear) and not any(full.endswith(s) for s in skip):
                out.append((module, child_name, child))
    return out


def swap_linears(model, make: Callable, skip=("lm_head",)) -> int:
    """Replace each Linear with `make(linear)`, freeing the dense weight as it goes; returns the count."""
    import torch

    n = 0
    for parent, name, lin in linear_layers(model, skip):
        setattr(parent, name, make(lin))
        del lin
        n += 1
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    return n


def is_linear_filter(skip=("lm_head",)):
    """A torchao `filter_fn` that quantizes decoder Linears but not the LM head (like bnb's default)."""
    import torch

    def fn(module, fqn: str) -> bool:
        return isinstance(module, torch.nn.Linear) and not any(fqn.endswith(s) for s in skip)

    return fn
