#!/usr/bin/env bash
# Installs what the test suite needs beyond the Rust toolchain: the `openssl` command, used as an
# independent CMS/TLS implementation by the oftp-security interoperability tests, and `curl`,
# which the mailbackup-cli login tests use as a stand-in browser (BROWSER=script).
set -euo pipefail
if ! command -v openssl >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ]; then
    apt-get update -qq && apt-get install -y -qq openssl
  else
    echo "install-test-deps: the openssl command is missing; install it (apt-get install openssl)" >&2
    exit 1
  fi
fi
if ! command -v curl >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ]; then
    apt-get update -qq && apt-get install -y -qq curl
  else
    echo "install-test-deps: the curl command is missing; install it (apt-get install curl)" >&2
    exit 1
  fi
fi
