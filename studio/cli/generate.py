"""``studio generate``: text to image without a window, on the same job runner as the GUI.

stdout carries only results: one path per image as it is written, or with ``--json`` one JSON
object per line. Progress (a tqdm bar, only when stderr is a terminal), warnings and errors go to
stderr. ``--out DIR`` writes the images into DIR itself (no date sub-folder); ``--timeline``
writes each image's denoising timeline as a GIF, MP4 video or animated PNG too (its path is the ``--json``
object's ``timeline``; a film that cannot be written is a warning). Exit status: see
:data:`EXIT_STATUS` (2 bad input, 1 a failed job, 130 Ctrl+C; images already written stay).
"""

from __future__ import annotations

import argparse
import secrets
from pathlib import Path
from typing import TYPE_CHECKING, Any

from studio.cli import UsageError
from studio.cli.common import (
    IMAGE_EXIT_STATUS,
    Reporter,
    add_diffusion_arguments,
    add_model_argument,
    add_output_arguments,
    check_device,
    checked,
    load_cli_settings,
    resolve_cli_model,
    run_job,
    variation_fields,
)
from studio.core.requests import HIRES_UPSCALERS

if TYPE_CHECKING:
    from collections.abc import Callable

    from studio.core.config import Paths, Settings
    from studio.core.jobs import JobSnapshot
    from studio.core.requests import GanWalkRequest, Img2ImgRequest, Txt2ImgRequest
    from studio.library.models import ModelEntry

NAME = "generate"
HELP = "make images from a text prompt"
EXIT_STATUS = IMAGE_EXIT_STATUS


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_model_argument(p, "image")
    add_diffusion_arguments(p, prompt_help="what to draw (required, except for a GAN trained in "
                                           "Studio, which draws from its seed alone); for a "
                                           "model from Train's image diffusion lesson, the "
                                           "class to draw (or nothing)",
                            prompt_required=False)
    for action in p._actions:  # the model family's own guidance when --cfg is not given
        if action.dest == "cfg":
            action.default = None
            action.help = (f"{action.help} (default: 7.0); a family with its own starts "
                           "there: FLUX.1 3.5, FLUX.2 4, SD 3.5 4.5, Qwen-Image 4, Z-Image 5")
    p.add_argument("--width", type=int, default=512, metavar="PX", help="a multiple of 8")
    p.add_argument("--height", type=int, default=512, metavar="PX", help="a multiple of 8")
    hires = p.add_argument_group("hires fix", "make the image at --width×--height, upscale it, "
                                 "then refine it with an img2img pass (A1111's hires fix)")
    hires.add_argument("--hires-scale", type=float, default=None, metavar="X",
                       help="turn the hires fix on: upscale width and height X times "
                            "(above 1, at most 4; e.g. 2)")
    hires.add_argument("--hires-steps", type=int, default=None, metavar="N",
                       help="steps of the hires pass (default 0: as many as --steps)")
    hires.add_argument("--denoise", type=float, default=None, metavar="X",
                       help="denoising strength of the hires pass, above 0 to 1 (default 0.7)")
    hires.add_argument("--upscaler", default=None, metavar="NAME",
                       help="how the first image is upscaled: " + ", ".join(
                           f"'{k}' ({v})" for k, v in HIRES_UPSCALERS.items())
                       + ", or an upscaler model's name or file (default Latent)")
    from studio.core.control import MAX_CONTROLNETS, PREPROCESSORS

    control = p.add_argument_group("ControlNet", "guide the composition with a control image "
                                   "(SD 1.x, SD 2.x and SDXL models)")
    control.add_argument("--controlnet", action="append", default=[],
                         metavar="MODEL:IMAGE[:WEIGHT]",
                         help="a ControlNet or T2I-Adapter (its library name, folder, "
                              "single .safetensors/.pth file or cached repo id), its control "
                              "image and a weight from 0 to 2 (default 1); repeat for up to "
                              f"{MAX_CONTROLNETS}")
    control.add_argument("--control-preprocess", action="append", default=[], metavar="NAME",
                         help="turn each control image into a map first: " + ", ".join(
                             f"'{k}' ({v})" for k, v in PREPROCESSORS.items())
                         + "; once for all, or once per --controlnet (default none)")
    control.add_argument("--control-start", type=float, default=0.0, metavar="X",
                         help="the fraction of the steps where the ControlNets start (default 0)")
    control.add_argument("--control-end", type=float, default=1.0, metavar="X",
                         help="the fraction of the steps where they stop (default 1)")
    p.add_argument("--walk-to", type=int, default=None, metavar="SEED",
                   help="GAN only: a latent walk from --seed to this seed, written as PNG frames "
                        "(with --gif also as one animated GIF)")
    p.add_argument("--frames", type=int, default=16, metavar="N",
                   help="frames of the latent walk (default 16)")
    p.add_argument("--gif", action="store_true", help="also write the latent walk as a GIF")
    add_timeline_argument(p)
    add_output_arguments(p)


