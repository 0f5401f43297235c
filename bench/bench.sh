#!/usr/bin/env bash
# Micro-benchmarks of the hot path (whole handler, auth check, route lookup,
# session lookup) with allocations, compared with the committed baseline
# bench/baseline/bench.txt by benchstat when it is installed.
#
#   bench/bench.sh               run them (about 2 minutes), write the results to a
#                                temp file and compare with the baseline
#   bench/bench.sh -o FILE       the same, writing the results to FILE
#   bench/bench.sh -base FILE    compare with FILE instead (a run of your own on
#                                this machine, e.g. of the commit you start from)
#   bench/bench.sh -update       run them and replace bench/baseline/bench.txt
#   bench/bench.sh -check        only check that every benchmark named below exists
#                                (CI runs this; it runs no benchmark)
#
# COUNT (default 6) is go test's -count, BENCHTIME (default 1s) its -benchtime.
# The Redis benchmarks start redis-server when it is installed and are skipped
# otherwise. benchstat: go install golang.org/x/perf/cmd/benchstat@latest
set -euo pipefail
cd "$(dirname "$0")/.."

# What runs. Every name is a prefix (go test -bench is a regexp): it also
# selects e.g. BenchmarkProxyDirect/BenchmarkProxyGateway and the Parallel variants.
names=(BenchmarkProxy BenchmarkRequireAuth BenchmarkTableLookup BenchmarkRewriteRequest BenchmarkRedisGetSessionHit BenchmarkMemoryGetSession)
pkgs=(./edge/ ./authflow/ ./upstream/ ./sessioncache/)
committed=bench/baseline/bench.txt
baseline=$committed
pattern=$(IFS='|'; echo "${names[*]}")

usage() { sed -n '6,14p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2; }

out="" mode=compare
while [ $# -gt 0 ]; do
  case "$1" in
    -o) [ $# -ge 2 ] || usage; out=$2; shift 2 ;;
    -base) [ $# -ge 2 ] || usage; baseline=$2; shift 2 ;;
    -update) mode=update; shift ;;
    -check) mode=check; shift ;;
    *) usage ;;
  esac
done

if [ "$mode" = check ]; then
  listed=$(go test -list "$pattern" "${pkgs[@]}")
  missing=0
  for n in "${names[@]}"; do
    if ! grep -q "^${n}" <<<"$listed"; then
      echo "bench.sh: no benchmark matches ${n} in ${pkgs[*]}" >&2
      missing=1
    fi
  done
  [ "$missing" = 0 ] || exit 1
  echo "bench.sh: every benchmark of bench.sh exists:"
  grep '^Benchmark' <<<"$listed" | sed 's/^/  /'
  exit 0
fi

if [ "$mode" = update ]; then
  out=$committed
elif [ -z "$out" ]; then
  out=$(mktemp "${TMPDIR:-/tmp}/getaway-bench.XXXXXX")
fi

echo "bench.sh: go test -run '^\$' -bench '$pattern' -benchmem -count ${COUNT:-6} ${pkgs[*]} > $out" >&2
go test -run '^$' -bench "$pattern" -benchmem -count "${COUNT:-6}" -benchtime "${BENCHTIME:-1s}" \
  -timeout 30m "${pkgs[@]}" >"$out"
echo "bench.sh: results in $out" >&2

if [ "$mode" = update ]; then
  echo "bench.sh: $committed updated; commit it with a note of the machine (bench/README.md)" >&2
  exit 0
fi

benchstat=$(command -v benchstat || true)
gobin=$(go env GOBIN)
[ -n "$gobin" ] || gobin="$(go env GOPATH)/bin"
if [ -z "$benchstat" ] && [ -x "$gobin/benchstat" ]; then
  benchstat=$gobin/benchstat
fi
if [ -z "$benchstat" ]; then
  echo "bench.sh: benchstat is not installed, no comparison. Install it with" >&2
  echo "  go install golang.org/x/perf/cmd/benchstat@latest" >&2
  echo "then compare with: benchstat $baseline $out" >&2
  exit 0
fi
"$benchstat" "$baseline" "$out"
