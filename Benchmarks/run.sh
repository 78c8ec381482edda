#!/usr/bin/env bash
# `make bench`: build leasehold-bench, leasehold and leasehold-worker (release), set up the peers'
# venv (PyJWT, filesystem-mcp, httpx), measure both sides in the same run (Benchmarks/e2e_bench.py
# for the end-to-end figures over HTTP), profile missed goals, and write BENCHMARKS.md.
#
#   Benchmarks/run.sh           full run (release build; first build of dependencies takes minutes)
#   Benchmarks/run.sh --smoke   CI: debug build, tiny samples, prints the report, BENCHMARKS.md untouched
#
# Environment: PYTHON (interpreter for the venv, default python3), BENCH_VENV (default .venv-bench).
set -euo pipefail

mode=full
case "${1:-}" in
    "") ;;
    --smoke) mode=smoke ;;
    -h | --help)
        sed -n '2,9p' "$0" | sed 's/^# \{0,1\}//'
        exit 0
        ;;
    *)
        echo "run.sh: unknown argument $1 (use --smoke or nothing)" >&2
        exit 2
        ;;
esac

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo"
work="$(mktemp -d "${TMPDIR:-/tmp}/leasehold-bench.XXXXXX")"
trap 'rm -rf "$work"' EXIT

step() { printf '\n== %s\n' "$*" >&2; }

# --- Swift side -------------------------------------------------------------------------------
if [[ $mode == smoke ]]; then
    step "building leasehold-bench (debug)"
    swift build --product leasehold-bench >&2
    bin="$(swift build --show-bin-path)/leasehold-bench"
    claim_args=(--samples 50 --warmup 5 --tokens 8 --audit-records 200)
    list_args=(--list-samples 3 --list-warmup 1 --sizes 500,10000)
    py_args=(--samples 50 --warmup 5)
    # End-to-end figures: seconds each, against the debug build CI has just built.
    e2e_args=(--warmup 3 --spawn-samples 10 --read-samples 100 --sessions 8 --duration 2
        --memory-sessions 10 --load-calls 400 --load-round-seconds 1 --search-samples 2 --tree-mb 16 --tree "${TMPDIR:-/tmp}/leasehold-bench-trees/acme/tree-16mb")
    step "building leasehold and leasehold-worker (debug)"
    # One --product per invocation: SwiftPM builds only the last one named.
    swift build --product leasehold >&2
    swift build --product leasehold-worker >&2
    server_bin="$(swift build --show-bin-path)/leasehold"
else
    step "building leasehold-bench (release)"
    swift build -c release --product leasehold-bench >&2
    bin="$(swift build -c release --show-bin-path)/leasehold-bench"
    claim_args=(--samples 2000 --warmup 200 --tokens 64 --audit-records 4000)
    list_args=(--list-samples 500 --list-warmup 50 --sizes 500,10000)
    py_args=(--samples 2000 --warmup 200)
    # perf-record the server side of each end-to-end figure (shown where its goal is missed).
    e2e_profile=()
    if command -v perf >/dev/null; then e2e_profile=(--profile "$work"); else
        echo "run.sh: perf is not installed: missed end-to-end goals get phase timings but no profile" >&2; fi
    e2e_args=(--warmup 100 --spawn-samples 200 --read-samples 3000 --sessions 64 --duration 15
        --memory-sessions 200 --load-calls 10000 --search-samples 10 --tree-mb 200 --tree "${TMPDIR:-/tmp}/leasehold-bench-trees/acme/tree-200mb")
    step "building leasehold and leasehold-worker (release)"
    swift build -c release --product leasehold >&2
    swift build -c release --product leasehold-worker >&2
    server_bin="$(swift build -c release --show-bin-path)/leasehold"
fi
# The end-to-end peers and load generator (apt: bubblewrap firejail wrk). A missing one means a
# figure cannot be produced: fail, do not skip. firejail may be installed yet refuse to run; that
# is measured and reported, not a failure.
for tool in bwrap firejail wrk grep; do
    command -v "$tool" >/dev/null || { echo "run.sh: $tool is not installed (apt-get install bubblewrap firejail wrk)" >&2; exit 1; }
