"""CLIP tokenizer files built offline from the BPE merges that ship with Studio.

Stable Diffusion's tokenizers (OpenAI CLIP-L for SD1.x, OpenCLIP for SD2.x and SDXL's second
encoder) all share one BPE vocabulary; only the padding token differs. ``open_clip`` ships the merges
as ``bpe_simple_vocab_16e6.txt.gz``; this module turns them into the ``vocab.json`` + ``merges.txt``
pair that ``transformers.CLIPTokenizer`` reads, exactly as open_clip's ``SimpleTokenizer`` builds its
vocabulary, so a single-file checkpoint can be loaded without downloading a tokenizer. No torch here.
"""

from __future__ import annotations

import functools
import gzip
import json
from pathlib import Path

from studio import ASSETS_DIR  # resolves inside a PyInstaller bundle too
from studio.core.files import atomic_write_text

BPE_FILE = ASSETS_DIR / "tokenizers" / "bpe_simple_vocab_16e6.txt.gz"

BOS, EOS = "<|startoftext|>", "<|endoftext|>"
#: The padding token of each tokenizer flavour: OpenAI CLIP pads with EOS, OpenCLIP with "!".
PAD_CLIP_L = EOS
PAD_OPEN_CLIP = "!"
MODEL_MAX_LENGTH = 77
_NUM_MERGES = 49152 - 256 - 2  # as open_clip: merges[1 : 49152 - 256 - 2 + 1]


def bytes_to_unicode() -> dict[int, str]:
    """GPT-2/CLIP's reversible map from bytes to printable unicode characters."""
    bs = (list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1))
          + list(range(ord("®"), ord("ÿ") + 1)))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, [chr(c) for c in cs], strict=True))


@functools.lru_cache(maxsize=1)
def vocab_and_merges(bpe_file: Path = BPE_FILE) -> tuple[dict[str, int], tuple[str, ...]]:
    """The CLIP vocabulary (token → id, 49408 entries) and its merge rules ("a b" lines)."""
    with gzip.open(bpe_file, "rt", encoding="utf-8") as fh:
        lines = fh.read().split("\n")
    merges = tuple(lines[1 : _NUM_MERGES + 1])
    byte_chars = list(bytes_to_unicode().values())
    tokens = byte_chars + [c + "</w>" for c in byte_chars]
    tokens += ["".join(m.split(" ")) for m in merges]
    tokens += [BOS, EOS]
    return {tok: i for i, tok in enumerate(tokens)}, merges


def write_clip_tokenizer(dest: Path, pad_token: str = PAD_CLIP_L) -> Path:
    """Write a complete ``CLIPTokenizer`` folder (vocab, merges, configs) into ``dest``."""
    dest = Path(dest)
    vocab, merges = vocab_and_merges()
    atomic_write_text(dest / "vocab.json", json.dumps(vocab, ensure_ascii=False))
    atomic_write_text(dest / "merges.txt", "#version: 0.2\n" + "\n".join(merges) + "\n")
    specials = {"bos_token": BOS, "eos_token": EOS, "unk_token": EOS, "pad_token": pad_token}
    config = {
        "tokenizer_class": "CLIPTokenizer",
        "model_max_length": MODEL_MAX_LENGTH,
        "do_lower_case": True,
        "errors": "replace",
        "add_prefix_space": False,
        **specials,
    }
    atomic_write_text(dest / "tokenizer_config.json", json.dumps(config, indent=2))
    atomic_write_text(dest / "special_tokens_map.json", json.dumps(specials, indent=2))
    return dest