def add_timeline_argument(p: argparse.ArgumentParser) -> None:
    """``--timeline [FILE]`` (studio generate and studio img2img)."""
    p.add_argument("--timeline", nargs="?", const="", default=None, metavar="FILE",
                   help="also write each image's denoising timeline (its step previews, then "
                        "the image) as a looping film: into FILE (.gif, .mp4 for a video, or .png "
                        "for an animated PNG; numbered FILE-1.gif … with --count above 1), or beside each image "
                        "as <image>.timeline.gif when FILE is left out")


def hires_fields(args: argparse.Namespace) -> dict[str, Any]:
    """The request's hires-fix fields from ``--hires-*``, ``--denoise`` and ``--upscaler``; the
    last three without ``--hires-scale`` are bad input (they would silently do nothing)."""
    given = [flag for flag, value in (("--hires-steps", args.hires_steps),
                                      ("--denoise", args.denoise),
                                      ("--upscaler", args.upscaler)) if value is not None]
    if args.hires_scale is None:
        if given:
            verb = "applies" if len(given) == 1 else "apply"
            raise UsageError(f"{' and '.join(given)} only {verb} to the hires fix: add "
                             "--hires-scale X (e.g. 2) to turn it on")
        return {}
    out: dict[str, Any] = {"hires": True, "hires_scale": args.hires_scale}
    if args.hires_steps is not None:
        out["hires_steps"] = args.hires_steps
    if args.denoise is not None:
        out["hires_denoise"] = args.denoise
    if args.upscaler is not None:
        names = {name.lower(): name for name in HIRES_UPSCALERS}
        # Another name is an upscaler model: checked once the settings are known.
        out["hires_upscaler"] = names.get(args.upscaler.strip().lower(), args.upscaler.strip())
    return out


def check_upscaler(request: Txt2ImgRequest, settings: Settings, paths: Paths) -> None:
    """An upscaler model named by ``--upscaler`` must exist (a file, or a name in the library);
    a file is kept as an absolute path, so "reuse parameters" finds it again."""
    from studio.core.jobs import UserFacingError
    from studio.library.upscalers import resolve_upscaler

    if not request.hires or request.hires_upscaler in HIRES_UPSCALERS:
        return
    try:
        found = resolve_upscaler(request.hires_upscaler, settings, paths)
    except UserFacingError as exc:
        raise UsageError(f"--upscaler: {exc} Or use one of: "
                         + ", ".join(HIRES_UPSCALERS) + ".") from exc
    local = Path(request.hires_upscaler).expanduser()
    request.hires_upscaler = str(local.resolve()) if local.is_file() else found.name


