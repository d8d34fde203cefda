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
#      the ipywidgets embed manager, MathJax) into node_modules/; skipped when
#      node_modules/ already holds exactly that lock file's packages.
#   2. The files the pages load are copied to book/_vendor/ (git-ignored), which
#      _config.yml lists in html_static_path: Sphinx copies it into _static/, so the
#      HTML needs no CDN. (Not book/_static/: Jupyter Book 1 would add every .js and
#      .css found there to every page.)
#   3. `jb build` with warnings as errors. Executed notebooks are cached per output
#      folder, so fast and full builds never share outputs: the cache is keyed on
#      the notebook source, not on VAE_FAST. A change to vae_helpers.py clears it.
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
        node_modules/mathjax/es5/tex-chtml.js)
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
# change to vae_helpers.py (say, a new default) would leave every chapter's old
# outputs in place, and chapters 7-8 reading weights that chapter 6 no longer
# writes. A stamp of the module's hash clears the cache when the module changes,
# and Sphinx's saved environment with it: otherwise Sphinx re-reads only the
# pages whose source changed, and the others keep their old outputs.
cache="$output/_build/.jupyter_cache"
helpers_hash=$(sha256sum vae_helpers.py | cut -d' ' -f1)
helpers_stamp="$output/.vae-helpers.sha256"
if [[ -d "$cache" && "$(cat "$helpers_stamp" 2>/dev/null)" != "$helpers_hash" ]]; then
    echo "== vae_helpers.py changed since the last $mode build: clearing the execution cache"
    rm -rf "$cache" "$output/_build/.doctrees"
fi
mkdir -p "$output"
echo "$helpers_hash" > "$helpers_stamp"
echo "== jb build ($mode, into $output/)"
jb build . --config book/_config.yml --toc book/_toc.yml --path-output "$output" \
    -n -W --keep-going

html="$root/$output/_build/html"
echo
echo "Built the $mode book in $((SECONDS - start)) s. Open it offline:"
echo "  $html/index.html"
