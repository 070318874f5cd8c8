#!/usr/bin/env python3
"""Natural-text corpus for Ariadne's default model (runs on the CPU machine; Python standard library only).

Sources, all public domain:
  - War and Peace (Maude translation), ../shared/data/war-and-peace.txt; the last 5% (from the first
    paragraph break after 95% of its characters) is held out for perplexity and never trained on.
  - The King James Bible, Debian package bible-kjv-text (read with the `bible` program of bible-kjv).
  - The Devil's Dictionary (Ambrose Bierce), Debian package dict-devil.
  - The Jargon File 4.4.7, Debian package dict-jargon.
  - SQLite's documentation (public domain), Debian package sqlite3-doc.
And permissively licensed:
  - The Python 3.11 documentation (PSF License), Debian package python3.11-doc.
  - The PostgreSQL 15 documentation (PostgreSQL License, BSD-style), Debian package postgresql-doc-15.

Hard-wrapped paragraphs are unwrapped (lines joined with one space, paragraphs separated by a blank line),
so the text looks like the whitespace-normalised haystacks of `ariadne eval tasks`.

Writes OUT/natural/*.txt (training text, one file per source), OUT/heldout.txt and OUT/corpus.json (sizes
and sources).
"""
import argparse
import glob
import gzip
import html.parser
import json
import os
import re
import subprocess
import sys

HELDOUT_FRACTION = 0.05


def unwrap(text):
    """Join hard-wrapped lines of each paragraph; paragraphs separated by one blank line."""
    paras = re.split(r"\n\s*\n", text.replace("\r\n", "\n"))
    out = []
    for p in paras:
        p = " ".join(line.strip() for line in p.split("\n") if line.strip())
        p = re.sub(r"[ \t]+", " ", p)
        if p:
            out.append(p)
    return "\n\n".join(out) + "\n"


def war_and_peace(path):
    text = open(path, encoding="utf-8").read()
    cut = text.find("\n\n", int(len(text) * (1.0 - HELDOUT_FRACTION)))
    if cut < 0:
        sys.exit(f"{path}: no paragraph break after {1 - HELDOUT_FRACTION:.0%} of the text")
    return unwrap(text[:cut]), unwrap(text[cut:]), cut


def kjv():
    """The whole Bible as chapters of prose: 'Genesis 1' headings, verse numbers dropped."""
    try:
        raw = subprocess.run(["bible", "-l0", "Gen1:1-Rev22:21"], check=True, capture_output=True,
                             text=True).stdout
    except (OSError, subprocess.CalledProcessError) as e:
        sys.exit(f"bible: {e} (apt-get install bible-kjv bible-kjv-text)")
    chapters, verses = [], []
    heading = None
    for line in raw.split("\n"):
        s = line.strip()
        if not s:
            continue
        m = re.match(r"^(\d+)\s+(.*)$", s)
        if m and heading is not None:
            verses.append(m.group(2))
        else:
            if heading is not None and verses:
                chapters.append(heading + "\n\n" + " ".join(verses))
            heading, verses = s, []
    if heading is not None and verses:
        chapters.append(heading + "\n\n" + " ".join(verses))
    return "\n\n".join(chapters) + "\n"


def dictd(path):
    """A dictd database as plain text, without its 00-database-* header entries."""
    try:
        raw = gzip.open(path, "rt", encoding="utf-8").read()
    except OSError as e:
        sys.exit(f"{path}: {e} (apt-get install dict-devil dict-jargon)")
    # The header entries come first; the dictionary proper starts after the last 00-database block.
    lines = raw.split("\n")
    start = 0
    for i, line in enumerate(lines):
        if line.startswith("00-database"):
            start = i
    # Skip the rest of the last header entry (up to the next blank line).
    while start < len(lines) and lines[start].strip():
        start += 1
    body = "\n".join(lines[start:])
    return unwrap(body)