done

# --- Python side ------------------------------------------------------------------------------
venv="${BENCH_VENV:-$repo/.venv-bench}"
requirements="$repo/Benchmarks/requirements.txt"
stamp="$venv/.requirements.sha256"
if [[ ! -x $venv/bin/python ]]; then
    step "creating $venv"
    "${PYTHON:-python3}" -m venv "$venv"
fi
wanted="$(sha256sum "$requirements" | cut -d' ' -f1)"
if [[ ! -f $stamp || "$(cat "$stamp")" != "$wanted" ]]; then
    step "installing Benchmarks/requirements.txt into $venv"
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check -r "$requirements" >&2
    echo "$wanted" >"$stamp"
fi
py="$venv/bin/python"
"$py" -c 'import jwt, cryptography, httpx' # fail early if the venv is broken
[[ -x $venv/bin/filesystem-mcp ]] || { echo "run.sh: $venv/bin/filesystem-mcp missing" >&2; exit 1; }

# --- measure ----------------------------------------------------------------------------------
load="$(cat /proc/loadavg 2>/dev/null || echo unknown)" # after the build, which loads the machine itself
cores="$(nproc 2>/dev/null || echo 1)"
if [[ $mode == full ]] && awk -v load="${load%% *}" -v cores="$cores" 'BEGIN { exit !(load > cores / 2) }'; then
    echo "run.sh: load average ${load%% *} on $cores cores: other work shares the CPU, figures will be noisy" >&2
fi
step "Leasehold: claim verification, tools/list and the audit trail ($mode)"
"$bin" "${claim_args[@]}" "${list_args[@]}" --policies "$repo/policies" \
    --json "$work/swift.json" --export-tokens "$work/tokens.json"

step "PyJWT: the same tokens and keys"
"$py" Benchmarks/pyjwt_bench.py measure --tokens "$work/tokens.json" "${py_args[@]}" --json "$work/pyjwt.json"

step "End to end over Streamable HTTP: shell.run, read_file, throughput, worker memory, search ($mode)"
"$py" Benchmarks/e2e_bench.py measure --leasehold "$server_bin" --policies "$repo/policies" \
    --peer "$venv/bin/filesystem-mcp" --mode "$mode" "${e2e_args[@]}" --json "$work/e2e.json" \
    ${e2e_profile[@]+"${e2e_profile[@]}"}
"$py" Benchmarks/e2e_bench.py render --json "$work/e2e.json" --out "$work/e2e.md"

step "Upstream MCP servers: the 500-tool knowledge base through Leasehold and directly ($mode)"
upstream_args=(--samples 2000 --warmup 100 --cold-samples 10)
[[ $mode == smoke ]] && upstream_args=(--samples 40 --warmup 4 --cold-samples 2)
"$py" Benchmarks/upstream_bench.py measure --leasehold "$server_bin" --policies "$repo/policies" --repo "$repo" \
    "${upstream_args[@]}" --json "$work/upstream.json"
"$py" Benchmarks/upstream_bench.py render --json "$work/upstream.json" --out "$work/upstream.md"
cat "$work/upstream.md" >>"$work/e2e.md"

step "Several nodes on PostgreSQL behind HAProxy: throughput and cross-node revocation ($mode)"
cluster_args=(--sessions 64 --duration 15 --revocations 200)
[[ $mode == smoke ]] && cluster_args=(--sessions 4 --duration 1 --revocations 3)
"$py" Benchmarks/cluster_bench.py measure --leasehold "$server_bin" --policies "$repo/policies" \
    "${cluster_args[@]}" --json "$work/cluster.json"
"$py" Benchmarks/cluster_bench.py render --json "$work/cluster.json" --out "$work/cluster.md"
cat "$work/cluster.md" >>"$work/e2e.md"

