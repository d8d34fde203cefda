#!/usr/bin/env bash
# Builds the HTML book with Jupyter Book 1: `make book` (full) and `make book-fast`.
#
#   bash scripts/build_book.sh             full build: every chapter runs as written
#                                          (chapter 6 trains 10 epochs, ~15 min on
#                                          2 cores), into _build/full/
#   VAE_FAST=1 bash scripts/build_book.sh  fast build (tiny data, one epoch), into
#                                          _build/fast/
#
# Offline, point the chapters at a local MNIST first:
#   export VAE_MNIST_PATH=/path/to/mnist.npz
#
# Steps:
#   1. `npm ci` installs the browser code pinned in package-lock.json (RequireJS,
#      the ipywidgets embed manager, MathJax; and axe-core, which only the browser
#      tests use) into node_modules/; skipped when node_modules/ already holds
#      exactly that lock file's packages.
#   2. The files the pages load are copied to book/_vendor/ (git-ignored), which
#      _config.yml lists in html_static_path: Sphinx copies it into _static/, so the
#      HTML needs no CDN. (Not book/_static/: Jupyter Book 1 would add every .js and
#      .css found there to every page.) axe-core is not copied: a test tool.
#   3. `jb build` with warnings as errors. Executed notebooks are cached per output
#      folder; a stamp over every input that changes their outputs (the helper
#      modules, the pinned requirements, the MNIST file, fast/full) clears the
#      cache when one changes. Training writes into the output folder
#      ($output/results, via VAE_RESULTS_DIR), so chapters 7-8 read the model that
#      chapter 6 of this build trained, and the build changes no tracked file
#      (checked with `git status` before and after; the build fails if one did).
#      The book's own Sphinx extension writes vae-book.zip, the runnable book.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
root=$(pwd)
if [[ -x "$root/.venv/bin/jb" ]]; then
    PATH="$root/.venv/bin:$PATH"
fi
command -v jb >/dev/null || { echo "error: jb not found; run \`make setup\` first" >&2; exit 1; }
command -v npm >/dev/null || { echo "error: npm not found (Debian: apt-get install -y npm)" >&2; exit 1; }

# Same rule as vae_helpers.fast_mode().
case "${VAE_FAST:-}" in
    "" | 0 | false | False) mode=full ;;
    *) mode=fast ;;
esac
output="_build/$mode"
start=$SECONDS

# 1. Browser code from the npm registry, as locked.
lock_hash=$(sha256sum package-lock.json | cut -d' ' -f1)
stamp=node_modules/.vae-book-lock.sha256
needed=(node_modules/requirejs/require.js
        node_modules/@jupyter-widgets/html-manager/dist/embed-amd.js
        node_modules/mathjax/es5/tex-chtml.js
        node_modules/axe-core/axe.min.js)
installed=yes
for file in "$stamp" "${needed[@]}"; do
    [[ -f "$file" ]] || installed=no
done
if [[ $installed == no || "$(cat "$stamp")" != "$lock_hash" ]]; then
    echo "== npm ci (package-lock.json)"
    npm ci --ignore-scripts --no-audit --no-fund
    echo "$lock_hash" > "$stamp"
else
    echo "== node_modules/ matches package-lock.json"
fi

# 2. What the pages load, into book/_vendor/ (served as _static/ in the HTML).
vendor=book/_vendor
echo "== copying browser assets to $vendor/"
rm -rf "$vendor"
mkdir -p "$vendor/@jupyter-widgets/html-manager/dist" "$vendor/mathjax/es5/output"

cp node_modules/requirejs/require.js "$vendor/require.js"

widgets=node_modules/@jupyter-widgets/html-manager
cp "$widgets/dist/embed-amd.js" "$vendor/@jupyter-widgets/html-manager/dist/"
# Its icon fonts (Font Awesome), which embed-amd.js loads from its own folder.
find "$widgets/dist" -maxdepth 1 -type f \
    \( -name '*.woff2' -o -name '*.woff' -o -name '*.ttf' -o -name '*.eot' -o -name '*.svg' \) \
    -exec cp {} "$vendor/@jupyter-widgets/html-manager/dist/" \;

# MathJax 3: the TeX-to-HTML bundle, plus what it loads on demand (TeX extensions,
# fonts, the menu and its accessibility tools).
mathjax=node_modules/mathjax
cp "$mathjax/LICENSE" "$vendor/mathjax/"
cp "$mathjax/es5/tex-chtml.js" "$vendor/mathjax/es5/"
cp -r "$mathjax/es5/input" "$mathjax/es5/ui" "$mathjax/es5/a11y" "$mathjax/es5/sre" \
    "$mathjax/es5/adaptors" "$vendor/mathjax/es5/"
