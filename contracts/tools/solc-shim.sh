#!/bin/sh
# Stands in for a native solc on top of solc-js (ezkl's create_evm_verifier asks svm for solc
# 0.8.20 and would download it). Answers --version; every other call is a --standard-json run.
DIR="$(dirname "$(readlink -f "$0")")"
for arg in "$@"; do
  if [ "$arg" = "--version" ]; then
    echo "solc, the solidity compiler commandline interface"
    exec node "$DIR/solc-stdjson.mjs" --version
  fi
done
exec node "$DIR/solc-stdjson.mjs"
