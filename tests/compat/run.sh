#!/bin/sh
# make compat: real IMAP clients (curl, mbsync, fetchmail, getmail) against the local stack.
set -e
cd "$(dirname "$0")/../.."
exec .venv/bin/python tests/compat/compat.py "$@"
