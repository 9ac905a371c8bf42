"""Torch helpers shared by the neural lessons (autoencoders, GANs, DDPM): seeded MLPs,
switchable optimizers, exact state copies and the DDPM lessons' error per noise level.

Every lesson owns its random generators: layers are initialised from a ``torch.Generator`` (never
torch's global RNG, so two trainers interleaved give the same numbers as each alone), and a state
dict holds only tensors and plain Python values, so ``torch.load(weights_only=True)`` reads it back.
Imported only by lesson modules, which the window imports lazily.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import nn

from studio.pipelines.train.base import ParamSpec, check_loss

if TYPE_CHECKING:
    from accelerate import Accelerator

OPTIMIZERS: tuple[str, ...] = ("adam", "sgd", "rmsprop")
OPTIMIZER_NAMES: dict[str, str] = {"adam": "Adam", "sgd": "SGD", "rmsprop": "RMSProp"}


def lr_spec(default: float, help: str = "") -> ParamSpec:
    """The learning-rate knob every lesson has (the CLI's ``--set lr=…`` relies on the name)."""
    return ParamSpec("lr", default, "float", minimum=1e-6, maximum=10.0, live=True,
                     label="Learning rate", log_scale=True,
                     help=help or "Step size of the optimizer; too high diverges, too low crawls.")


def optimizer_spec(default: str = "adam") -> ParamSpec:
    return ParamSpec("optimizer", default, "choice", choices=OPTIMIZERS, live=True,
                     choice_labels=OPTIMIZER_NAMES,
                     label="Optimizer", help="Switching starts the new optimizer with fresh state.")


def seeded_generator(seed: int, stream: int) -> torch.Generator:
    """A CPU generator for one purpose (``stream``) of a run, independent of the others."""
    return torch.Generator().manual_seed((int(seed) * 1_000_003 + stream) % (2**63))


def linear(n_in: int, n_out: int, generator: torch.Generator) -> nn.Linear:
    """An ``nn.Linear`` with PyTorch's default init, drawn from ``generator``.

    ``skip_init`` avoids the global RNG that ``nn.Linear.__init__`` would consume.
    """
    layer = torch.nn.utils.skip_init(nn.Linear, n_in, n_out)
    bound = 1.0 / math.sqrt(n_in)
    with torch.no_grad():
        layer.weight.uniform_(-bound, bound, generator=generator)
        layer.bias.uniform_(-bound, bound, generator=generator)
    return layer


def mlp(sizes: list[int], generator: torch.Generator, activation: type[nn.Module] = nn.ReLU
        ) -> nn.Sequential:
    """Linear layers of the given widths with ``activation`` between them (none after the last)."""
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:], strict=False)):
        layers.append(linear(a, b, generator))
        if i < len(sizes) - 2:
            layers.append(activation())
    return nn.Sequential(*layers)


def make_optimizer(kind: str, params: Any, lr: float,
                   betas: tuple[float, float] = (0.9, 0.999)) -> torch.optim.Optimizer:
    """A fresh optimizer of ``kind`` (adam | sgd | rmsprop); SGD gets momentum 0.9 (plain SGD
    is too slow to watch)."""
    if kind == "adam":
        return torch.optim.Adam(params, lr=lr, betas=betas)
    if kind == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=0.9)
    if kind == "rmsprop":
        return torch.optim.RMSprop(params, lr=lr)
    raise ValueError(f"unknown optimizer {kind}")


def clipped_step(trainer: Any, optimizer: torch.optim.Optimizer, loss: torch.Tensor,
                 params: Any, max_norm: float = 1.0) -> float:
    """One update from ``loss``: its gradients clipped to ``max_norm``, the trainer's step
    counted and the loss checked (a NaN stops the run before the weights change), then the
    optimizer's step. Returns the loss's value."""
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    nn.utils.clip_grad_norm_(params, max_norm)
    trainer.step_count += 1
    value = float(loss.detach())
    check_loss(value, trainer.step_count)
    optimizer.step()
    return value


def set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    for group in optimizer.param_groups:
        group["lr"] = lr


def tensor_state(module: nn.Module) -> dict[str, torch.Tensor]:
    """A copy of a module's weights that later training does not change."""
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def optimizer_state(optimizer: torch.optim.Optimizer) -> dict[str, Any]:
    return copy.deepcopy(optimizer.state_dict())


def generator_states(generators: dict[str, torch.Generator]) -> dict[str, torch.Tensor]:
    return {name: g.get_state().clone() for name, g in generators.items()}


def load_generator_states(generators: dict[str, torch.Generator],
                          states: dict[str, torch.Tensor]) -> None:
    for name, g in generators.items():
        g.set_state(states[name].clone())


def to_numpy(t: torch.Tensor) -> np.ndarray:
    return t.detach().cpu().numpy().astype("float32", copy=True)


def layer_histograms(layers: Sequence[tuple[str, nn.Conv2d | nn.ConvTranspose2d | nn.Linear]],
                     bins: int) -> list[dict[str, Any]]:
    """Per layer (name, module with a ``weight``): histograms of its weights and of their last
    gradients (empty before the first backward pass), and the gradient's norm."""
    out = []
    for name, layer in layers:
        w = to_numpy(layer.weight).ravel()
        grad = layer.weight.grad
        g = to_numpy(grad).ravel() if grad is not None else np.zeros(0, np.float32)
        wc, we = np.histogram(w, bins=bins)
        gc, ge = np.histogram(g, bins=bins) if g.size else (np.zeros(bins),
                                                            np.linspace(-1, 1, bins + 1))
        out.append({"name": name, "weights": (wc.astype(np.float32), we.astype(np.float32)),
                    "grads": (gc.astype(np.float32), ge.astype(np.float32)),
                    "grad_norm": float(np.linalg.norm(g)) if g.size else 0.0})
    return out


def new_accelerator(**kwargs: Any) -> Accelerator:
    """``accelerate.Accelerator(**kwargs)`` for a run of this process. accelerate keeps one
    mixed-precision setting per process and refuses another; a lesson or LoRA run after one with
    other settings (the window runs several, as do the CLI, the self-test and the tests) starts
    the state afresh. The processes of ``accelerate launch`` (its PartialState) are kept."""
    from accelerate import Accelerator
    from accelerate.state import AcceleratorState

    AcceleratorState._reset_state()
    return Accelerator(**kwargs)


# -- the DDPM lessons' ε-MSE per noise level (``ddpm`` and ``ddpm2d``) ------------------------------
def bucket_series(buckets: int) -> tuple[str, ...]:
    """The series a DDPM lesson logs: the loss, then ``mse_t0`` (least noise) … one a bucket."""
    return ("loss",) + tuple(f"mse_t{i}" for i in range(buckets))


def bucket_labels(timesteps: int, buckets: int) -> list[str]:
    """The timesteps each bucket holds, for its bar: "t 0–199", "t 200–399", …"""
    return [f"t {b * timesteps // buckets}–{(b + 1) * timesteps // buckets - 1}"
            for b in range(buckets)]


def note_bucket(metrics: dict[str, float], smoothed: list[float], b: int, value: float) -> None:
    """Log ``value`` as bucket ``b``'s error and fold it into the bars' running average."""
    metrics[f"mse_t{b}"] = value
    old = smoothed[b]
    smoothed[b] = value if math.isnan(old) else 0.9 * old + 0.1 * value
