#!/bin/bash
# Runs every test and ends with one line "N passed, N failed[, N skipped]".
#   scripts/check.sh [BUILDDIR]
# CM_SANITIZE=1  also build and run the unit tests under ASAN+UBSAN (build-asan/)
# CM_FUZZ=SECS   also build the libFuzzer targets with clang and run each for SECS seconds
# CM_NO_INTEGRATION=1  unit tests only
set -u
cd "$(dirname "$0")/.."
BUILD=${1:-build}
PY=/usr/bin/python3
passed=0 failed=0 skipped=0

add_counts() { # "p f s"
        set -- $1
        passed=$((passed + $1)); failed=$((failed + $2)); skipped=$((skipped + $3))
}

meson_counts() { # testlog.json -> "p f s"
        $PY - "$1" <<'PY'
import json, sys
p = f = s = 0
try:
    for line in open(sys.argv[1]):
        r = json.loads(line).get("result")
        if r in ("OK", "EXPECTEDFAIL"): p += 1
        elif r == "SKIP": s += 1
        else: f += 1
except FileNotFoundError:
    f = 1
print(p, f, s)
PY
}

unit() { # BUILDDIR LABEL
        echo "=== unit tests ($2)"
        rm -f "$1/meson-logs/testlog.json"
        meson test -C "$1" --no-rebuild --print-errorlogs --num-processes 2 || true
        add_counts "$(meson_counts "$1/meson-logs/testlog.json")"
}

ninja -C "$BUILD" >/dev/null || { echo "build failed"; echo "0 passed, 1 failed"; exit 1; }
unit "$BUILD" default

if [ "${CM_SANITIZE:-0}" = 1 ]; then
        [ -f build-asan/build.ninja ] || meson setup build-asan -Db_sanitize=address,undefined -Db_lundef=false \
                -Dbuildtype=debug >/dev/null
        if ninja -C build-asan >/dev/null; then
                ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 \
                        unit build-asan "ASAN+UBSAN"
        else
                echo "ASAN build failed"; failed=$((failed + 1))
        fi
fi

if [ "${CM_LINT:-0}" = 1 ]; then
        echo "=== cppcheck"
        # memleak and unknownMacro: cppcheck understands neither __attribute__((cleanup)) nor
        # jansson's iteration macros, and reports every early return as a leak.
        if cppcheck --error-exitcode=1 --enable=warning,portability --inline-suppr -q --std=c11 -D_GNU_SOURCE \
                -Isrc/lib --suppress=memleak --suppress=unknownMacro src/lib src/apiserver src/cli src/runtime; then
                echo "cppcheck: clean"; passed=$((passed + 1))
        else
                echo "cppcheck: FAILED"; failed=$((failed + 1))
        fi
fi

if [ -n "${CM_FUZZ:-}" ] && [ "${CM_FUZZ}" != 0 ]; then
        echo "=== fuzzing (${CM_FUZZ}s per target)"
        if command -v clang >/dev/null; then
                [ -f build-fuzz/build.ninja ] || CC=clang meson setup build-fuzz -Dfuzz=true -Dtests=false \
                        -Dbuildtype=debug >/dev/null
                if ninja -C build-fuzz >/dev/null; then
                        for t in build-fuzz/tests/fuzz/fuzz-*; do
                                [ -f "$t" ] && [ -x "$t" ] || continue
                                name=$(basename "$t")
                                corpus=tests/fuzz/corpus/${name#fuzz-}
                                work=$(mktemp -d)
                                [ -d "$corpus" ] && cp -r "$corpus"/. "$work"/ 2>/dev/null
                                if "$t" -max_total_time="$CM_FUZZ" -rss_limit_mb=2048 "$work" >"$work.log" 2>&1; then
                                        echo "fuzz $name: ok"; passed=$((passed + 1))
                                else
                                        echo "fuzz $name: FAILED"; tail -40 "$work.log"; failed=$((failed + 1))
                                fi
                                rm -rf "$work" "$work.log"
                        done
                else
                        echo "fuzz build failed"; failed=$((failed + 1))
                fi
        else
                echo "clang not installed: fuzzing skipped"; skipped=$((skipped + 1))
        fi
fi

if [ "${CM_NO_INTEGRATION:-0}" != 1 ]; then
        echo "=== integration tests"
        if [ "$(id -u)" != 0 ]; then
                echo "integration tests need root (they start an apiserver and create test users): skipped"
                skipped=$((skipped + 1))
        else
                junit=$(mktemp)
                CM_BUILD_DIR=$(realpath "$BUILD") $PY -m pytest -v -rs tests/integration --junitxml="$junit" \
                        -p no:cacheprovider
                rc=$?
                counts=$($PY - "$junit" <<'PY'
import sys, xml.etree.ElementTree as ET
try:
    root = ET.parse(sys.argv[1]).getroot()
except Exception:
    print(0, 1, 0); sys.exit()
p = f = s = 0
for tc in root.iter("testcase"):
    kinds = {c.tag for c in tc}
    if "failure" in kinds or "error" in kinds: f += 1
    elif "skipped" in kinds: s += 1
    else: p += 1
print(p, f, s)
PY
)
                add_counts "$counts"
                # pytest exit 5 = nothing collected: that is a failure of the suite, not a pass.
                if [ $rc -ne 0 ] && [ "$(echo "$counts" | cut -d' ' -f2)" = 0 ]; then failed=$((failed + 1)); fi
                rm -f "$junit"
        fi
fi

echo
if [ $skipped -gt 0 ]; then
        echo "$passed passed, $failed failed, $skipped skipped"
else
        echo "$passed passed, $failed failed"
fi
[ $failed -eq 0 ]
