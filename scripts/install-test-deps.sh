#!/usr/bin/env bash
# Installs what the test suite needs beyond the Rust toolchain: the `openssl` command, used as an
# independent CMS/TLS implementation by the oftp-security interoperability tests, and `curl`,
# which the mailbackup-cli login tests use as a stand-in browser (BROWSER=script), and `python3`,
# whose `mailbox` module reads the mbox and Maildir output of the export tests.
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
# python3 (its standard `mailbox` module) reads what `mailbackup export` writes in the
# mailbackup-cli export tests: an independent mbox and Maildir reader.
if ! command -v python3 >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ]; then
    apt-get update -qq && apt-get install -y -qq python3
  else
    echo "install-test-deps: the python3 command is missing; install it (apt-get install python3)" >&2
    exit 1
  fi
fi
