#!/usr/bin/env bash
# Run a coverage-guided campaign per target, one after another (cores are shared), and print one line of
# figures per target: executions, time, libFuzzer's final cov/ft, crashes (artifacts written).
# Usage (from fuzz/): ./run-campaigns.sh SECONDS [TARGET...]   (all targets when none is named)
# SKIP_BUILD=1 runs the binaries already built (when the decoders have not changed since).
# New corpus entries go to fuzz/target/corpus-<target> (not committed); the committed corpus is read only.
set -u
secs=${1:?seconds per target}
shift
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
  targets=(wire_gossip wire_sync_request wire_sync_response tx block vote cert genesis_json config_toml keystore api_submit api_batch)
fi
mkdir -p target/logs
# Build once, then run the binaries: `cargo fuzz run` would rebuild whenever anyone touches the workspace.
if [ -z "${SKIP_BUILD:-}" ]; then
  cargo +nightly fuzz build -s none --debug-assertions || exit 1
fi
bin=target/x86_64-unknown-linux-gnu/release
for t in "${targets[@]}"; do
  work="target/corpus-$t"
  mkdir -p "$work" "artifacts/$t"
  log="target/logs/$t-$(date +%Y%m%dT%H%M%S).log"
  start=$(date +%s)
  "$bin/$t" "$work" "corpus/$t" -artifact_prefix="artifacts/$t/" -max_total_time="$secs" -malloc_limit_mb=64 -rss_limit_mb=1024 -timeout=10 \
    -print_final_stats=1 >"$log" 2>&1
  rc=$?
  end=$(date +%s)
  execs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' | tail -1)
  last=$(grep -E '#[0-9]+\s+(DONE|pulse|NEW|REDUCE)' "$log" | tail -1)
  cov=$(echo "$last" | grep -o 'cov: [0-9]*' | grep -o '[0-9]*')
  ft=$(echo "$last" | grep -o 'ft: [0-9]*' | grep -o '[0-9]*')
  crashes=$(ls "artifacts/$t" | wc -l)
  echo "$t execs=${execs:-?} secs=$((end - start)) cov=${cov:-?} ft=${ft:-?} corpus=$(ls "$work" | wc -l) artifacts=$crashes rc=$rc log=$log"
done