class _HtmlText(html.parser.HTMLParser):
    """Text of an HTML page: one paragraph per block element; scripts, styles and navigation dropped."""
    BLOCKS = {"p", "li", "h1", "h2", "h3", "h4", "h5", "h6", "pre", "dt", "dd", "tr", "blockquote", "div",
              "table", "ul", "ol", "dl", "br", "title", "section"}
    SKIP = {"script", "style", "head", "nav", "footer"}
    SKIP_CLASSES = ("related", "sphinxsidebar", "navheader", "navfooter", "footer", "menu", "toc")
    VOID = {"br", "img", "meta", "link", "input", "hr", "area", "base", "col", "embed", "source", "wbr"}

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.parts, self.cur, self.stack, self.skip, self.pre = [], [], [], 0, 0

    def flush(self):
        t = "".join(self.cur)
        t = t.strip("\n") if self.pre else re.sub(r"\s+", " ", t).strip()
        if t:
            self.parts.append(t)
        self.cur = []

    def handle_starttag(self, tag, attrs):
        if tag in self.BLOCKS:
            self.flush()
        if tag in self.VOID:
            return
        cls = dict(attrs).get("class") or ""
        skip = tag in self.SKIP or any(w in cls.split() for w in self.SKIP_CLASSES)
        self.stack.append((tag, skip))
        self.skip += skip
        self.pre += tag == "pre"

    def handle_endtag(self, tag):
        if tag in self.VOID or not any(t == tag for t, _ in self.stack):
            return
        if tag in self.BLOCKS:
            self.flush()
        while self.stack:
            t, skip = self.stack.pop()
            self.skip -= skip
            self.pre -= t == "pre"
            if t == tag:
                break

    def handle_data(self, data):
        if not self.skip:
            self.cur.append(data)


def html_docs(root, pattern="**/*.html", min_words=4):
    """The text of every HTML page under root (sorted by path), paragraphs of at least min_words words."""
    files = sorted(glob.glob(os.path.join(root, pattern), recursive=True))
    if not files:
        sys.exit(f"{root}: no HTML files (apt-get install sqlite3-doc python3.11-doc postgresql-doc-15)")
    pages = []
    for path in files:
        p = _HtmlText()
        try:
            p.feed(open(path, encoding="utf-8", errors="replace").read())
            p.close()
        except AssertionError:
            continue
        p.flush()
        paras = [t for t in p.parts if len(t.split()) >= min_words or "\n" in t]
        # The same sidebar-like paragraph on many pages is boilerplate: drop exact repeats within a page.
        seen, keep = set(), []
        for t in paras:
            if t not in seen:
                seen.add(t)
                keep.append(t)
        if keep:
            pages.append("\n\n".join(keep))
    # Paragraphs repeated across many pages (navigation text, copyright lines) are dropped.
    count = {}
    for page in pages:
        for t in set(page.split("\n\n")):
            count[t] = count.get(t, 0) + 1
    out = []
    for page in pages:
        kept = [t for t in page.split("\n\n") if count[t] <= 3]
        if kept:
            out.append("\n\n".join(kept))
    return "\n\n".join(out) + "\n"


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--war-and-peace", default=os.path.join(here, "../../../shared/data/war-and-peace.txt"))
    ap.add_argument("--out", required=True, help="output folder (e.g. .devtmp/train-data)")
    a = ap.parse_args()
    os.makedirs(os.path.join(a.out, "natural"), exist_ok=True)
    wp_train, wp_heldout, cut = war_and_peace(a.war_and_peace)
    sources = {
        "war-and-peace": (wp_train, "Tolstoy, War and Peace (Maude translation), first 95%; public domain"),
        "kjv": (kjv(), "King James Bible (Debian bible-kjv-text); public domain"),
        "devil": (dictd("/usr/share/dictd/devil.dict.dz"),
                  "Ambrose Bierce, The Devil's Dictionary (Debian dict-devil); public domain"),
        "jargon": (dictd("/usr/share/dictd/jargon.dict.dz"),
                   "The Jargon File 4.4.7 (Debian dict-jargon); public domain"),
        "sqlite-doc": (html_docs("/usr/share/doc/sqlite3"),
                       "SQLite documentation (Debian sqlite3-doc); public domain"),
        "python-doc": (html_docs("/usr/share/doc/python3.11/html"),
                       "Python 3.11 documentation (Debian python3.11-doc); PSF License"),
        "postgresql-doc": (html_docs("/usr/share/doc/postgresql-doc-15/html"),
                           "PostgreSQL 15 documentation (Debian postgresql-doc-15); PostgreSQL License"),
    }
    info = {"heldout": {"file": "heldout.txt", "source": "war-and-peace.txt from character " + str(cut),
                        "chars": len(wp_heldout)}, "natural": {}}
    for name, (text, desc) in sources.items():
        with open(os.path.join(a.out, "natural", name + ".txt"), "w", encoding="utf-8") as f:
            f.write(text)
        info["natural"][name] = {"chars": len(text), "source": desc}
    with open(os.path.join(a.out, "heldout.txt"), "w", encoding="utf-8") as f:
        f.write(wp_heldout)
    with open(os.path.join(a.out, "corpus.json"), "w") as f:
        json.dump(info, f, indent=1)
    print(json.dumps(info, indent=1))


if __name__ == "__main__":
    main()
