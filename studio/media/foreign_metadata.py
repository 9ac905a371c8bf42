"""Read the generation settings other apps store in their images. No Qt.

ComfyUI (``prompt`` / ``workflow``), InvokeAI (three formats), Fooocus and SwarmUI (JSON in
``parameters``), NovelAI (``Comment`` JSON) and Draw Things (XMP). Each reader returns
``(prompt, negative_prompt, params)`` with Studio's normalised parameter names (steps, cfg, seed,
width, height, sampler, scheduler, model, loras as ``[{"name", "weight"}]``),
or ``None`` when the chunks do not hold what it looks for. Readers never raise on bad input.
"""

from __future__ import annotations

import html
import json
import re
import shlex
from typing import Any

Found = tuple[str, str, dict[str, Any]]

_SAMPLER_NODES = ("KSampler", "KSamplerAdvanced", "SamplerCustom", "SamplerCustomAdvanced")
_MAX_HOPS = 32  # graphs are small; this only guards against cycles


#: What ``json.loads`` skips before a value; an object is the only thing a reader here wants.
_OBJECT_START = re.compile(r"[ \t\n\r]*\{")


def _json(text: str | None) -> Any:
    """The JSON object ``text`` holds, or None. Text that cannot start an object (an A1111
    infotext, say) is answered without ``json.loads`` raising and being caught: every reader
    wants a dict, and ``json.loads`` gives one only when the first character after its
    whitespace is ``{``."""
    if not text or not _OBJECT_START.match(text):
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
    for key in ("text", "text_g", "t5xxl", "clip_l"):
        if key in inputs:
            text = _resolve_value(graph, inputs[key], ("text", "string", "value", key))
            return [text] if isinstance(text, str) else []
    out: list[str] = []
    for name in sorted(inputs):
        if name.startswith("conditioning") or name in ("positive", "negative", "conditioning"):
            out += _texts(graph, inputs[name], seen)
    return out


def _node(graph: dict, value: Any) -> dict | None:
    node_id = _link(value)
    node = graph.get(node_id) if node_id is not None else None
    return node if isinstance(node, dict) else None


def _inputs(node: dict | None) -> dict:
    inputs = (node or {}).get("inputs")
    return inputs if isinstance(inputs, dict) else {}


# Every kind of checkpoint / diffusion-model loader names its file in one of these inputs
# (CheckpointLoaderSimple, CheckpointLoader, unCLIPCheckpointLoader, ImageOnlyCheckpointLoader,
# UNETLoader, UnetLoaderGGUF, DiffusersLoader, custom nodes' "Checkpoint Loader" variants).
_MODEL_FILE_INPUTS = ("ckpt_name", "unet_name", "model_path", "model_name")
_LORA_NODES = ("LoraLoader", "LoraLoaderModelOnly")
# Inputs a latent travels through between an empty latent and a sampler (LatentUpscale "samples",
# RepeatLatentBatch, SetLatentNoiseMask...).
_LATENT_INPUTS = ("samples", "latent_image", "latent", "source")


def _is_sampler(node: dict | None) -> bool:
    return isinstance(node, dict) and node.get("class_type") in _SAMPLER_NODES


def _is_empty_latent(node: dict | None) -> bool:
    kind = str((node or {}).get("class_type") or "")
    return kind.startswith("Empty") and "Latent" in kind


def _latent_origin(graph: dict, value: Any) -> dict | None:
    """The node a sampler's ``latent_image`` comes from: an empty latent, another sampler (a
    second pass), or None (an encoded image: img2img)."""
    node = _node(graph, value)
    for _ in range(_MAX_HOPS):
        if node is None or _is_empty_latent(node) or _is_sampler(node):
            return node
        inputs = _inputs(node)
        node = next((_node(graph, inputs[n]) for n in _LATENT_INPUTS if n in inputs), None)
    return None


