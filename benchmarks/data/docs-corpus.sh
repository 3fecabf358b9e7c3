#!/usr/bin/env bash
# The benchmarks' real-text corpus: about 35 MB of English technical documentation written by
# people, the reStructuredText sources of two Debian documentation packages (the Python 3.11
# manual and the Linux 6.1 kernel documentation). Each source file is one document; documents
# are joined by <|endoftext|>; the first 95% of them (sorted by path) are the training split.
# Writes OUT_DIR/docs_train.txt and OUT_DIR/docs_valid.txt. Needs apt-get and dpkg (Debian or
# a derivative) with package lists present ('apt-get update' once); no root needed.
# Usage: benchmarks/data/docs-corpus.sh OUT_DIR
set -euo pipefail
out=${1:?usage: docs-corpus.sh OUT_DIR}
packages=(python3.11-doc linux-doc-6.1)
mkdir -p "$out"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
if ! (cd "$work" && apt-get download -qq "${packages[@]}" >"$work/apt.log" 2>&1); then
  echo "docs-corpus.sh: apt-get download ${packages[*]} failed (run 'apt-get update' first?): $(tail -n 1 "$work/apt.log")" >&2
  exit 1
fi
for deb in "$work"/*.deb; do dpkg -x "$deb" "$work/tree"; done
python3 - "$work/tree" "$out" <<'PY'
import pathlib
import sys

tree, out = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2])
sources = sorted(path for path in tree.rglob("*.rst.txt") if "_sources" in path.parts)
documents = [text for text in (p.read_text(encoding="utf-8", errors="replace").strip() for p in sources) if text]
cut = len(documents) * 95 // 100
separator = "\n<|endoftext|>\n"
for split, part in (("train", documents[:cut]), ("valid", documents[cut:])):
    (out / f"docs_{split}.txt").write_text(separator.join(part) + "\n", encoding="utf-8")
print(f"{len(documents)} documents -> {out}/docs_train.txt, {out}/docs_valid.txt")
PY
