#!/usr/bin/env bash
# fetch-nanopb-source.sh DEST [VERSION]
#
# Fetches Debian's nanopb source package into DEST with `apt-get source`,
# so that the fuzz tree can compile nanopb with sanitizer and coverage
# instrumentation (Debian's libprotobuf-nanopb.a has none, which leaves
# libFuzzer blind inside pb_decode).  Nothing is committed to git and
# nothing outside DEST is written: the deb-src line, the package lists and
# the download all live under DEST, so this needs no root.
#
# VERSION pins the source to the installed libnanopb-dev, so that the .c
# files match the headers in /usr/include.  On success the last line of
# stdout is the directory holding pb_decode.c; on failure the exit status
# is non-zero and stderr says why.  Called by fuzz/CMakeLists.txt at
# configure time.
set -euo pipefail

dest=${1:?usage: fetch-nanopb-source.sh DEST [VERSION]}
version=${2:-}

for tool in apt-get dpkg-source; do
  if ! command -v "$tool" >/dev/null 2>&1; then
    echo "fetch-nanopb-source: $tool not found (dpkg-source is in dpkg-dev)" >&2
    exit 1
  fi
done

# The suite: this machine's Debian codename, bookworm if it is not Debian.
codename=bookworm
if [ -r /etc/os-release ]; then
  # shellcheck disable=SC1091
  . /etc/os-release
  if [ "${ID:-}" = debian ] && [ -n "${VERSION_CODENAME:-}" ]; then
    codename=$VERSION_CODENAME
  fi
fi

# Reuse the mirror this machine's apt already uses for the main suite: the
# URIs of a deb822 stanza or a one-line entry that lists "$codename".
mirror=
for f in /etc/apt/sources.list.d/*.sources; do
  [ -r "$f" ] || continue
  mirror=$(awk -v suite="$codename" '
    function flush() { if (hit && uri != "" && out == "") out = uri; uri = ""; hit = 0 }
    /^[ \t]*$/ { flush(); next }
    /^[ \t]*#/ { next }
    tolower($1) == "uris:" { uri = $2 }
    tolower($1) == "suites:" { for (i = 2; i <= NF; i++) if ($i == suite) hit = 1 }
    END { flush(); print out }' "$f")
  [ -n "$mirror" ] && break
done
if [ -z "$mirror" ]; then
  for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
    [ -r "$f" ] || continue
    mirror=$(awk -v suite="$codename" '
      $1 == "deb" { i = 2; if ($i ~ /^\[/) { while ($i !~ /\]$/) i++; i++ }
                    if ($(i + 1) == suite) { print $i; exit } }' "$f")
    [ -n "$mirror" ] && break
  done
fi
mirror=${mirror:-http://deb.debian.org/debian}
mirror=${mirror%/}

mkdir -p "$dest/apt-lists/partial"
dest=$(cd "$dest" && pwd)
keyring=/usr/share/keyrings/debian-archive-keyring.gpg
opts=""
if [ -r "$keyring" ]; then
  opts="[signed-by=$keyring] "
fi
echo "deb-src ${opts}${mirror} ${codename} main" >"$dest/sources.list"
apt_opts=(
  -o "Dir::Etc::sourcelist=$dest/sources.list"
  -o "Dir::Etc::sourceparts=-"
  -o "Dir::State::lists=$dest/apt-lists"
  -o "Dir::Cache=$dest/apt-cache"
  -q
)
mkdir -p "$dest/apt-cache/archives/partial"

echo "fetch-nanopb-source: deb-src ${mirror} ${codename} main -> $dest" >&2
apt-get "${apt_opts[@]}" update >&2

cd "$dest"
pkg=nanopb
if [ -n "$version" ]; then
  pkg="nanopb=$version"
fi
if ! apt-get "${apt_opts[@]}" source "$pkg" >&2; then
  if [ -n "$version" ]; then
    echo "fetch-nanopb-source: nanopb $version not available, trying the newest" >&2
    apt-get "${apt_opts[@]}" source nanopb >&2
  else
    exit 1
  fi
fi

src=$(find "$dest" -mindepth 2 -maxdepth 2 -name pb_decode.c -path '*/nanopb-*' | sort | tail -n 1)
if [ -z "$src" ]; then
  echo "fetch-nanopb-source: no pb_decode.c after apt-get source" >&2
  exit 1
fi
dirname "$src"
