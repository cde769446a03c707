#!/usr/bin/env bash
# Installs what the test suite needs beyond the Rust toolchain: the `openssl` command, used as an
# independent CMS/TLS implementation by the oftp-security interoperability tests, `curl`,
# which the mailbackup-cli login tests use as a stand-in browser (BROWSER=script), `python3`,
# whose `mailbox` module reads the mbox and Maildir output of the export tests, and PostgreSQL
# (the Debian `postgresql` package), whose initdb and pg_ctl the mailbackup tests use to start
# throw-away clusters (crates/pg-test-cluster), and Chromium (the Debian `chromium` package),
# which the web console's browser tests (crates/oftp-cli/tests/browser.rs) run headless, and the
# object-store servers of the mailbackup tests: moto (S3, PyPI) and Azurite (Azure Blob, npm).
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
# chromium: the console's browser tests start it headless and drive it over the DevTools
# protocol; under CI=true a missing chromium fails them instead of skipping.
need chromium chromium

# moto (PyPI `moto[server]`): the S3-compatible server of the mailbackup object-store tests. They
# start it as `python3 -m moto.server` on a free loopback port themselves (so the PATH of pip's
# script folder does not matter) and fail, saying to run this script, when it is missing.
if ! python3 -c 'import moto.server' >/dev/null 2>&1; then
  python3 -m pip --version >/dev/null 2>&1 || need pip3 python3-pip
  # A pyenv or venv Python takes the install as it is; Debian's system Python refuses pip
  # installs outside a venv (PEP 668), so fall back to the user's site folder.
  python3 -m pip install --quiet 'moto[server]>=5,<6' 2>/dev/null ||
    python3 -m pip install --quiet --user 'moto[server]>=5,<6' 2>/dev/null ||
    python3 -m pip install --quiet --user --break-system-packages 'moto[server]>=5,<6'
  if ! python3 -c 'import moto.server' >/dev/null 2>&1; then
    echo "install-test-deps: moto[server] did not install for $(command -v python3); install it (python3 -m pip install 'moto[server]')" >&2
    exit 1
  fi
fi
# Azurite (npm `azurite`): the Azure Blob server of the mailbackup object-store tests. They start
# its blob service (`azurite-blob`) on a free loopback port themselves, in memory, finding it on
# PATH or in ~/.local/bin, and fail, saying to run this script, when it is missing. It installs
# with the machine's npm into the prefix AZURITE_PREFIX (default ~/.local: bin/azurite-blob,
# lib/node_modules/azurite), no root needed; with another prefix put PREFIX/bin on the tests'
# PATH. 3.35 is the newest release that runs on Node.js 20
# (3.36 needs Node.js 21, 3.37 Node.js 22).
AZURITE_PREFIX="${AZURITE_PREFIX:-$HOME/.local}"
if ! command -v azurite-blob >/dev/null 2>&1 && [ ! -x "$AZURITE_PREFIX/bin/azurite-blob" ]; then
  need npm npm
  npm install --global --prefix "$AZURITE_PREFIX" --no-fund --no-audit --loglevel=error 'azurite@~3.35.0'
  if ! "$AZURITE_PREFIX/bin/azurite-blob" --version >/dev/null 2>&1; then
    echo "install-test-deps: Azurite did not install into $AZURITE_PREFIX; install it (npm install --global --prefix ~/.local azurite@3.35)" >&2
    exit 1
  fi
fi
# PostgreSQL: only the binaries are used, from PATH or /usr/lib/postgresql/*/bin (where Debian
# puts them); no system service is needed. Under root the test clusters run as the `postgres`
# user the package creates (initdb refuses root), through runuser (util-linux).
if ! command -v initdb >/dev/null 2>&1 && ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ]; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql
  else
    echo "install-test-deps: PostgreSQL is missing (no initdb); install it (apt-get install postgresql)" >&2
    exit 1
  fi
fi
if [ "$(id -u)" = 0 ] && ! id postgres >/dev/null 2>&1; then
  echo "install-test-deps: running as root, the PostgreSQL test clusters need the postgres user; reinstall the postgresql package" >&2
  exit 1
fi