def parse_lora(spec: str) -> dict[str, Any]:
    """``NAME[:WEIGHT]`` as a ``request.loras`` item; raises :class:`UsageError` when malformed.

    The weight is what follows the last colon, so ``C:\\loras\\ink.safetensors:0.5`` works."""
    text = spec.strip()
    name, sep, weight = text.rpartition(":")
    if sep:
        try:
            value = float(weight)
        except ValueError:
            if any(c in weight for c in "/\\"):  # a drive letter's colon, not a weight
                name, value = text, 1.0
            else:
                raise UsageError(f"--lora {spec!r}: the weight {weight!r} is not a number "
                                 "(write NAME:WEIGHT, e.g. ink:0.8)") from None
    else:
        name, value = text, 1.0
    name = name.strip()
    if not name:
        raise UsageError(f"--lora {spec!r} names no LoRA (write NAME:WEIGHT, e.g. ink:0.8)")
    local = Path(name).expanduser()
    if local.is_file():  # an absolute path in the metadata lets "reuse parameters" find it again
        name = str(local.resolve())
    return {"name": name, "weight": value}


def check_loras(request: Txt2ImgRequest | Img2ImgRequest, entry: ModelEntry, settings: Settings,
                paths: Paths) -> None:
    """Find every LoRA of ``request`` (``--lora`` and prompt tags) and check it fits ``entry``
    before any model is loaded; tag warnings are left for the job to report."""
    from studio.core.jobs import UserFacingError
    from studio.pipelines.diffusion.loras import check_compatible, plan_loras

    try:
        plan = plan_loras(request.prompt, request.loras, settings, paths)
        check_compatible(plan, entry.family, entry.name)
    except UserFacingError as exc:
        raise UsageError(str(exc)) from exc


def parse_scheduler(name: str) -> str:
    """A scheduler key from a key or display name (case-insensitive) or another tool's name."""
    from studio.core.requests import SCHEDULERS
    from studio.media.metadata import scheduler_key

    wanted = name.strip().lower()
    for key, label in SCHEDULERS.items():
        if wanted in (key, label.lower()):
            return key
    key = scheduler_key(name)
    if key != "default":
        return key
    choices = ", ".join(f"{k} ({v})" for k, v in SCHEDULERS.items())
    raise UsageError(f"unknown scheduler {name!r}; choose one of: {choices}")


def controlnet_fields(args: argparse.Namespace) -> list[dict[str, Any]]:
    """``--controlnet`` and its companions as ``request.controlnets``."""
    from studio.core.control import parse_cli

    preprocess = list(args.control_preprocess)
    if preprocess and not args.controlnet:
        raise UsageError("--control-preprocess needs --controlnet MODEL:IMAGE")
    if len(preprocess) not in (0, 1, len(args.controlnet)):
        raise UsageError(f"give --control-preprocess once for all ControlNets or once per "
                         f"--controlnet ({len(args.controlnet)}), not {len(preprocess)} times")
    if len(preprocess) == 1:
        preprocess *= len(args.controlnet)
    out = []
    for i, spec in enumerate(args.controlnet):
        try:
            item = parse_cli(spec, preprocess[i] if preprocess else "none")
        except ValueError as exc:
            raise UsageError(str(exc)) from None
        out.append({**item, "start": args.control_start, "end": args.control_end})
    return out


