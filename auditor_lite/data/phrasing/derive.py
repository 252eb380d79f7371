"""Derive expression templates from the real Ref-AVS expressions (reproducible).

Usage::

    python -m auditor_lite.data.phrasing.derive ../shared/data/refavs_metadata.csv \
        auditor_lite/data/phrasing/templates.json

Every real expression is normalised (lower case, no final period, every category word replaced by
a placeholder) and matched against the forms below. A form is one kind of meaning the generator can
fill from a scene's facts and check for uniqueness (``expressions.py``); its regular expressions
name the parts that vary: ``subj`` (the category; a generic noun such as "object" stays literal),
``anchor`` (the category of a reference object), ``dir``, ``depth``, ``color`` and ``size``. A match becomes a
template such as ``the sounding object on the {dir} of the {anchor}`` and the counts of all
expressions mapping to it are summed. A few forms that the real data barely uses but that the issue
asks for (time windows, motion) get a handful of authored templates, marked ``"source": "authored"``.
"""

from __future__ import annotations

import csv
import json
import re
import sys
from collections import Counter
from pathlib import Path

CAT = "\u00a7"   # placeholder for any category word in a normalised expression
COLORS = ("red|black|white|brown|yellow|blue|green|gray|grey|orange|pink|purple|silver|golden|gold")
NOUN = rf"(?P<subj>object|entity|item|{CAT})"
ANCHOR = rf"(?P<amod>sounding |silent )?(?P<anchor>{CAT})"
DIR = r"(?P<dir>left|right)"
MAKE = r"(?:making|producing|emitting|that makes|that is making)"

# form -> (cue type, patterns). Order matters: the first form whose pattern matches wins.
FORMS: dict[str, tuple[str, list[str]]] = {
    "sounding_rel": ("sound+position", [
        rf"the sounding {NOUN} (?:on|to) the {DIR} of the {ANCHOR}",
        rf"the source of (?:the )?sound to the {DIR} of the {ANCHOR}"]),
    "sounding_depth": ("sound+position", [
        rf"the sounding {NOUN} (?P<depth>in front of|behind) the {ANCHOR}",
        rf"the source of (?:the )?sound (?P<depth>in front of|behind) the {ANCHOR}"]),
    "rel": ("position", [rf"the {NOUN} (?:on|to) the {DIR} of the {ANCHOR}"]),
    "depth": ("position", [rf"the {NOUN} (?:positioned )?(?P<depth>in front of|behind) the {ANCHOR}"]),
    "louder_than": ("sound", [rf"the {NOUN} {MAKE} (?:a )?louder sound than the {ANCHOR}"]),
    "loudest": ("sound", [rf"the {NOUN} {MAKE} (?:the|a) loudest sound",
                          rf"the loudest(?: sounding)? {NOUN}", rf"the {NOUN} with the loudest sound"]),
    "first": ("time", [rf"the (?:very )?first {NOUN} to (?:make|emit|produce) (?:a )?sound",
                       rf"the (?:first|initial) sounding {NOUN}", r"the initial source of sound"]),
    "last": ("time", [rf"the last {NOUN} to (?:make|emit|produce) (?:a )?sound",
                      rf"the last sounding {NOUN}"]),
    "always": ("sound", [rf"the {NOUN} that keeps making sound at all times",
                         rf"the {NOUN} {MAKE} (?:a|the) continuous sound",
                         rf"the (?:continuously|perpetually) sounding {NOUN}",
                         rf"the {NOUN} continuously (?:emitting|emits) sound"]),
    "longest": ("sound", [rf"the {NOUN} {MAKE} the longest sound(?: duration)?"]),
    "shortest": ("sound", [rf"the {NOUN} {MAKE} the shortest sound(?: duration)?"]),
    "silent": ("sound", [
        rf"the (?P<subj>instrument|object|{CAT}) (?:that )?(?:didn't|did not) make any sound",
        rf"the (?P<subj>instrument|{CAT}) (?:that )?remain(?:s|ed) silent", rf"the silent {NOUN}"]),
    "sounding": ("sound", [rf"the sounding {NOUN}", rf"the {NOUN} {MAKE} (?:a|the) sound",
                           r"the source of (?:the )?(?:sound|audio)"]),
    "color": ("appearance", [rf"the (?P<color>{COLORS}) {NOUN}", rf"the {NOUN} in (?P<color>{COLORS})",
                             rf"the (?P<color>{COLORS}) and sounding {NOUN}"]),
    "size": ("appearance", [rf"the (?P<size>biggest|smallest) {NOUN}"]),
    "abs_pos": ("position", [rf"the {NOUN} on the (?:far )?{DIR}"]),
    "middle": ("position", [rf"the {NOUN} in the middle"]),
    "category": ("category", [
        rf"the (?P<subj>{CAT})",
        rf"the (?P<subj>{CAT}) (?:consistently )?(?:appearing|appears) (?:through|throughout) "
        r"the (?:entire )?video"]),
}

