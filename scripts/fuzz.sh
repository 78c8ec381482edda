#!/usr/bin/env bash
# Coverage-guided fuzzing (libFuzzer through swiftc -sanitize=fuzzer, with AddressSanitizer) of the
# parsers that read untrusted bytes. Each target is compiled straight from the parser's own source
# files plus Fuzz/targets/<target>.swift (one module, so internal types are reachable and every
# line of the parser is instrumented; no SwiftPM build of the whole package with sanitizers, which
# would cost tens of minutes on a 2-core machine), then run for FUZZ_SECONDS from the seed corpus
# Fuzz/corpus/<target>/ (copied: the repository's seeds stay as committed).
#
# The parsers behind jwt-kit, Yams and the MCP SDK (claims, policy files, leasehold.yaml, the edge's
# exact JSON and its JSON-RPC fast path)
# cannot be compiled alone: their targets are a small SwiftPM package, Fuzz/Package.swift (its own
# scratch path .build-fuzz-pkg; the fuzz flags are on the targets that hold the parser, the
# dependencies are built plain). Building those dependencies costs minutes, so `make test` runs
# only the per-file targets (Makefile FUZZ_CHEAP).
#
# Usage: scripts/fuzz.sh [target ...]      (default: every target)
#   FUZZ_SECONDS  per target (default 60; `make test` runs 10)
#   FUZZ_OUT      work dir (default .build-fuzz: corpora grown here, crashes in $FUZZ_OUT/crashes/)
# Exit status: non-zero when a target crashed (its input is in $FUZZ_OUT/crashes/<target>/ and the
# first lines of the report are printed); turn each into a regression test.
set -euo pipefail
cd "$(dirname "$0")/.."

FUZZ_SECONDS=${FUZZ_SECONDS:-60}
FUZZ_OUT=${FUZZ_OUT:-.build-fuzz}
SWIFTC=${SWIFTC:-swiftc}
# The toolchain's own clang: its sanitizer and libFuzzer runtimes are the ones swiftc links.
CLANG=${CLANG:-$(dirname "$(command -v "$SWIFTC")")/clang}

declare -A sources=(
    [frame_codec]="Sources/SandboxProtocol/Frame.swift Sources/SandboxProtocol/JSONSpan.swift Sources/SandboxProtocol/WorkerProtocol.swift"
    [unified_diff]="Sources/leasehold-worker/UnifiedDiff.swift"
    [gitignore_glob]="Sources/leasehold-worker/GitIgnore.swift Sources/leasehold-worker/Glob.swift"
    # The worker's patch application needs the whole worker module (its tool plumbing), which
    # imports SandboxProtocol and CWorker: built as modules of their own (see build_worker_target).
    [apply_patch]="worker"
    [tool_pattern]="Sources/Runner/Policy/ToolPattern.swift Sources/Runner/Policy/ToolName.swift"
    # Products of Fuzz/Package.swift (see build_package_target).
    [claims]="package"
    [policy_yaml]="package"
    [jsonrpc_edge]="package"
    [config_yaml]="package"
    [hot_edge]="package"
)

targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
    mapfile -t targets < <(printf '%s\n' "${!sources[@]}" | sort)
fi

mkdir -p "$FUZZ_OUT/bin"

