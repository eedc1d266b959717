"""Resumable training state: model weights (safetensors), optimizer and EMA state, step, losses.

A checkpoint is a folder written under a temporary name and renamed into place, so a run killed
mid-save leaves the previous checkpoint intact. Optimizer state is loaded with
``torch.load(weights_only=True)``: tensors and plain containers only, never arbitrary objects.
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file


class EMA:
    """Exponential moving average of parameters, with warm-up ``min(decay, (1+s)/(10+s))``."""

    def __init__(self, module: torch.nn.Module, decay: float = 0.999):
        self.decay = decay
        self.shadow = {k: v.detach().clone().float() for k, v in module.state_dict().items()}

    @torch.no_grad()
    def update(self, module: torch.nn.Module, step: int) -> None:
        d = min(self.decay, (1 + step) / (10 + step))
        state = module.state_dict()
        floats = [k for k, v in state.items() if v.dtype.is_floating_point]
        # one fused call for all float tensors (hundreds of small ones: a launch each on an accelerator)
        torch._foreach_lerp_([self.shadow[k] for k in floats], [state[k].float() for k in floats], 1 - d)
        for k, v in state.items():
            if not v.dtype.is_floating_point:
                self.shadow[k].copy_(v)

    def copy_to(self, module: torch.nn.Module) -> None:
        module.load_state_dict({k: v.to(module.state_dict()[k].dtype) for k, v in self.shadow.items()})


def apply_update(loss, optimizer, parameters, modules: dict, emas: dict, step: int, losses: list[float], bar,
                 digits: int = 4) -> int:
    """One update, as every trainer makes it: backward, gradients clipped to norm 1, optimizer step, the EMA
    of each module, and the loss recorded and shown on ``bar`` (mean of the last 50). Returns the new step."""
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(parameters, 1.0)
    optimizer.step()
    step += 1
    for name, module in modules.items():
        emas[name].update(module, step)
    losses.append(loss.detach().item())
    bar.update(1)
    bar.set_postfix(loss=f"{np.mean(losses[-50:]):.{digits}f}")
    return step


def out_of_time(start: float, max_minutes: float | None) -> bool:
    """Has a run started at ``start`` (``time.monotonic()``) used its ``max_minutes``?"""
    return max_minutes is not None and time.monotonic() - start > max_minutes * 60


def save_checkpoint(folder: Path, step: int, modules: dict, emas: dict, optimizer, losses: list[float],
                    extra: dict | None = None) -> None:
    folder = Path(folder)
    tmp = folder.with_name(folder.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    for name, m in modules.items():
        save_file({k: v.detach().cpu().contiguous() for k, v in m.state_dict().items()}, tmp / f"{name}.safetensors")
    for name, e in emas.items():
        save_file({k: v.cpu().contiguous() for k, v in e.shadow.items()}, tmp / f"{name}.ema.safetensors")
    torch.save(optimizer.state_dict(), tmp / "optimizer.pt")
    (tmp / "state.json").write_text(json.dumps({"step": step, "losses": losses, "saved": time.time(), **(extra or {})}))
    old = folder.with_name(folder.name + ".old")
    shutil.rmtree(old, ignore_errors=True)
    if folder.exists():
        folder.rename(old)
    tmp.rename(folder)
    shutil.rmtree(old, ignore_errors=True)


def load_checkpoint(folder: Path, modules: dict, emas: dict, optimizer,
                    device: torch.device | str = "cpu") -> tuple[int, list[float], dict]:
    """Restore into the given objects (EMA weights onto ``device``); return (step, losses, state). Step 0 if there
    is none."""
    folder = Path(folder)
    if not (folder / "state.json").is_file():
        return 0, [], {}
    for name, m in modules.items():
        m.load_state_dict(load_file(folder / f"{name}.safetensors"))
    for name, e in emas.items():
        e.shadow = load_file(folder / f"{name}.ema.safetensors", device=str(device))
    optimizer.load_state_dict(torch.load(folder / "optimizer.pt", weights_only=True))
    state = json.loads((folder / "state.json").read_text())
    return int(state["step"]), list(state["losses"]), state
