"""Write docs/api/c_api.md, the C API reference, from include/eightbit/eightbit.h.

    python tools/gen_c_api_docs.py            # rewrite the page
    python tools/gen_c_api_docs.py --check    # exit 1 if the page is not what the header gives

mkdocstrings has no C handler, so the header's own comments are the reference: each group of
declarations (a comment and the declarations under it, up to a blank line) becomes one entry
with the declarations as C and the comment as text. tests/test_api_docs.py runs --check's test
and checks, with its own scan of the header, that every function, type and macro is on the page.
"""

from __future__ import annotations

import argparse
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
HEADER = ROOT / "include" / "eightbit" / "eightbit.h"
PAGE = ROOT / "docs" / "api" / "c_api.md"

# Preprocessor lines that are plumbing, not API: the include guard, C++ linkage, EB_API itself.
_PLUMBING = re.compile(r"#\s*(ifndef|ifdef|if|endif|else|include)\b|#\s*define\s+(EIGHTBIT_EIGHTBIT_H_|EB_API)\b"
                       r"|extern \"C\"|^}$")


@dataclass
class Entry:
    comment: str                                   # the comment above the group, as plain text
    declarations: list[str] = field(default_factory=list)
    names: list[str] = field(default_factory=list)
    kind: str = "function"                         # function, type or macro


def _comment_text(block: str) -> str:
    body = block.strip()
    body = body[2:-2] if body.startswith("/*") and body.endswith("*/") else body
    lines = [re.sub(r"^\s*\*? ?", "", line).rstrip() for line in body.splitlines()]
    return " ".join(line.strip() for line in lines if line.strip())


def _declared(decl: str) -> tuple[str, list[str]]:
    """The kind of a declaration and the names it declares."""
    if decl.startswith("#define"):
        return "macro", [decl.split()[1]]
    if decl.startswith("typedef"):
        names = [re.search(r"(\w+)\s*;\s*$", decl).group(1)]
        # An enum's constants are names too: a reader looks them up.
        body = re.search(r"\{(.*)\}", decl, re.S)
        if decl.startswith("typedef enum") and body:
            names += re.findall(r"^\s*(\w+)\s*(?:=|,|$)", re.sub(r"/\*.*?\*/", "", body.group(1)), re.M)
        return "type", names
    return "function", [re.search(r"(\w+)\s*\(", decl).group(1)]


def parse(text: str) -> tuple[str, list[Entry]]:
    """The header's leading comment and its entries, in the order the header declares them."""
    intro = re.match(r"\s*(/\*.*?\*/)", text, re.S)
    rest = text[intro.end():] if intro else text
    entries: list[Entry] = []
    pending: Entry | None = None
    lines = rest.splitlines()
    i = 0
    while i < len(lines):
        line = lines[i].strip()
        if not line:
            pending = None                         # a blank line ends a group
            i += 1
            continue
        if line.startswith("/*"):
            block = [lines[i]]
            while "*/" not in lines[i]:
                i += 1
                block.append(lines[i])
            pending = Entry(_comment_text("\n".join(block)))
            i += 1
            continue
        if _PLUMBING.search(line):
            i += 1
            continue
        # One declaration: up to the ';' that ends it (a typedef's body spans lines), or one #define line.
        decl = [lines[i].rstrip()]
        if not line.startswith("#define"):
            depth = lines[i].count("{") - lines[i].count("}")
            while not (depth == 0 and decl[-1].rstrip().endswith(";")):
                i += 1
                decl.append(lines[i].rstrip())
                depth += lines[i].count("{") - lines[i].count("}")
        i += 1
        text_decl = "\n".join(decl)
        if text_decl.startswith("EB_API"):           # one line per function, as a reader scans it
            text_decl = re.sub(r"\s+", " ", text_decl[len("EB_API"):]).strip()
        kind, names = _declared(text_decl)
        if pending is None or (pending.declarations and pending.kind != kind):
            pending = Entry("")
        if not pending.declarations:
            pending.kind = kind
            entries.append(pending)
        pending.declarations.append(text_decl)
        pending.names += names
    return (_comment_text(intro.group(1)) if intro else ""), entries


def _markdown(comment: str, names: set[str]) -> str:
    """A header comment as Markdown: declared names as code, a C pointer's '*' not emphasis."""
    parts = re.split(r"(`[^`]*`)", re.sub(r"\s{2,}", " ", comment))
    for k in range(0, len(parts), 2):              # the text between existing code spans
        text = re.sub(r"\b(" + "|".join(sorted(names, key=len, reverse=True)) + r")\b", r"`\1`", parts[k])
        parts[k] = text.replace("*", r"\*")
    return "".join(parts)


def render(text: str) -> str:
    intro, entries = parse(text)
    names = {n for e in entries for n in e.names}
    out = ["# C API reference", "",
           "<!-- Generated from include/eightbit/eightbit.h by tools/gen_c_api_docs.py: edit the header's",
           "     comments, then run the script. -->", "",
           "`#include <eightbit/eightbit.h>`, link with `-leightbit` (`eightbit c-flags` prints the flags",
           "for the library the Python package ships). The guide, with a whole program and the error",
           "codes explained, is [The C library](../c_api.md). Every function below is exported with",
           "`EB_API` (default visibility); nothing else in the library is.", "", _markdown(intro, names), ""]
    for title, kind in (("Types", "type"), ("Functions", "function"), ("Macros", "macro")):
        group = [e for e in entries if e.kind == kind]
        if not group:
            continue
        out += [f"## {title}", ""]
        for e in group:
            declared = e.names if kind != "type" else e.names[:1]   # a type's heading: its name
            out += ["### " + ", ".join(f"`{n}`" for n in declared), "", "```c", *e.declarations, "```", ""]
            if e.comment:
                out += [_markdown(e.comment, names), ""]
    return "\n".join(out).rstrip() + "\n"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--check", action="store_true", help="compare instead of writing; exit 1 when stale")
    args = p.parse_args(argv)
    page = render(HEADER.read_text(encoding="utf-8"))
    if args.check:
        if not PAGE.exists() or PAGE.read_text(encoding="utf-8") != page:
            print(f"{PAGE.relative_to(ROOT)} is stale: run python tools/gen_c_api_docs.py", file=sys.stderr)
            return 1
        return 0
    PAGE.write_text(page, encoding="utf-8")
    print(f"wrote {PAGE.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
