"""The trainer interface every lesson implements, and the description of its knobs.

A trainer is built from a config dict (validated against its :class:`ParamSpec` list) and a seed,
and is deterministic for that pair: the same config, seed and sequence of ``step()`` /
``set_param()`` calls give the same metrics. ``step()`` does one unit of training and returns that
step's metrics; ``snapshot()`` returns plain data (numpy arrays, floats) for the plots; the state
can be saved and loaded so that a run paused, saved, loaded and resumed equals an uninterrupted one.
No Qt here; torch is imported by the lesson modules, never by this one.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar


def _pairs(names: Mapping[str, str] | tuple[tuple[str, str], ...]) -> tuple[tuple[str, str], ...]:
    """A mapping of code ids to readable names, frozen into pairs (so specs stay hashable)."""
    return tuple(names.items()) if isinstance(names, Mapping) else tuple(names)


class InvalidParameter(ValueError):
    """A hyperparameter the user typed is refused; the message says why and what is allowed."""


class TrainingDiverged(RuntimeError):
    """The loss became NaN or exploded; the run is paused with this message, never crashed."""


class TrainingFinished(Exception):  # noqa: N818 - an end, not an error
    """A lesson with a goal (the LoRA page's Steps) reached it: the session pauses with this
    message (what was written, how to go on) and the command line stops there."""


@dataclass(frozen=True)
class ParamSpec:
    """One knob of a lesson.

    ``kind`` is float | int | choice | bool | folder (a folder's path as text; "" = none) | file
    (a file's path, likewise) | text (a line the student types, at most ``maximum`` characters).
    ``live`` knobs can change mid-run without a reset
    (learning rate, optimizer, β, k_D/k_G, noise); the others need a reset. ``choice_labels``
    maps a choice's code id (the stored value, what ``--set`` takes) to the name a person reads
    ("rosenbrock" -> "Rosenbrock valley"); a choice without one is shown as its id.
    """

    name: str
    default: Any
    kind: str = "float"
    minimum: float | None = None
    maximum: float | None = None
    choices: tuple[str, ...] = ()
    live: bool = False
    label: str = ""
    help: str = ""
    log_scale: bool = False  # a slider for it should move in powers of ten (learning rates)
    choice_labels: Mapping[str, str] | tuple[tuple[str, str], ...] = ()

    def __post_init__(self) -> None:
        pairs = _pairs(self.choice_labels)
        object.__setattr__(self, "choice_labels", pairs)
        unknown = {k for k, _ in pairs} - set(self.choices)
        if unknown:
            raise ValueError(f"{self.name}: labels for unknown choices {sorted(unknown)}")

    def choice_label(self, choice: str) -> str:
        """The readable name of ``choice`` (its code id when it has none)."""
        return dict(self.choice_labels).get(choice, choice)

    def coerce(self, value: Any) -> Any:
        """Parse and check a value (from a widget or a ``--set key=value`` string)."""
        try:
            if self.kind == "float":
                v: Any = float(value)
                if not math.isfinite(v):
                    raise ValueError
            elif self.kind == "int":
                v = int(float(value)) if isinstance(value, str) else int(value)
                if isinstance(value, float) and value != int(value):
                    raise ValueError
            elif self.kind == "bool":
                if isinstance(value, str):
                    if value.lower() not in ("1", "0", "true", "false", "yes", "no", "on", "off"):
                        raise ValueError
                    v = value.lower() in ("1", "true", "yes", "on")
                else:
                    v = bool(value)
            elif self.kind in ("folder", "file"):
                v = "" if value is None else str(value).strip()
            elif self.kind == "text":
                v = "" if value is None else str(value)
                if self.maximum is not None and len(v) > self.maximum:
                    raise InvalidParameter(f"{self.name} takes at most {int(self.maximum)} "
                                           f"characters; yours has {len(v)}.")
                return v
            elif self.kind == "choice":
                v = str(value)
                if v not in self.choices:
                    raise InvalidParameter(
                        f"{self.name} must be one of {', '.join(self.choices)}, not {value!r}.")
            else:
                raise AssertionError(f"unknown kind {self.kind}")
        except (TypeError, ValueError) as exc:
            if isinstance(exc, InvalidParameter):
                raise
            raise InvalidParameter(f"{self.name} must be a {self.kind}, not {value!r}.") from None
        if self.kind in ("float", "int"):
            if self.minimum is not None and v < self.minimum:
                raise InvalidParameter(f"{self.name} must be at least {self.minimum}, not {v}.")
            if self.maximum is not None and v > self.maximum:
                raise InvalidParameter(f"{self.name} must be at most {self.maximum}, not {v}.")
        return v


@dataclass(frozen=True)
class LessonInfo:
    """What the lesson list and the explanation pane show."""

    key: str  # the `studio train` name, e.g. "gan-2d"
    title: str  # "GAN on 2D data"
    summary: str  # one line for the list
    explanation: str  # a few short paragraphs (Markdown): what you see, what to try, what is normal
    main_loss: str = "loss"  # the metric written as `loss` in metrics.jsonl
    series: tuple[str, ...] = ("loss",)  # the metrics the loss plot shows by default
    log_every: int = 1  # the CLI and the run store log every N steps
    #: the loss plot starts on a log scale (False for metrics that go negative: a log axis
    #: cannot show them)
    log_scale: bool = True
    #: metric name -> the name the loss plot's legend shows ("mse_t0" -> "MSE, t 0–20%")
    series_labels: Mapping[str, str] | tuple[tuple[str, str], ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "series_labels", _pairs(self.series_labels))

    def series_label(self, name: str) -> str:
        """The readable name of metric ``name`` (the name itself when it has none)."""
        return dict(self.series_labels).get(name, name)


@dataclass
class Trainer:
    """Base class of every lesson. Subclasses set ``info`` and ``params`` and implement the rest."""

    info: ClassVar[LessonInfo]
    params: ClassVar[tuple[ParamSpec, ...]]
    #: Parts of a step that can be run alone from the window, e.g. ("D", "G") for GANs.
    step_parts: ClassVar[tuple[str, ...]] = ()

    config: dict[str, Any] = field(default_factory=dict)
    seed: int = 0
    step_count: int = 0

    @classmethod
    def validate_config(cls, overrides: dict[str, Any] | None = None) -> dict[str, Any]:
        """Defaults with ``overrides`` applied and checked; unknown keys are refused."""
        specs = {p.name: p for p in cls.params}
        config = {p.name: p.default for p in cls.params}
        for key, value in (overrides or {}).items():
            if key not in specs:
                raise InvalidParameter(
                    f"Unknown setting {key!r} for {cls.info.key}; known: {', '.join(specs)}.")
            config[key] = specs[key].coerce(value)
        return config

    @classmethod
    def unavailable_choices(cls) -> dict[str, dict[str, str]]:
        """Choices this install cannot use, per knob: ``{name: {choice: why}}`` (e.g. a data set
        whose package is missing). The form shows them greyed out with the reason; choosing one
        is refused by :meth:`validate_config` with the same reason."""
        return {}

    @classmethod
    def spec(cls, name: str) -> ParamSpec:
        for p in cls.params:
            if p.name == name:
                return p
        raise InvalidParameter(f"Unknown setting {name!r} for {cls.info.key}.")

    @property
    def is_main_process(self) -> bool:
        """False in the other processes of a multi-process launch (``accelerate launch``): they
        train their share but write no run folder and print nothing."""
        return True

    # -- the interface ---------------------------------------------------------------------------
    def step(self, part: str | None = None) -> dict[str, float]:
        """One training step (or only ``part`` of it, one of ``step_parts``); returns metrics
        including ``step`` and ``loss``.

        Raises :class:`TrainingDiverged` when the loss is NaN/inf or explodes.
        """
        raise NotImplementedError

    def snapshot(self) -> dict[str, Any]:
        """Plain data to draw now (numpy arrays / floats); cheap enough to call every frame."""
        raise NotImplementedError

    def prepare_snapshot(self, finish: bool = False) -> None:
        """Work towards later snapshots that need not wait for one (DDPM samples its reverse
        chain here, a slice at a time, from a frozen model). The session calls it right after a
        frame went out, while the window draws it, so the work does not delay the frames; with
        ``finish`` (before a paused session's frame) all work due now is done. Default:
        nothing."""

    def set_param(self, name: str, value: Any) -> None:
        """Change a live knob mid-run (validated); non-live knobs raise InvalidParameter."""
        spec = self.spec(name)
        if not spec.live:
            raise InvalidParameter(f"{name} can only change with a reset.")
        self.config[name] = spec.coerce(value)
        self.on_param_changed(name)

    def on_param_changed(self, name: str) -> None:
        """Apply a changed live knob (e.g. set the optimizer's lr). Subclasses override."""

    def out_of_memory(self) -> str:
        """What to say when a step ran out of memory: the settings that cost memory, and
        smaller values to reset with (:func:`out_of_memory_advice`); a lesson that knows its
        memory better says more."""
        return out_of_memory_advice(type(self), self.config)

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to continue exactly (tensors, optimizer and RNG states)."""
        raise NotImplementedError

    def load_state_dict(self, state: dict[str, Any]) -> None:
        raise NotImplementedError


def is_out_of_memory(exc: BaseException) -> bool:
    """A CUDA/MPS allocator (``OutOfMemoryError``) or the computer (``MemoryError``) ran out."""
    return (isinstance(exc, MemoryError) or type(exc).__name__ == "OutOfMemoryError"
            or "out of memory" in str(exc).lower())


def out_of_memory_advice(cls: type[Trainer], config: Mapping[str, Any]) -> str:
    """What to say when a lesson's step ran out of memory: the settings that cost memory, and
    smaller values for them to reset with (the next image size down, half the batch)."""
    offers = []
    for name in ("image_size", "batch_size"):
        try:
            spec = cls.spec(name)
        except InvalidParameter:
            continue
        value = config.get(name, spec.default)
        label = (spec.label or name).lower()
        if spec.kind == "choice" and str(value) in spec.choices:
            index = spec.choices.index(str(value))
            if index > 0:
                offers.append(f"{label} {spec.choices[index - 1]} (now {value})")
        elif spec.kind == "int" and isinstance(value, int):
            smaller = max(int(spec.minimum or 1), value // 2)
            if smaller < value:
                offers.append(f"{label} {smaller} (now {value})")
    if not offers:
        return (f"{cls.info.title} ran out of memory. Close other programs (or models in the "
                "job queue) and press Reset.")
    return (f"{cls.info.title} ran out of memory at these settings. Reset with a smaller "
            f"{' or a smaller '.join(offers)}, or close other programs.")


def step_loss(metrics: dict[str, Any]) -> float | None:
    """A step's loss: ``loss``, else the first ``…loss`` it reports (dpo's warm-up reports
    ``sft_loss``); None when it reports none."""
    if "loss" in metrics:
        return float(metrics["loss"])
    return next((float(v) for k, v in metrics.items() if k.endswith("loss")), None)


def check_loss(value: float, step: int, limit: float = 1e6) -> None:
    """Raise TrainingDiverged with an actionable message for a NaN/inf or exploding loss."""
    if not math.isfinite(value):
        raise TrainingDiverged(f"loss became {value} at step {step} — try a lower learning rate.")
    if abs(value) > limit:
        raise TrainingDiverged(
            f"loss exploded to {value:.3g} at step {step} — try a lower learning rate.")
