#!/usr/bin/env python3
"""Writes a Vite-shaped document root for the load harness (benches/load/peers.sh).

    vite_root.py DIR

The shape of a small production build: a 460 B index.html, a 190 KiB JS bundle and a 1.4 KiB
stylesheet under assets/ with content-hash names, a 1.5 KiB SVG at the root, and a 5 MiB
incompressible media file. The JS is minified-looking text from a seeded generator, so it
compresses about as well as a real bundle (gzip -6 ~3.5x); everything is deterministic.
Prints the URL paths as `index=… js=… css=… svg=… big=…` for the harness to read.
"""
import base64
import hashlib
import os
import random
import sys

JS_SIZE = 190 * 1024
CSS_SIZE = 1434
SVG_SIZE = 1536
BIG_SIZE = 5 * 1024 * 1024
INDEX_SIZE = 460


def hashed(stem: str, data: bytes, ext: str) -> str:
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).decode()[:8]
    return f"{stem}-{digest}.{ext}"


def pad_to(text: str, size: int, filler: str) -> bytes:
    """`text` with `filler` repeated before its last line, cut to exactly `size` bytes."""
    head, _, tail = text.rpartition("\n")
    need = size - len(head) - len(tail) - 2
    assert need >= 0, (size, len(text))
    body = (filler * (need // len(filler) + 1))[:need]
    return (head + "\n" + body + "\n" + tail).encode()


def bundle(rng: random.Random) -> bytes:
    """Minified-looking JS: statements from templates over Zipf-distributed short identifiers."""
    words = ["createElement", "useState", "useEffect", "useMemo", "props", "children", "className",
             "length", "prototype", "value", "default", "exports", "render", "key", "ref", "state",
             "current", "memo", "push", "call", "apply", "map", "filter", "forEach", "indexOf"]
    ctors = ["Object", "Array", "Map", "Set", "Promise", "Error", "Date", "RegExp"]
    idents = ["".join(rng.choice("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ_$")
                      for _ in range(rng.randint(1, 3))) for _ in range(500)]
    strings = ["".join(rng.choice("abcdefghijklmnopqrstuvwxyz-_ ") for _ in range(rng.randint(3, 18)))
               for _ in range(400)]
    templates = [
        "function {a}({b},{c}){{return {b}.{w}({c})}}",
        "const {a}={b}.{w}||{c};",
        "if({a}==={b}){c}.{w}={d};else {e}(\"{s}\");",
        "{a}.prototype.{w}=function({b}){{this.{x}={b}}};",
        "var {a}=new {C}(\"{s}\",{n});",
        "{a}({b},{{{w}:{c},{x}:\"{s}\"}});",
        "for(let {a}=0;{a}<{b}.length;{a}++){c}.push({b}[{a}]);",
        "{a}=typeof {b}==\"function\"?{b}({c}):{n};",
    ]

    def ident() -> str:
        return idents[min(int(rng.paretovariate(0.6)) - 1, len(idents) - 1)]

    out, size = ['(function(){"use strict";'], 25
    while size < JS_SIZE:
        stmt = rng.choice(templates).format(
            a=ident(), b=ident(), c=ident(), d=ident(), e=ident(), w=rng.choice(words),
            x=rng.choice(words), C=rng.choice(ctors), s=rng.choice(strings), n=rng.randint(0, 9999))
        out.append(stmt)
        size += len(stmt)
    js = "".join(out)[: JS_SIZE - len("})();\n")] + "})();\n"
    assert len(js) == JS_SIZE
    return js.encode()


def main() -> None:
    root = sys.argv[1]
    rng = random.Random(8)
    os.makedirs(os.path.join(root, "assets"), exist_ok=True)

    js = bundle(rng)
    js_name = hashed("index", js, "js")
    css = pad_to(
        ":root{font-family:Inter,system-ui,Avenir,Helvetica,Arial,sans-serif;line-height:1.5;"
        "color-scheme:light dark;color:#ffffffde;background-color:#242424}\n"
        "a{font-weight:500;color:#646cff;text-decoration:inherit}\n"
        "body{margin:0;display:flex;place-items:center;min-width:320px;min-height:100vh}",
        CSS_SIZE, ".card{padding:2em}button{border-radius:8px;border:1px solid transparent}")
    css_name = hashed("index", css, "css")
    svg = pad_to(
        '<svg xmlns="http://www.w3.org/2000/svg" width="32" height="32" viewBox="0 0 256 257">\n'
        '<path fill="#646cff" d="M255.153 37.938L134.897 252.976c-2.483 4.44-8.862 4.466-11.382.048'
        'L.875 37.958c-2.746-4.814 1.371-10.646 6.827-9.67l120.385 21.517a6.537 6.537 0 0 0 2.322-.004'
        'l117.867-21.483c5.438-.991 9.574 4.796 6.877 9.62Z"/>\n</svg>',
        SVG_SIZE, '<path d="M1 1h2v2H1z" fill="none"/>')
    big = rng.randbytes(BIG_SIZE)
    big_name = hashed("intro", big, "mp4")
    index = pad_to(
        '<!doctype html>\n<html lang="en">\n<head>\n<meta charset="UTF-8" />\n'
        '<link rel="icon" type="image/svg+xml" href="/vite.svg" />\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1.0" />\n'
        '<title>Vite + React + TS</title>\n'
        f'<script type="module" crossorigin src="/assets/{js_name}"></script>\n'
        f'<link rel="stylesheet" crossorigin href="/assets/{css_name}">\n'
        '</head>\n<body>\n<div id="root"></div>\n</body>\n</html>',
        INDEX_SIZE, " ")

    files = {"index.html": index, "vite.svg": svg, f"assets/{js_name}": js,
             f"assets/{css_name}": css, f"assets/{big_name}": big}
    for rel, data in files.items():
        with open(os.path.join(root, rel), "wb") as f:
            f.write(data)
    print(f"index=/index.html js=/assets/{js_name} css=/assets/{css_name} svg=/vite.svg "
          f"big=/assets/{big_name}")


if __name__ == "__main__":
    main()
