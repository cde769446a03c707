#!/usr/bin/env bash
# Installs what the test suite needs beyond the Rust toolchain: the `openssl` command, used as an
# independent CMS/TLS implementation by the oftp-security interoperability tests, `curl`,
# which the mailbackup-cli login tests use as a stand-in browser (BROWSER=script), and `python3`,
# whose `mailbox` module reads the mbox and Maildir output of the export tests.
set -euo pipefail

# need COMMAND PACKAGE: installs PACKAGE with apt-get when COMMAND is missing (as root), else
# says what to install.
need() {
  if ! command -v "$1" >/dev/null 2>&1; then
    if [ "$(id -u)" = 0 ]; then
      apt-get update -qq && apt-get install -y -qq "$2"
    else
      echo "install-test-deps: the $1 command is missing; install it (apt-get install $2)" >&2
      exit 1
    fi
  fi
}
need openssl openssl
need curl curl
# python3 (its standard `mailbox` module) reads what `mailbackup export` writes in the
# mailbackup-cli export tests: an independent mbox and Maildir reader.
need python3 python3

# moto_server: the S3-compatible server of the mailbackup object-store tests (they start it on
# a free loopback port themselves and fail, saying to run this script, when it is missing).
if ! command -v moto_server >/dev/null 2>&1; then
  need pip3 python3-pip
  # Debian's system Python refuses pip installs outside a venv (PEP 668); --user keeps them
  # out of the system packages.
  pip3 install --quiet --user 'moto[server]>=5,<6' 2>/dev/null ||
    pip3 install --quiet --user --break-system-packages 'moto[server]>=5,<6'
  if ! command -v moto_server >/dev/null 2>&1; then
    echo "install-test-deps: moto_server was installed into $(python3 -m site --user-base)/bin; add that folder to PATH" >&2
    exit 1
  fi
fi