# A target inside the worker executable: every worker source but main.swift, with SandboxProtocol
# (and Failures, which it imports) as a module of its own and CWorker's C compiled with ASan and coverage (its modulemap again without
# the static-link lines the worker's -static-executable needs).
build_worker_target() {
    local target=$1 binary=$2 modules="$FUZZ_OUT/modules"
    mkdir -p "$modules/cworker"
    printf 'module CWorker {\n    header "%s/Sources/CWorker/include/cworker.h"\n    export *\n}\n' "$PWD" \
        > "$modules/cworker/module.modulemap"
    "$SWIFTC" -sanitize=fuzzer,address -parse-as-library -module-name Failures -emit-module \
        -emit-module-path "$modules/Failures.swiftmodule" -wmo -c Sources/Failures/*.swift \
        -o "$modules/Failures.o"
    "$SWIFTC" -sanitize=fuzzer,address -parse-as-library -module-name SandboxProtocol -emit-module \
        -emit-module-path "$modules/SandboxProtocol.swiftmodule" -wmo -I "$modules" -c Sources/SandboxProtocol/*.swift \
        -o "$modules/SandboxProtocol.o"
    "$CLANG" -fsanitize=address,fuzzer-no-link -c Sources/CWorker/cworker.c -I Sources/CWorker/include \
        -o "$modules/cworker.o"
    local worker=()
    mapfile -t worker < <(find Sources/leasehold-worker -name '*.swift' ! -name main.swift | sort)
    "$SWIFTC" -sanitize=fuzzer,address -parse-as-library -Onone -g -module-name "Fuzz_$target" \
        -I "$modules" -I "$modules/cworker" "${worker[@]}" "Fuzz/targets/$target.swift" \
        "$modules/SandboxProtocol.o" "$modules/Failures.o" "$modules/cworker.o" -o "$binary"
}

# A product of Fuzz/Package.swift, copied next to the others.
build_package_target() {
    local target=$1 binary=$2 scratch="$PWD/.build-fuzz-pkg"
    swift build --package-path Fuzz --scratch-path "$scratch" --product "$target" >&2
    cp "$scratch/debug/$target" "$binary"
}

# Leaks in the toolchain's own libraries that are not Leasehold's (each says why).
export LSAN_OPTIONS="suppressions=$PWD/Fuzz/lsan.supp:print_suppressions=0${LSAN_OPTIONS:+:$LSAN_OPTIONS}"

failed=()
for target in "${targets[@]}"; do
    if [ -z "${sources[$target]+x}" ]; then
        echo "fuzz: no target $target (have: ${!sources[*]})" >&2
        exit 2
    fi
    binary="$FUZZ_OUT/bin/$target"
    if [ "${sources[$target]}" = package ]; then
        build_package_target "$target" "$binary" 2> "$FUZZ_OUT/$target.build.log" || {
            cat "$FUZZ_OUT/$target.build.log" >&2
            exit 1
        }
    elif [ "${sources[$target]}" = worker ]; then
        build_worker_target "$target" "$binary" 2> "$FUZZ_OUT/$target.build.log" || {
            cat "$FUZZ_OUT/$target.build.log" >&2
            exit 1
        }
    else
        # shellcheck disable=SC2086 # the source lists are space-separated on purpose
        "$SWIFTC" -sanitize=fuzzer,address -parse-as-library -Onone -g -module-name "Fuzz_$target" \
            ${sources[$target]} "Fuzz/targets/$target.swift" -o "$binary" 2> "$FUZZ_OUT/$target.build.log" || {
            cat "$FUZZ_OUT/$target.build.log" >&2
            exit 1
        }
    fi
    corpus="$FUZZ_OUT/corpus/$target"
    crashes="$FUZZ_OUT/crashes/$target"
    mkdir -p "$corpus" "$crashes"
    cp -n Fuzz/corpus/"$target"/* "$corpus"/ 2>/dev/null || true
    log="$FUZZ_OUT/$target.log"
    echo "fuzz: $target for ${FUZZ_SECONDS}s"
    # -rss_limit_mb and -timeout: a slow or huge input is a finding too (a hang or a memory blow-up).
    # Scratch files a harness writes (policy_yaml's policies directory) go here and are removed.
    scratch_tmp="$(cd "$FUZZ_OUT" && pwd)/tmp"
    mkdir -p "$scratch_tmp"
    if TMPDIR="$scratch_tmp" "$binary" "$corpus" -max_total_time="$FUZZ_SECONDS" -timeout=10 -rss_limit_mb=2048 -max_len=65536 \
        -print_final_stats=1 -artifact_prefix="$crashes/" > "$log" 2>&1; then
        grep -E "^stat::(number_of_executed_units|new_units_added|peak_rss_mb)" "$log" | sed "s/^/  /" || true
    else
        echo "fuzz: $target FAILED; report in $log, input in $crashes/:" >&2
        grep -E "ERROR|Fatal error|SUMMARY|Test unit written" "$log" | head -8 >&2 || tail -20 "$log" >&2
        failed+=("$target")
    fi
    rm -rf "$scratch_tmp"
done
if [ ${#failed[@]} -gt 0 ]; then
    echo "fuzz: crashes in: ${failed[*]}" >&2
    exit 1
fi
echo "fuzz: ${#targets[@]} targets, no crash"
