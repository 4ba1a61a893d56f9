#!/usr/bin/env bash
# Export the authors' EQGAT code (Bayer-Group/eqgat) from a local git directory into a folder
# that benchmarks/bench_authors.py loads at run time (--authors-src DEST). Nothing of theirs is
# kept in this repository, and nothing here touches the network: get the git directory first,
# e.g. `git clone --bare https://github.com/Bayer-Group/eqgat /tmp/eqgat.git`.
#
#   benchmarks/fetch_authors_code.sh GIT_DIR DEST [COMMIT]
#
# GIT_DIR: a bare repository or a clone's .git folder; COMMIT defaults to HEAD (the comparison
# in docs/performance.md used 5bbce9bb84fabd986f865cb3d3af8ddbb48c3d37). DEST receives their
# package `eqgat/`, `experiments/__init__.py`, `experiments/model.py` (BaseModel, the network
# their PSR script trains), `experiments/psr/train.py` (for reference: its hyper-parameters),
# their LICENSE, and a file COMMIT with the exported commit.
set -euo pipefail

if [[ $# -lt 2 || $# -gt 3 ]]; then
    echo "usage: $0 GIT_DIR DEST [COMMIT]" >&2
    exit 2
fi
git_dir=$1
dest=$2
commit=${3:-HEAD}

sha=$(git --git-dir="$git_dir" rev-parse --verify "$commit^{commit}")
mkdir -p "$dest"
git --git-dir="$git_dir" archive --format=tar "$sha" \
    eqgat experiments/__init__.py experiments/model.py experiments/psr/train.py LICENSE \
    | tar -x -C "$dest"
printf '%s\n' "$sha" > "$dest/COMMIT"
echo "exported Bayer-Group/eqgat $sha into $dest"
