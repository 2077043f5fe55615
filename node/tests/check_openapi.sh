#!/usr/bin/env bash
# Validate the API's generated OpenAPI document and its /metrics output with external tools.
#   needs: python3 -m pip install openapi-spec-validator ; apt-get install prometheus (for promtool)
# The documents are written by the api tests when LEDGER_OPENAPI_OUT / LEDGER_METRICS_OUT are set.
set -euo pipefail
out="${1:-$(mktemp -d)}"
cd "$(dirname "$0")/../.."
LEDGER_OPENAPI_OUT="$out/openapi.json" LEDGER_METRICS_OUT="$out/metrics.txt" \
    cargo test -p node --test api -- --exact openapi_lists_every_route metrics_are_prometheus_text
python3 -m openapi_spec_validator "$out/openapi.json"
if command -v promtool >/dev/null; then
    promtool check metrics < "$out/metrics.txt"
else
    echo "promtool not found (apt-get install prometheus); skipped the metrics check" >&2
fi