# --- profile missed goals (full runs only) ----------------------------------------------------
profile_args=()
if [[ $mode == smoke ]]; then
    # Keep the profiling entry point from rotting without paying for valgrind.
    "$bin" --profile resolve --sizes 500 --list-samples 1 --list-warmup 0 --policies "$repo/policies"
    "$bin" --profile encode --sizes 500 --list-samples 1 --list-warmup 0 --policies "$repo/policies"
else
    missed="$("$py" Benchmarks/pyjwt_bench.py missed --swift "$work/swift.json" --pyjwt "$work/pyjwt.json")"
    if [[ -n $missed ]]; then
        if command -v valgrind >/dev/null && command -v callgrind_annotate >/dev/null; then
            # valgrind 3.19 cannot read the DWARF 5 Swift 6 emits: profile a copy without debug info
            # (function symbols stay, which is all callgrind_annotate needs).
            objcopy --strip-debug "$bin" "$work/leasehold-bench"
            # The exported (`T`) symbol of a Swift function, by mangled prefix: toggling on a pattern
            # would also match its specialized copy and switch collection off again inside it.
            symbol() { nm "$bin" | awk -v prefix="$1" '$2 == "T" && index($3, prefix) == 1 { print $3; exit }'; }
            profile() { # stage, size, function symbol, leasehold-bench arguments...
                local stage=$1 size=$2 toggle=$3
                shift 3
                if [[ -z $toggle ]]; then
                    echo "run.sh: no symbol to profile $stage (renamed?); skipped" >&2
                    return 0
                fi
                step "callgrind: $stage"
                valgrind --tool=callgrind --toggle-collect="$toggle" \
                    --callgrind-out-file="$work/callgrind.$stage.out" \
                    "$work/leasehold-bench" --policies "$repo/policies" "$@" 2>"$work/valgrind.$stage.log" >&2 ||
                    { cat "$work/valgrind.$stage.log" >&2; return 1; }
                profile_args+=(--profile "$stage=$size:$work/callgrind.$stage.out")
            }
            if [[ " $missed " == *" list "* ]]; then
                profile scope 10000 "$(symbol '$s6Runner5ScopeV7session17claimAllowedTools14endpointServer7catalog')" \
                    --profile resolve --sizes 10000 --list-samples 100 --list-warmup 0
                profile visible 10000 "$(symbol '$s6Runner13ScopeResolverV7listing2in')" \
                    --profile resolve --sizes 10000 --list-samples 10 --list-warmup 0
                # JSONEncoder.encode<T: Encodable>(_:) -> Data, in libFoundationEssentials.
                profile encode 10000 '$s20FoundationEssentials11JSONEncoderC6encodeyAA4DataVxKSERzlF' \
                    --profile encode --sizes 10000 --list-samples 3 --list-warmup 0
            fi
            if [[ " $missed " == *" claims "* ]]; then
                profile claims "" "$(symbol '$s6Runner13ClaimVerifierV6verify')" \
                    --only claims --samples 200 --warmup 0 --tokens 8
            fi
        else
            echo "run.sh: goals missed ($missed) but valgrind/callgrind_annotate is not installed; no profile" >&2
        fi
    fi
fi

# --- report -----------------------------------------------------------------------------------
if [[ $mode == smoke ]]; then
    out="$work/BENCHMARKS.md"
    "$py" Benchmarks/pyjwt_bench.py render --smoke --repo "$repo" --load "$load" \
        --swift "$work/swift.json" --pyjwt "$work/pyjwt.json" --section "$work/e2e.md" --out "$out"
    cat "$out"
    step "smoke run passed (BENCHMARKS.md left untouched)"
else
    "$py" Benchmarks/pyjwt_bench.py render --repo "$repo" --load "$load" \
        --swift "$work/swift.json" --pyjwt "$work/pyjwt.json" ${profile_args[@]+"${profile_args[@]}"} \
        --section "$work/e2e.md" \
        --out "$repo/BENCHMARKS.md"
    step "wrote BENCHMARKS.md"
fi
