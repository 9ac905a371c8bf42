"""Counts in what Studio says are pluralised: "1 token", never "1 tokens" (studio.core.wording)."""

from __future__ import annotations

import re
from pathlib import Path

from studio.core.wording import count_of, plural

ROOT = Path(__file__).resolve().parents[1] / "studio"
# An f-string that puts a number straight before a plural noun: "{n} tokens". A denominator
# ("{used} / {limit} tokens") reads right for any number and is allowed, and so is a line marked
# "plural-ok" (the braces hold no count: "made for {family} models").
NOUNS = ("tokens|images|steps|files|models|points|messages|conversations|LoRAs|runs|lessons|"
         "seconds|tiles|results|servers|entries|items|jobs")
COUNTED = re.compile(r"(?<!/ )\{[^{}]+\} (?:" + NOUNS + r")\b")


def test_count_of():
    assert count_of(1, "token") == "1 token"
    assert count_of(0, "token") == "0 tokens"
    assert count_of(2, "image") == "2 images"
    assert count_of(12345, "token") == "12,345 tokens"
    assert count_of(1, "LoRA") == "1 LoRA" and count_of(3, "LoRA") == "3 LoRAs"
    assert count_of(2, "entry") == "2 entries" and plural("match", 1) == "match"
    assert count_of(2, "child", "children") == "2 children"


def test_no_count_is_glued_to_a_plural_noun():
    offenders = []
    for path in sorted(ROOT.rglob("*.py")):
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if COUNTED.search(line) and "# plural-ok" not in line:
                offenders.append(f"{path.relative_to(ROOT.parent)}:{number}: {line.strip()}")
    assert not offenders, "use studio.core.wording.count_of:\n" + "\n".join(offenders)