cp -r "$mathjax/es5/output/chtml" "$mathjax/es5/output/chtml.js" "$vendor/mathjax/es5/output/"

# 3. The book. The execution cache is keyed on each notebook's own source, so a
# change to anything else the chapters run on (a new default in vae_helpers.py, a
# new TensorFlow pin, another MNIST file, fast or full mode) would leave every
# chapter's old outputs in place. One stamp, sha256 over all of those inputs,
# clears the cache when it changes, with Sphinx's saved environment (else Sphinx
# re-reads only the pages whose source changed, and the others keep their old
# outputs) and the build's own training results (else chapters 7-8 could load a
# model that chapter 6 no longer writes).
build="$output/_build"
cache="$build/.jupyter_cache"
results="$output/results"

if [[ -n "${VAE_MNIST_PATH:-}" ]]; then
    [[ -f "$VAE_MNIST_PATH" ]] || {
        echo "error: VAE_MNIST_PATH=$VAE_MNIST_PATH is not a file" >&2; exit 2; }
    mnist=$(sha256sum "$VAE_MNIST_PATH" | cut -d' ' -f1)
else
    mnist=keras-download
fi
# One line per input: what it is, and its hash (classifier.keras: chapter 7 reads
# its grid with it; absent in a clone that has not trained it yet; the study's
# summary: chapter 9 reads the committed study).
execution_inputs() {
    echo "mode $mode"
    echo "mnist $mnist"
    for file in vae_helpers.py vae_config.py requirements.txt \
                results/classifier/classifier.keras \
                benchmarks/study.py results/study/summary.json; do
        if [[ -f "$file" ]]; then
            echo "$file $(sha256sum "$file" | cut -d' ' -f1)"
        else
            echo "$file absent"
        fi
    done
}
# book/ (configuration, templates, styles, extensions, browser code): Sphinx does
# not notice a changed template or static file on its own, so a change rewrites
# every page (the execution cache stays). book/_vendor/ is copied from
# node_modules/ above, which package-lock.json stands for.
site_inputs() {
    { find book -path book/_vendor -prune -o -type f ! -path '*/__pycache__/*' -print0
      printf '%s\0' package-lock.json; } | sort -z | xargs -0 sha256sum
}
mkdir -p "$output"
execution_stamp="$output/.vae-execution-inputs"
site_stamp="$output/.vae-site-inputs"
execution_inputs > "$execution_stamp.new"
site_inputs > "$site_stamp.new"
if [[ -d "$cache" || -d "$results" ]] && ! cmp -s "$execution_stamp.new" "$execution_stamp"; then
    echo "== inputs changed since the last $mode build: clearing the execution cache"
    diff "$execution_stamp" "$execution_stamp.new" 2>/dev/null | sed -n 's/^> /   now: /p' || true
    rm -rf "$cache" "$build/.doctrees" "$results"
fi
if [[ -d "$build/html" ]] && ! cmp -s "$site_stamp.new" "$site_stamp"; then
    echo "== book templates, styles or extensions changed: rewriting every page"
    rm -rf "$build/.doctrees" "$build/html"
fi
# Chapter 6's run gone (deleted by hand) while its executed notebook is cached:
# chapters 7-8 would train another model. Run every chapter again.
if [[ -d "$cache" ]] && ! compgen -G "$results/*/run.json" >/dev/null; then
    echo "== no finished training run in $results/: clearing the execution cache"
    rm -rf "$cache" "$build/.doctrees"
fi
mv "$execution_stamp.new" "$execution_stamp"
mv "$site_stamp.new" "$site_stamp"

# Training (chapter 6) writes here, not into the tracked results/.
export VAE_RESULTS_DIR="$root/$results"

# Tracked files as they are before the build, to check that it changes none.
tracked_state() {
    git status --porcelain --untracked-files=no
    git diff --no-ext-diff --binary | sha256sum
}
in_git=no
if git rev-parse --is-inside-work-tree >/dev/null 2>&1; then
    in_git=yes
    before=$(tracked_state)
fi

echo "== jb build ($mode, into $output/)"
jb build . --config book/_config.yml --toc book/_toc.yml --path-output "$output" \
    -n -W --keep-going

if [[ $in_git == yes && "$(tracked_state)" != "$before" ]]; then
    echo "error: the book build changed tracked files (a chapter writing outside" \
         "\$VAE_RESULTS_DIR, or an edit made during the build):" >&2
    diff <(echo "$before") <(tracked_state) | sed -n 's/^> /  /p' >&2
    exit 1
fi

html="$root/$output/_build/html"
echo
echo "Built the $mode book in $((SECONDS - start)) s. Open it offline:"
echo "  $html/index.html"
