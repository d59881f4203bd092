#!/usr/bin/env bash
# Installs what is missing, builds, and runs berth on conf/berth.yaml.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh build
exec build/berth -c conf/berth.yaml "$@"