def _model_chain(graph: dict, value: Any, params: dict[str, Any]) -> None:
    """Follow a ``model`` input up to its loader: the model file, and each LoRA on the way."""
    node = _node(graph, value)
    loras: list[dict[str, Any]] = []
    for _ in range(_MAX_HOPS):
        if node is None:
            break
        inputs = _inputs(node)
        if node.get("class_type") in _LORA_NODES and isinstance(inputs.get("lora_name"), str):
            loras.append({"name": inputs["lora_name"],
                          "weight": _resolve_value(graph, inputs.get("strength_model", 1.0),
                                                   ("strength_model", "value", "float"))})
        name = next((inputs[k] for k in _MODEL_FILE_INPUTS if isinstance(inputs.get(k), str)),
                    None)
        if name is not None:
            params["model"] = name
            break
        node = _node(graph, inputs.get("model"))
    if loras:
        params["loras"] = loras[::-1]  # in the order they were applied


def _set(params: dict[str, Any], key: str, graph: dict, inputs: dict, *names: str) -> None:
    for name in names:
        if name in inputs:
            value = _resolve_value(graph, inputs[name],
                                   (name, "seed", "noise_seed", "value", "int", "float"))
            if value is not None and not isinstance(value, (dict, list)):
                params[key] = value
            return


def _first_pass(graph: dict) -> dict | None:
    """The sampler of the first pass: the one fed by an empty latent (several samplers: a hires
    or refiner pass follows it); else the first in id order."""
    samplers = sorted(((k, n) for k, n in graph.items() if _is_sampler(n)),
                      key=lambda kv: (len(kv[0]), kv[0]))
    for _, node in samplers:
        if _is_empty_latent(_latent_origin(graph, _inputs(node).get("latent_image"))):
            return node
    return samplers[0][1] if samplers else None


def read_comfyui_prompt(text: str | None) -> Found | None:
    """Settings from ComfyUI's ``prompt`` chunk (the API-format graph that was executed).

    Understands KSampler / KSamplerAdvanced and SamplerCustom / SamplerCustomAdvanced graphs
    (noise, guider, sampler and sigmas nodes; Flux's FluxGuidance)."""
    graph = _json(text)
    if not isinstance(graph, dict):
        return None
    sampler = _first_pass(graph)
    if sampler is None:
        return None
    inputs = _inputs(sampler)
    params: dict[str, Any] = {}
    _set(params, "seed", graph, inputs, "seed", "noise_seed")
    _set(params, "steps", graph, inputs, "steps")
    _set(params, "cfg", graph, inputs, "cfg")
    _set(params, "sampler", graph, inputs, "sampler_name")
    _set(params, "scheduler", graph, inputs, "scheduler")
    noise, guider = _node(graph, inputs.get("noise")), _node(graph, inputs.get("guider"))
    if noise:
        _set(params, "seed", graph, _inputs(noise), "noise_seed", "seed")
    if guider:
        _set(params, "cfg", graph, _inputs(guider), "cfg")
    select = _node(graph, inputs.get("sampler"))
    if select:
        _set(params, "sampler", graph, _inputs(select), "sampler_name")
    sigmas = _node(graph, inputs.get("sigmas"))
    if sigmas:
        _set(params, "steps", graph, _inputs(sigmas), "steps")
        _set(params, "scheduler", graph, _inputs(sigmas), "scheduler")
        if "scheduler" not in params and sigmas.get("class_type") != "BasicScheduler":
            # KarrasScheduler, ExponentialScheduler...: the schedule is the node
            params["scheduler"] = str(sigmas.get("class_type")).removesuffix("Scheduler").lower()
    latent = _latent_origin(graph, inputs.get("latent_image"))
    if _is_empty_latent(latent):
        for key in ("width", "height"):
            value = _resolve_value(graph, _inputs(latent).get(key), (key, "value", "int"))
            if isinstance(value, (int, float)):
                params[key] = int(value)
    model = inputs.get("model") or _inputs(guider).get("model") or _inputs(sigmas).get("model")
    _model_chain(graph, model, params)
    g = _inputs(guider)
    positive_in = inputs.get("positive") or g.get("positive") or g.get("conditioning")
    negative_in = inputs.get("negative") or g.get("negative")
    guidance = _find_guidance(graph, positive_in)
    if guidance is not None:
        params["guidance"] = guidance
    positive = "\n".join(t.strip() for t in _texts(graph, positive_in) if t.strip())
    negative = "\n".join(t.strip() for t in _texts(graph, negative_in) if t.strip())
    return positive, negative, params


