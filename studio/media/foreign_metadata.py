"""Read the generation settings other apps (ComfyUI, InvokeAI) store in their images. No Qt.

Each reader takes the image's text chunks and returns ``(prompt, negative_prompt, params)`` with
Studio's normalised parameter names (steps, cfg, seed, width, height, sampler, scheduler, model),
or ``None`` when the chunks do not hold what it looks for. Readers never raise on bad input.
"""

from __future__ import annotations

import json
import shlex
from typing import Any

Found = tuple[str, str, dict[str, Any]]

_SAMPLER_NODES = ("KSampler", "KSamplerAdvanced")
_MAX_HOPS = 32  # graphs are small; this only guards against cycles


def _json(text: str | None) -> Any:
    if not text:
        return None
    try:
        return json.loads(text)
    except ValueError:
        # ComfyUI writes NaN/Infinity for some widgets; json accepts those, but other producers
        # sometimes emit invalid JSON — no metadata then.
        return None


# -- ComfyUI API graph ("prompt" chunk) ---------------------------------------------------------

def _link(value: Any) -> str | None:
    """A ComfyUI API-format input that is a link looks like ``["node id", output index]``."""
    if isinstance(value, list) and len(value) == 2 and isinstance(value[1], int):
        return str(value[0])
    return None


def _resolve_value(graph: dict, value: Any, names: tuple[str, ...], hops: int = 0) -> Any:
    """Follow links from an input until a literal (string / number) turns up."""
    node_id = _link(value)
    if node_id is None:
        return value
    node = graph.get(node_id)
    if not isinstance(node, dict) or hops > _MAX_HOPS:
        return None
    inputs = node.get("inputs") or {}
    for name in names:
        if name in inputs:
            return _resolve_value(graph, inputs[name], names, hops + 1)
    return None


def _texts(graph: dict, value: Any, seen: set[str] | None = None) -> list[str]:
    """Every prompt text feeding a conditioning input (through combine/concat nodes)."""
    seen = set() if seen is None else seen
    node_id = _link(value)
    if node_id is None or node_id in seen or len(seen) > _MAX_HOPS:
        return []
    seen.add(node_id)
    node = graph.get(node_id)
    if not isinstance(node, dict):
        return []
    inputs = node.get("inputs") or {}
    if "text" in inputs or "text_g" in inputs:
        text = _resolve_value(graph, inputs.get("text", inputs.get("text_g")),
                              ("text", "string", "value", "text_g"))
        return [text] if isinstance(text, str) else []
    out: list[str] = []
    for name in sorted(inputs):
        if name.startswith("conditioning") or name in ("positive", "negative", "conditioning"):
            out += _texts(graph, inputs[name], seen)
    return out


def _find_input(graph: dict, value: Any, class_names: tuple[str, ...], follow: tuple[str, ...],
                hops: int = 0) -> dict | None:
    """The first node of one of ``class_names`` upstream of ``value`` along ``follow`` inputs."""
    node_id = _link(value)
    node = graph.get(node_id) if node_id is not None else None
    if not isinstance(node, dict) or hops > _MAX_HOPS:
        return None
    if node.get("class_type") in class_names:
        return node
    inputs = node.get("inputs") or {}
    for name in follow:
        if name in inputs:
            found = _find_input(graph, inputs[name], class_names, follow, hops + 1)
            if found:
                return found
    return None


def read_comfyui_prompt(text: str | None) -> Found | None:
    """Settings from ComfyUI's ``prompt`` chunk (the API-format graph that was executed)."""
    graph = _json(text)
    if not isinstance(graph, dict):
        return None
    samplers = [(k, n) for k, n in graph.items()
                if isinstance(n, dict) and n.get("class_type") in _SAMPLER_NODES]
    if not samplers:
        return None
    # Several samplers (a hires pass): the first in id order is the base generation.
    samplers.sort(key=lambda kv: (len(kv[0]), kv[0]))
    inputs = samplers[0][1].get("inputs") or {}
    numbers = ("seed", "noise_seed", "value", "int", "steps", "cfg")
    params: dict[str, Any] = {}
    for key, names in (("seed", ("seed", "noise_seed")), ("steps", ("steps",)), ("cfg", ("cfg",)),
                       ("sampler", ("sampler_name",)), ("scheduler", ("scheduler",))):
        for name in names:
            if name in inputs:
                value = _resolve_value(graph, inputs[name], (name,) + numbers)
                if value is not None:
                    params[key] = value
                break
    latent = _find_input(graph, inputs.get("latent_image"), ("EmptyLatentImage",
                         "EmptySD3LatentImage"), ("samples", "latent_image", "latent"))
    if latent:
        for key in ("width", "height"):
            value = _resolve_value(graph, latent["inputs"].get(key), (key, "value", "int"))
            if isinstance(value, (int, float)):
                params[key] = int(value)
    ckpt = _find_input(graph, inputs.get("model"), ("CheckpointLoaderSimple", "CheckpointLoader",
                       "UNETLoader"), ("model",))
    if ckpt:
        name = ckpt["inputs"].get("ckpt_name") or ckpt["inputs"].get("unet_name")
        if isinstance(name, str):
            params["model"] = name
    positive = "\n".join(_texts(graph, inputs.get("positive")))
    negative = "\n".join(_texts(graph, inputs.get("negative")))
    return positive, negative, params


# -- ComfyUI UI workflow ("workflow" chunk) -----------------------------------------------------