def build_request(args: argparse.Namespace, settings: Settings, paths: Paths
                  ) -> Txt2ImgRequest | GanWalkRequest:
    """The validated request for ``args``; raises :class:`UsageError` on bad input."""
    from studio.core.requests import Txt2ImgRequest
    from studio.library.families import family as family_of

    seed = secrets.randbelow(2**32) if args.seed is None else args.seed
    model = args.model.strip()
    request = Txt2ImgRequest(model=model, prompt=args.prompt or "", negative_prompt=args.negative,
                             steps=args.steps, cfg=7.0 if args.cfg is None else args.cfg,
                             width=args.width,
                             height=args.height, seed=seed, count=args.count,
                             scheduler=parse_scheduler(args.scheduler),
                             loras=[parse_lora(spec) for spec in args.lora],
                             controlnets=controlnet_fields(args),
                             **variation_fields(args), **hires_fields(args))
    checked(request)
    model = resolve_cli_model(model, "image", settings, paths, "studio generate")
    request.model = model.spec  # a repo id in the cache, else an absolute path
    found = family_of(model.entry.family)
    if found is not None and found.edit:
        raise UsageError(f"{model.name} ({found.label}) edits pictures from instructions: use "
                         "studio img2img --image FILE --edit \"what to change\"")
    if found is not None and args.cfg is None:
        request.cfg = found.default_cfg  # FLUX.1's 3.5, FLUX.2's 4, SD 3.5's 4.5 …
    gan, pixel = model.entry.format == "gan", model.entry.family == "ddpm"
    if args.timeline is not None and (gan or pixel):
        what = "a GAN trained in Studio" if gan else "a model from Train's image diffusion lesson"
        raise UsageError(f"--timeline films the denoising steps; {model.name} is {what}, which "
                         "has none to film (leave out --timeline)")
    if args.timeline:
        check_film_path(Path(args.timeline).expanduser())
    if args.walk_to is not None or args.gif:
        if not gan:
            raise UsageError(f"--walk-to and --gif make a latent walk of a GAN trained in Studio; "
                             f"{model.name} is not one")
        return _walk_request(args, request)
    if gan or pixel:
        what = ("a GAN trained in Studio" if gan
                else "a model from Train's image diffusion lesson")
        if args.lora:
            raise UsageError(f"{model.name} is {what}: it takes no LoRA")
        if args.controlnet:
            raise UsageError(f"{model.name} is {what}: it takes no ControlNet")
        if request.hires:
            raise UsageError(f"{model.name} is {what}: it has no hires fix "
                             "(leave out --hires-scale)")
        if pixel and request.variation_strength:
            raise UsageError(f"{model.name} is {what}: it draws from the seed alone "
                             "(leave out --variation-strength)")
        return request
    if args.prompt is None:
        raise UsageError("the following arguments are required: --prompt (only a GAN trained in "
                         "Studio or a model from Train's image diffusion lesson draws without "
                         "one)")
    check_loras(request, model.entry, settings, paths)
    check_upscaler(request, settings, paths)
    return request


def check_film_path(path: Path) -> None:
    """``--timeline FILE`` must end in .gif/.mp4/.png and go into a folder that exists."""
    from studio.media.timeline import film_path_problem

    problem = film_path_problem(path)
    if problem:
        raise UsageError(f"--timeline {problem}")
    if not path.parent.is_dir():
        raise UsageError(f"--timeline {path}: the folder {path.parent} does not exist")


def film_target(spec: str, image_path: Path, index: int, count: int) -> Path:
    """Where image ``index``'s timeline goes: ``<image>.timeline.gif`` beside it (``spec``
    empty), ``spec`` itself, or ``spec`` numbered ``-1``, ``-2`` … in a batch."""
    from studio.media.timeline import default_film_path

    if not spec:
        return default_film_path(image_path)
    path = Path(spec).expanduser()
    return path.with_name(f"{path.stem}-{index + 1}{path.suffix}") if count > 1 else path


def _walk_request(args: argparse.Namespace, request: Txt2ImgRequest) -> GanWalkRequest:
    from studio.core.requests import GanWalkRequest

    if args.walk_to is None:
        raise UsageError("--gif needs --walk-to SEED: the seed the latent walk ends at")
    walk = GanWalkRequest(model=request.model, seed=request.seed, seed_to=args.walk_to,
                          frames=args.frames, width=request.width, height=request.height,
                          gif=args.gif)
    try:
        walk.validate()
    except ValueError as exc:
        raise UsageError(str(exc)) from exc
    return walk


