#!/usr/bin/env bash
# Packs the tarball and uses it as a new user would: installs it into a fresh ESM project with
# strict TypeScript (skipLibCheck false), compiles and runs a small program against the local
# PostgreSQL and Redis, and runs the CLI from there. Offline: dependencies come from the npm
# cache that `npm ci` filled. Leaves nothing behind (temp dir, database).
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD
tsc="$repo/node_modules/.bin/tsc"
work=$(mktemp -d "${TMPDIR:-/tmp}/shardline-pack-XXXXXX")
db="shardline_pack_$$_${RANDOM}"
pg_admin=(psql -h 127.0.0.1 -p 5432 -U postgres -d postgres -v ON_ERROR_STOP=1 -qAt)
cleanup() {
  "${pg_admin[@]}" -c "DROP DATABASE IF EXISTS \"$db\" WITH (FORCE)" >/dev/null 2>&1 || echo "pack-check: could not drop database $db" >&2
  [ "${PACK_CHECK_KEEP:-}" = 1 ] && echo "pack-check: kept $work" >&2 || rm -rf "$work"
}
trap cleanup EXIT
fail() {
  echo "pack-check: $*" >&2
  exit 1
}

echo "-- npm pack (prepack builds dist/ from src/ and migrations/)"
npm pack --silent --pack-destination "$work" >/dev/null
tarball=$(ls "$work"/shardline-*.tgz)
version=$(node -p 'require("./package.json").version')

echo "-- tarball contents"
tar -tzf "$tarball" | sed 's#^package/##' | sort >"$work/files.txt"
for want in LICENSE README.md package.json src/cli/bin.js shardmap/local.json dist/src/index.js dist/src/index.d.ts \
  dist/src/routing/index.d.ts dist/src/cli/main.js dist/migrations/0001_player_record_set.js; do
  grep -qx "$want" "$work/files.txt" || fail "the tarball lacks $want"
done
if grep -E '^(dist/(test|bench)/|test/|bench/|src/.*\.ts$|.*\.map$)' "$work/files.txt"; then
  fail "the tarball ships the files above, which a user does not need"
fi
echo "$(wc -l <"$work/files.txt") files"

echo "-- are the types wrong (attw, ESM only)"
"$repo/node_modules/.bin/attw" "$tarball" --profile esm-only --format table-flipped

echo "-- install into a fresh project"
app="$work/app"
mkdir -p "$app/src"
cd "$app"
cat >package.json <<'JSON'
{ "name": "pack-check-app", "private": true, "type": "module" }
JSON
cat >tsconfig.json <<'JSON'
{
  "compilerOptions": {
    "target": "ES2022",
    "module": "NodeNext",
    "moduleResolution": "NodeNext",
    "strict": true,
    "noUncheckedIndexedAccess": true,
    "exactOptionalPropertyTypes": true,
    "skipLibCheck": false,
    "outDir": "dist",
    "rootDir": "src"
  },
  "include": ["src"]
}
JSON
cp "$repo/.ci/pack-check/main.ts" src/main.ts
cp "$repo/.ci/pack-check/routing-only.mjs" routing-only.mjs
# tsx as an app would have it, for its TypeScript migrations (the version the checkout has cached).
tsx_spec="tsx@$(node -p "require('$repo/node_modules/tsx/package.json').version")"
if ! npm install --offline --no-audit --no-fund --loglevel=error "$tarball" "$tsx_spec" >"$work/install.log" 2>&1; then
  # A cache filled by `npm ci` holds the tarballs but maybe not every package's metadata.
  echo "(offline install failed, retrying with --prefer-offline: $(tail -n 3 "$work/install.log" | tr '\n' ' '))"
  npm install --prefer-offline --no-audit --no-fund --loglevel=error "$tarball" "$tsx_spec"
fi

echo "-- compile (strict, skipLibCheck false) against the published types"
"$tsc" -p tsconfig.json