def _find_guidance(graph: dict, value: Any) -> Any:
    """Flux's distilled guidance: a FluxGuidance node (or CLIPTextEncodeFlux) on the positive."""
    node = _node(graph, value)
    for _ in range(_MAX_HOPS):
        if node is None:
            return None
        inputs = _inputs(node)
        if "guidance" in inputs:
            return _resolve_value(graph, inputs["guidance"], ("guidance", "value", "float"))
        node = _node(graph, inputs.get("conditioning"))
    return None


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
    for _ in range(_MAX_HOPS):  # up to the loader, whatever its kind: the node without a model in
        upstream = source(model, "model") if model is not None else None
        if upstream is None:
            break
        model = upstream
    # CheckpointLoader's widgets are [config_name, ckpt_name]; every other loader's file is first.
    names = widgets(model)[1:2] if (model or {}).get("type") == "CheckpointLoader" else \
        widgets(model)[:1]
    if names and isinstance(names[0], str):
        params["model"] = names[0]

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
        loras = meta.get("loras")
        if isinstance(loras, list):  # [{"model" or "lora": {"name"/"key"}, "weight"}]
            params["loras"] = [
                {"name": str(ref.get("name") or ref.get("model_name") or ref.get("key")),
                 "weight": item.get("weight", 1)}
                for item in loras if isinstance(item, dict)
                for ref in [item.get("model") or item.get("lora") or {}] if isinstance(ref, dict)]
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


# -- Fooocus, SwarmUI, NovelAI, Draw Things -----------------------------------------------------

_SIZE_PAIR = re.compile(r"^\(?\s*(\d+)\s*[,x×]\s*(\d+)\s*\)?$")


def _size(value: Any) -> tuple[int, int] | None:
    """``"(1152, 896)"`` (Fooocus), ``"512x768"`` (Draw Things) as (width, height)."""
    match = _SIZE_PAIR.match(str(value or "").strip())
    return (int(match.group(1)), int(match.group(2))) if match else None


def _copy(src: dict, params: dict[str, Any], pairs: tuple[tuple[str, str], ...]) -> None:
    for key, name in pairs:
        if src.get(key) not in (None, ""):
            params[name] = src[key]


def read_json_parameters(text: str | None) -> tuple[str, Found] | None:
    """``(source, found)`` for JSON in a ``parameters`` chunk: SwarmUI's, else Fooocus's (the
    text parsed once for both); None when the text is not a JSON object either of them wrote
    (A1111 infotext is never parsed as JSON: see :func:`_json`)."""
    data = _json(text)
    if data is None:
        return None
    found = _swarmui(data)
    if found is not None:
        return "swarmui", found
    found = _fooocus(data)
    return ("fooocus", found) if found is not None else None


def read_fooocus(text: str | None) -> Found | None:
    """Fooocus's JSON ``parameters`` (``metadata_scheme: fooocus``); its A1111 scheme is infotext."""
    return _fooocus(_json(text))


def _fooocus(data: Any) -> Found | None:
    if not isinstance(data, dict) or not ("metadata_scheme" in data or "base_model" in data
                                          or "fooocus" in str(data.get("version", "")).lower()):
        return None
    params: dict[str, Any] = {}
    _copy(data, params, (("steps", "steps"), ("guidance_scale", "cfg"), ("seed", "seed"),
                         ("sampler", "sampler"), ("scheduler", "scheduler"),
                         ("base_model", "model"), ("base_model_hash", "model_hash"),
                         ("version", "version"), ("performance", "performance"),
                         ("styles", "styles"), ("sharpness", "sharpness"),
                         ("refiner_model", "refiner_model"), ("vae", "vae")))
    size = _size(data.get("resolution"))
    if size:
        params["width"], params["height"] = size
    loras = data.get("loras")
    if isinstance(loras, list):
        params["loras"] = [{"name": str(item[0]), "weight": item[1]} for item in loras
                           if isinstance(item, list) and len(item) >= 2]
    return str(data.get("prompt") or ""), str(data.get("negative_prompt") or ""), params


