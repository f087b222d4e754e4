#!/usr/bin/env bash
# Builds the second build of the filter that integration/tests/upgrade.rs switches to under
# load: the same source, features and release profile as `make build`, into target/upgrade,
# reporting another commit.
#
# build.rs embeds `git rev-parse --short=12 HEAD`. Here git reads a scratch repository
# (GIT_DIR=target/upgrade/build-identity.git) whose only commit is an empty "upgrade test build"
# commit with fixed dates, so the module reports that commit (state endpoint `build.commit`,
# gauge `inference_router.build.<version>.<commit>`) and a test can tell the two builds apart by
# what Envoy answers. Nothing in the checkout or its .git is touched; the module differs from the
# release build only in those 12 characters.
set -euo pipefail
cd "$(dirname "$0")/.."

out=target/upgrade
git_dir=$out/build-identity.git
if [ ! -f "$git_dir/HEAD" ] || ! git --git-dir="$git_dir" rev-parse -q --verify HEAD >/dev/null; then
  rm -rf "$git_dir"
  mkdir -p "$out"
  git init -q --bare "$git_dir"
  empty_tree=$(git --git-dir="$git_dir" hash-object -w -t tree /dev/null)
  commit=$(GIT_AUTHOR_NAME=inference-router GIT_AUTHOR_EMAIL=upgrade-test@invalid \
    GIT_COMMITTER_NAME=inference-router GIT_COMMITTER_EMAIL=upgrade-test@invalid \
    GIT_AUTHOR_DATE=2000-01-01T00:00:00Z GIT_COMMITTER_DATE=2000-01-01T00:00:00Z \
    git --git-dir="$git_dir" commit-tree "$empty_tree" -m "inference-router upgrade test build")
  git --git-dir="$git_dir" update-ref HEAD "$commit"
fi

GIT_DIR="$PWD/$git_dir" cargo build --release --target wasm32-wasip1 -p inference-router --lib \
  --target-dir "$out"
git --git-dir="$git_dir" rev-parse --short=12 HEAD > "$out/commit"
echo "upgrade build: $out/wasm32-wasip1/release/inference_router.wasm (commit $(cat "$out/commit"))"