class _Reporter(Reporter):
    """The terminal reporter of a txt2img (or img2img: ``describe``) batch: the bar shows the
    steps of the image being made; with ``timeline`` each image's film is written."""

    def __init__(self, request: Txt2ImgRequest | Img2ImgRequest, as_json: bool,
                 timeline: str | None = None,
                 describe: Callable[[Any], dict] | None = None) -> None:
        super().__init__(as_json, self._describe)
        self.fields = describe or self._txt2img_fields
        self.request = request
        self.bar_index = -1
        self.timeline = timeline  # --timeline: "" beside each image, or the FILE given
        self.films: dict[int, Path] = {}

    def report(self, result: Any) -> None:
        """With ``--timeline``, write the image's film first (its path goes into ``--json``)."""
        if self.timeline is not None and id(result) not in self.reported:
            self._write_film(result)
        super().report(result)

    def _write_film(self, result: Any) -> None:
        from studio.core.wording import write_failure
        from studio.media.timeline import save_film

        timeline, result.timeline = getattr(result, "timeline", None), None  # memory back
        if timeline is None or not len(timeline) or getattr(result, "path", None) is None:
            return
        path = film_target(self.timeline or "", Path(result.path), result.index,
                           self.request.count)
        try:
            self.films[id(result)] = save_film(timeline.frames, path)
        except OSError as exc:
            self._err(f"studio: warning: {write_failure(exc, 'the timeline', path.parent)}")

    def job_progress(self, job: JobSnapshot, step: int, total: int, preview: Any) -> None:
        if not self.tty or total <= 0:
            return
        count = max(1, self.request.count)
        # The service may report steps of the whole batch (total = count × steps) or of one
        # image; either way the bar shows the steps of the image being made.
        if count > 1 and total % count == 0 and total >= count:
            per = total // count
            index = min(max(step - 1, 0) // per, count - 1)
            step -= index * per
        else:
            per, index = total, self.done
        with self._lock:
            if self.bar is None or self.bar_index != index or step < self.bar.n:
                self.bar_index = index
                self._new_bar(per, f"image {index + 1}/{count}", unit="step")
            self.bar.update(step - self.bar.n)

    def _describe(self, result: Any) -> dict:
        return {**self.fields(result),
                **({"timeline": str(self.films[id(result)])} if id(result) in self.films
                   else {})}

    def _txt2img_fields(self, result: Any) -> dict:
        image = getattr(result, "image", None)
        width, height = (image.size if image is not None
                         else (self.request.width, self.request.height))
        return {"path": str(result.path), "seed": result.seed, "index": result.index,
                "width": width, "height": height, "model": self.request.model,
                "prompt": self.request.prompt, "loras": list(getattr(result, "loras", [])),
                "warnings": list(result.warnings or [])}


FilmReporter = _Reporter  # studio img2img --timeline


def _walk_reporter(request: GanWalkRequest, as_json: bool) -> Reporter:
    def describe(result: Any) -> dict:
        kind = "gif" if Path(result.path).suffix == ".gif" else "frame"
        return {"path": str(result.path), "kind": kind, "index": result.index,
                "seed": request.seed, "seed_to": request.seed_to, "model": request.model}

    return Reporter(as_json, describe)


def run(args: argparse.Namespace) -> int:
    from studio.core.requests import GanWalkRequest
    # The model is checked before the device, so a typo in --model is the error a user sees.
    settings, paths = load_cli_settings(args, device_check=False,
                                        timeline=args.timeline is not None)
    request = build_request(args, settings, paths)
    check_device(settings)
    if isinstance(request, GanWalkRequest):  # a latent walk
        return run_job(request, settings, paths, _walk_reporter(request, args.json),
                       request.frames + int(request.gif), title=f"latent walk {request.seed}→{request.seed_to}", quiet=not args.verbose)

    return run_job(request, settings, paths, _Reporter(request, args.json, args.timeline),
                   request.count,
                   title=request.prompt[:40], quiet=not args.verbose)