def read_comfyui_workflow(text: str | None) -> Found | None:
    """Settings from ComfyUI's ``workflow`` chunk (the editor's graph), when ``prompt`` is absent.

    Widget values are positional: KSampler ``[seed, control, steps, cfg, sampler, scheduler,
    denoise]``, CLIPTextEncode ``[text]``, EmptyLatentImage ``[width, height, batch]``.
    """
    wf = _json(text)
    if not isinstance(wf, dict) or not isinstance(wf.get("nodes"), list):
        return None
    nodes = {n.get("id"): n for n in wf["nodes"] if isinstance(n, dict)}
    links = {}
    for link in wf.get("links") or []:
        if isinstance(link, list) and len(link) >= 4:
            links[link[0]] = link[1]  # link id -> source node id

    def source(node: dict, name: str) -> dict | None:
        for inp in node.get("inputs") or []:
            if isinstance(inp, dict) and inp.get("name") == name and inp.get("link") is not None:
                return nodes.get(links.get(inp["link"]))
        return None

    def widgets(node: dict | None) -> list:
        values = (node or {}).get("widgets_values")
        return values if isinstance(values, list) else []

    sampler = next((n for n in nodes.values() if n.get("type") == "KSampler"), None)
    if sampler is None:
        return None
    w = widgets(sampler)
    params: dict[str, Any] = {}
    if len(w) >= 6:
        params.update(seed=w[0], steps=w[2], cfg=w[3], sampler=w[4], scheduler=w[5])
    latent = source(sampler, "latent_image")
    if latent and latent.get("type") == "EmptyLatentImage" and len(widgets(latent)) >= 2:
        params["width"], params["height"] = widgets(latent)[:2]
    model = source(sampler, "model")
    for _ in range(_MAX_HOPS):
        if model is None or model.get("type") == "CheckpointLoaderSimple":
            break
        model = source(model, "model")
    if model and widgets(model):
        params["model"] = widgets(model)[0]

    def prompt_of(name: str) -> str:
        node = source(sampler, name)
        values = widgets(node)
        return values[0] if values and isinstance(values[0], str) else ""

    return prompt_of("positive"), prompt_of("negative"), params


# -- InvokeAI -----------------------------------------------------------------------------------

def read_invokeai(chunks: dict[str, str]) -> Found | None:
    """Settings from ``invokeai_metadata`` (v3+), or legacy ``sd-metadata`` / ``Dream`` (v2)."""
    meta = _json(chunks.get("invokeai_metadata"))
    if isinstance(meta, dict):
        params: dict[str, Any] = {}
        for src, dst in (("seed", "seed"), ("steps", "steps"), ("cfg_scale", "cfg"),
                         ("width", "width"), ("height", "height"), ("scheduler", "sampler")):
            if meta.get(src) is not None:
                params[dst] = meta[src]
        model = meta.get("model")
        if isinstance(model, dict):
            name = model.get("name") or model.get("model_name")
            if name:
                params["model"] = name
        elif isinstance(model, str):
            params["model"] = model
        return str(meta.get("positive_prompt") or ""), str(meta.get("negative_prompt") or ""), params
    legacy = _json(chunks.get("sd-metadata"))
    if isinstance(legacy, dict) and isinstance(legacy.get("image"), dict):
        image = legacy["image"]
        prompt = image.get("prompt", "")
        if isinstance(prompt, list):  # [{"prompt": "...", "weight": 1.0}, ...]
            prompt = " ".join(str(p.get("prompt", "")) for p in prompt if isinstance(p, dict))
        positive, negative = _split_brackets(str(prompt))
        params = {dst: image[src] for src, dst in (("seed", "seed"), ("steps", "steps"),
                  ("cfg_scale", "cfg"), ("width", "width"), ("height", "height"),
                  ("sampler", "sampler")) if image.get(src) is not None}
        if legacy.get("model_weights"):
            params["model"] = legacy["model_weights"]
        return positive, negative, params
    dream = chunks.get("Dream")
    if dream:
        return _read_dream(dream)
    return None


def _split_brackets(prompt: str) -> tuple[str, str]:
    """InvokeAI 2 wrote negative prompts inside ``[...]`` in the prompt itself."""
    positive: list[str] = []
    negative: list[str] = []
    current: list[str] = []
    depth = 0
    for ch in prompt:
        if ch == "[":
            if depth == 0 and current:
                positive.append("".join(current))
                current = []
            depth += 1
            if depth == 1:
                continue
        elif ch == "]" and depth:
            depth -= 1
            if depth == 0:
                negative.append("".join(current))
                current = []
                continue
        current.append(ch)
    (negative if depth else positive).append("".join(current))
    return " ".join(" ".join(positive).split()), ", ".join(n.strip() for n in negative if n.strip())


def _read_dream(text: str) -> Found | None:
    """``"a prompt" -s 50 -S 42 -W 512 -H 512 -C 7.5 -A k_lms`` (InvokeAI 2 / lstein dream.py)."""
    try:
        words = shlex.split(text)
    except ValueError:
        return None
    if not words:
        return None
    flags = {"-s": "steps", "-S": "seed", "-W": "width", "-H": "height", "-C": "cfg",
             "-A": "sampler"}
    params: dict[str, Any] = {}
    prompt_words: list[str] = []
    i = 0
    while i < len(words):
        word = words[i]
        if word in flags and i + 1 < len(words):
            params[flags[word]] = words[i + 1]
            i += 2
            continue
        if word.startswith("-") and len(word) > 2 and word[:2] in flags:  # "-s50"
            params[flags[word[:2]]] = word[2:]
        elif not word.startswith("-"):
            prompt_words.append(word)
        i += 1
    positive, negative = _split_brackets(" ".join(prompt_words))
    return positive, negative, params