echo "-- migrate and run against 127.0.0.1:5432"
cat >map.json <<JSON
{
  "version": 1,
  "buckets": 4096,
  "regions": ["pack"],
  "shards": [{ "id": "pack-1", "region": "pack", "connection": "env:PACK_DB_URL", "buckets": ["0-4095"] }]
}
JSON
# A password the local (trust) server ignores: it must show up in no output and no public object.
secret="pack-pw-${RANDOM}${RANDOM}"
export PACK_DB_URL="postgres://postgres:$secret@127.0.0.1:5432/$db"
export -n SHARDLINE_MAP 2>/dev/null || true
unset SHARDLINE_MAP
npx --no -- shardline migrate latest --create-databases --map map.json 2>&1 | tee "$work/migrate.out"
out=$(node dist/main.js map.json)
echo "$out" | tee "$work/main.out"
id=$(node -e 'process.stdout.write(JSON.parse(process.argv[1]).id)' "$out")

echo "-- a TypeScript app migration, loaded by the installed (compiled) CLI through the app's tsx"
mkdir -p app-migrations
cat >app-migrations/001_wallet.ts <<'TS'
import type { Knex } from 'knex';
export async function up(knex: Knex): Promise<void> {
  await knex.raw('CREATE TABLE wallet (player_id bigint PRIMARY KEY, coins bigint NOT NULL DEFAULT 0)');
}
export async function down(knex: Knex): Promise<void> {
  await knex.raw('DROP TABLE wallet');
}
TS
npx --no -- shardline migrate latest --map map.json --app-migrations app-migrations >"$work/app-migrate.out" 2>&1 ||
  fail "migrate --app-migrations with a .ts migration failed: $(cat "$work/app-migrate.out")"
grep -q '001_wallet' "$work/app-migrate.out" || fail "the app migration was not applied: $(cat "$work/app-migrate.out")"

echo "-- routing alone loads no BullMQ, knex or prom-client"
SHARDLINE_LOAD_LOG="$work/loads.log" node --import "$repo/test/package/record-loads.mjs" routing-only.mjs map.json "$id" >"$work/routing-only.out"
grep -qx pack-1 "$work/routing-only.out" || fail "shardline/routing did not route $id to pack-1"
if grep -oE 'node_modules/(bullmq|knex|prom-client|ioredis|pg)/' "$work/loads.log" | sort -u | grep .; then
  fail "importing shardline/routing loaded the packages above"
fi

echo "-- the CLI from the installed package"
# Outputs go to files before grep: `grep -q` closing a pipe early would fail the pipeline (pipefail).
npx --no -- shardline --help >"$work/help.out"
grep -q '^  migrate' "$work/help.out" || fail "shardline --help does not list migrate: $(cat "$work/help.out")"
[ "$(npx --no -- shardline --version)" = "$version" ] || fail "shardline --version is not $version"
npx --no -- shardline route "$id" --map map.json >"$work/route-map.out"
grep -q 'pack-1' "$work/route-map.out" || fail "shardline route $id --map map.json did not name pack-1"
npx --no -- shardline shards check --map map.json 2>&1 | tee "$work/shards.out"
if REDIS_URL=redis://127.0.0.1:6379 npx --no -- shardline settlements status pack-check-no-such-match --map map.json 2>"$work/status.err"; then
  fail "settlements status of an unknown match succeeded"
fi
grep -q 'no shard knows match' "$work/status.err" || fail "settlements status (Redis) said: $(cat "$work/status.err")"
if npx --no -- shardline route "$id" >"$work/route.out" 2>&1; then
  fail "shardline route without --map succeeded outside a checkout: $(cat "$work/route.out")"
fi
grep -q -- '--map' "$work/route.out" && grep -q 'SHARDLINE_MAP' "$work/route.out" ||
  fail "shardline route without --map does not name --map and SHARDLINE_MAP: $(cat "$work/route.out")"
if grep -E '^\s+at ' "$work/route.out" "$work/status.err"; then fail "the CLI printed a stack trace"; fi
if grep -l -- "$secret" "$work"/*.out "$work"/*.err; then fail "the password of PACK_DB_URL was printed"; fi

echo "pack-check: ok"
