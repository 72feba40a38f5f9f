#!/usr/bin/env bash
# npm package smoke test (run by .ci/run, not by `deno task test`): build dist/, pack it, install the tarball
# into a scratch project OUTSIDE the repository, and run the README's first example through the package name
# under Node and under Bun; each run checks its numbers against the float64 CPU executor and exits non-zero
# on a mismatch. First the TypeScript compiler checks a consumer file against the installed .d.ts.
# Usage: bash tests/package/npm_smoke.sh   (needs deno, node/npm; bun comes from npx)
set -euo pipefail
repo="$(cd "$(dirname "$0")/../.." && pwd)"
deno="${DENO:-deno}"  # .ci/run exports the path of its Deno
scratch="$(mktemp -d /tmp/flex-npm-smoke.XXXXXX)"
trap 'rm -rf "$scratch"' EXIT
export XDG_RUNTIME_DIR="${XDG_RUNTIME_DIR:-/tmp}"

t0=$SECONDS
(cd "$repo" && "$deno" task build)
tarball="$(cd "$repo/dist" && npm pack --silent --pack-destination "$scratch" | tail -1)"
echo "npm smoke: packed $tarball ($(du -h "$scratch/$tarball" | cut -f1)) in $((SECONDS - t0)) s"

mkdir "$scratch/app"
cd "$scratch/app"
printf '{ "name": "flex-smoke-app", "private": true, "type": "module" }\n' > package.json
npm install --silent --no-audit --no-fund "$scratch/$tarball" typescript@6.0.3
cp "$repo/tests/package/readme_example.mjs" "$repo/tests/package/types_check.ts" .
echo "npm smoke: installed into $scratch/app in $((SECONDS - t0)) s"

# the package's .d.ts as a TypeScript user meets them (declarations checked too: skipLibCheck off)
npx tsc --noEmit --strict --target es2022 --module nodenext --moduleResolution nodenext --lib es2025,dom \
  --skipLibCheck false types_check.ts
echo "npm smoke: types_check.ts type-checks against the installed .d.ts ($((SECONDS - t0)) s)"

node --version
node readme_example.mjs | tail -1
npx -y bun@1.4.5 readme_example.mjs | tail -1
echo "npm smoke: node and bun OK in $((SECONDS - t0)) s"
