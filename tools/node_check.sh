#!/bin/sh
# make webmail's first step: is there a Node.js new enough for the webmail's build, and npm?
# In:   $1, the webmail's package.json: its "engines" "node" entry (">=20") is the minimum major
#       version, written there once; `node` and `npm` on PATH.
# Out:  nothing, status 0, when both are there and node's major version is at least that.
# Fails: status 1 with one line on stderr saying what is missing and what to install.
# Shell builtins only (besides node itself): it must speak when almost nothing is installed.
pkg=${1:-webmail/package.json}
min=
while IFS= read -r line || [ -n "$line" ]; do
    case $line in
        *'"node"'*:*)
            v=${line#*'"node"'}
            v=${v#*:}
            while [ -n "$v" ]; do  # skip to the first digit: ">=20", "^20.10", "20.x"
                case $v in [0-9]*) break ;; esac
                v=${v#?}
            done
            min=${v%%[!0-9]*}
            break ;;
    esac
done < "$pkg"
if [ -z "$min" ]; then
    echo "make: $pkg names no Node.js version in \"engines\" (\"node\": \">=20\"); cannot check the one installed" >&2
    exit 1
fi
install="install Node.js $min or later with npm (https://nodejs.org/en/download, or your distribution's nodejs and npm packages if they are $min+), then run make again"
if ! command -v node >/dev/null 2>&1; then
    echo "make: the webmail (webmail/) is built with Node.js >= $min and npm, and there is no \`node\` on PATH: $install" >&2
    exit 1
fi
version=$(node --version 2>/dev/null)
major=${version#v}
major=${major%%[!0-9]*}
if [ -z "$major" ] || [ "$major" -lt "$min" ]; then
    echo "make: the webmail (webmail/) needs Node.js >= $min ($pkg \"engines\"), and \`node\` here is ${version:-unreadable}: $install" >&2
    exit 1
fi
if ! command -v npm >/dev/null 2>&1; then
    echo "make: the webmail (webmail/) is built with npm (npm ci, npm run build), and there is no \`npm\` on PATH beside node $version: $install" >&2
    exit 1
fi