def read_swarmui(text: str | None) -> Found | None:
    """SwarmUI's JSON ``parameters``: ``{"sui_image_params": {...}, "sui_extra_data": {...}}``."""
    return _swarmui(_json(text))


def _swarmui(data: Any) -> Found | None:
    p = data.get("sui_image_params") if isinstance(data, dict) else None
    if not isinstance(p, dict):
        return None
    params: dict[str, Any] = {}
    _copy(p, params, (("steps", "steps"), ("cfgscale", "cfg"), ("seed", "seed"),
                      ("width", "width"), ("height", "height"), ("sampler", "sampler"),
                      ("scheduler", "scheduler"), ("model", "model"), ("fluxguidancescale",
                      "guidance"), ("swarm_version", "version")))
    if "version" in params:
        params["version"] = f"SwarmUI {params['version']}"
    names, weights = p.get("loras"), p.get("loraweights")
    if isinstance(names, list):
        weights = weights if isinstance(weights, list) else []
        params["loras"] = [{"name": str(n), "weight": weights[i] if i < len(weights) else 1}
                           for i, n in enumerate(names)]
    return str(p.get("prompt") or ""), str(p.get("negativeprompt") or ""), params


def read_novelai(chunks: dict[str, str]) -> Found | None:
    """NovelAI: ``Software: NovelAI``, the prompt in ``Description``, settings as JSON ``Comment``."""
    data = _json(chunks.get("Comment"))
    if not isinstance(data, dict) or not ("NovelAI" in chunks.get("Software", "")
                                          or "uc" in data and "scale" in data):
        return None
    params: dict[str, Any] = {}
    _copy(data, params, (("steps", "steps"), ("scale", "cfg"), ("seed", "seed"),
                         ("width", "width"), ("height", "height"), ("sampler", "sampler"),
                         ("noise_schedule", "scheduler"), ("cfg_rescale", "cfg_rescale"),
                         ("strength", "denoise")))
    if chunks.get("Source"):
        params["model"] = chunks["Source"]
    if chunks.get("Software"):
        params["version"] = chunks["Software"]
    prompt = data.get("prompt") or chunks.get("Description") or ""
    return str(prompt), str(data.get("uc") or ""), params


_XMP_COMMENT = re.compile(r"<exif:UserComment>.*?<rdf:li[^>]*>(.*?)</rdf:li>", re.DOTALL)


def read_drawthings(chunks: dict[str, str]) -> Found | None:
    """Draw Things: XMP (``XML:com.adobe.xmp``) whose ``exif:UserComment`` is a JSON object with
    ``c`` (prompt), ``uc`` (negative), ``seed``, ``steps``, ``scale``, ``size``, ``sampler``,
    ``model`` and ``lora``."""
    xmp = chunks.get("XML:com.adobe.xmp") or ""
    match = _XMP_COMMENT.search(xmp)
    data = _json(html.unescape(match.group(1))) if match else None
    if not isinstance(data, dict) or "c" not in data:
        return None
    params: dict[str, Any] = {}
    _copy(data, params, (("steps", "steps"), ("scale", "cfg"), ("seed", "seed"),
                         ("sampler", "sampler"), ("model", "model"), ("strength", "denoise")))
    size = _size(data.get("size"))
    if size:
        params["width"], params["height"] = size
    loras = data.get("lora")
    if isinstance(loras, list):
        params["loras"] = [{"name": str(item.get("model") or item.get("file")),
                            "weight": item.get("weight", 1)}
                           for item in loras if isinstance(item, dict)]
    params["version"] = "Draw Things"
    return str(data.get("c") or ""), str(data.get("uc") or ""), params