# Meanings the issue asks for that the real expressions (almost) never use: authored, count 0.
AUTHORED: dict[str, tuple[str, list[str]]] = {
    "begin": ("time", ["the object making a sound at the beginning of the video",
                       "the {cat} making a sound at the beginning", "the sounding {cat} at the beginning"]),
    "end": ("time", ["the object making a sound at the end of the video",
                     "the {cat} making a sound at the end", "the sounding {cat} at the end"]),
    "motion": ("motion", ["the {cat} moving to the {dir}", "the object moving to the {dir}"]),
}

# Multi-label cue keywords, only for the summary of the real data's cue mix.
CUE_KEYWORDS = {
    "sound": r"sound|loud|silent|rhythm|volume|sing|play|speak|bark|audio|noise",
    "time": r"first|last|before|after|beginning|end\b|over the time|continuous|at all times|duration",
    "position": r"left|right|middle|front|behind|near|under|above|next to|beside|between",
    "appearance": rf"\b(?:{COLORS}|big|small|large|tall|short|long|wearing|hair)",
    "motion": r"moving|running|flying|walking|driving",
}


def _category_pattern(categories: set[str]) -> re.Pattern:
    words = set(categories) | {c.replace("-", " ") for c in categories}
    alternatives = "|".join(re.escape(w) for w in sorted(words, key=len, reverse=True))
    return re.compile(rf"\b(?:{alternatives})(?:e?s)?\b")


def normalise(text: str, category_re: re.Pattern) -> str:
    text = re.sub(r"\s+", " ", text.strip().lower()).rstrip(".").strip()
    return category_re.sub(CAT, text)


def _template(match: re.Match) -> str:
    """Replace the varying parts of a match by named placeholders."""
    text, out, pos = match.string, [], 0
    spans = sorted((match.span(g), g) for g, v in match.groupdict().items() if v is not None)
    for (start, end), group in spans:
        value = match.group(group)
        if group == "subj":
            # Generic nouns ("object", "entity", "instrument") stay literal: they vary the phrasing
            # and "instrument" restricts the meaning to instruments.
            slot = "{cat}" if value == CAT else value
        elif group == "amod":
            slot = value           # "sounding " / "silent " stays literal: it is part of the meaning
        else:
            slot = "{" + group + "}"
        out.append(text[pos:start] + slot)
        pos = end
    out.append(text[pos:])
    return "".join(out)


def derive_phrasing(csv_path) -> dict:
    """Count real expressions per (form, template); returns the JSON-able phrasing table."""
    csv_path = Path(csv_path)
    with csv_path.open(newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    if not rows or not {"uid", "exp"} <= set(rows[0]):
        raise ValueError(f"{csv_path}: expected a CSV with columns uid and exp")
    categories = {r["uid"].rsplit("_", 2)[1] for r in rows} - {"null"}
    category_re = _category_pattern(categories)
    compiled = {form: [re.compile(p + "$") for p in patterns] for form, (_, patterns) in FORMS.items()}
    counts: dict[str, Counter] = {form: Counter() for form in FORMS}
    cue_counts: Counter = Counter()
    matched = 0
    for row in rows:
        norm = normalise(row["exp"], category_re)
        for cue, pattern in CUE_KEYWORDS.items():
            cue_counts[cue] += bool(re.search(pattern, norm))
        cue_counts["category_word"] += CAT in norm
        for form, patterns in compiled.items():
            match = next((m for m in (p.match(norm) for p in patterns) if m), None)
            if match:
                counts[form][_template(match)] += 1
                matched += 1
                break
    forms = {}
    for form, (cue, _) in FORMS.items():
        templates = [{"text": t, "count": c, "source": "refavs"} for t, c in counts[form].most_common()]
        forms[form] = {"cue": cue, "templates": templates}
    for form, (cue, texts) in AUTHORED.items():
        forms[form] = {"cue": cue, "templates": [{"text": t, "count": 0, "source": "authored"}
                                                 for t in texts]}
    return {
        "source": "Ref-AVS refavs_metadata.csv (MIT licence, (c) 2024 GeWu-Lab; see LICENSE.txt)",
        "expressions": len(rows),
        "matched": matched,
        "cue_counts": dict(sorted(cue_counts.items())),
        "categories": sorted(categories),
        "forms": forms,
    }


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print("usage: python -m auditor_lite.data.phrasing.derive REFAVS_METADATA_CSV OUT_JSON",
              file=sys.stderr)
        return 2
    table = derive_phrasing(argv[0])
    Path(argv[1]).write_text(json.dumps(table, indent=1) + "\n", encoding="utf-8")
    print(f"{argv[1]}: {table['matched']} of {table['expressions']} expressions matched "
          f"{sum(len(f['templates']) for f in table['forms'].values())} templates")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
