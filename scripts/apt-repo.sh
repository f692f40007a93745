#!/usr/bin/env bash
# Makes the signed apt repository of the agent package, ready to serve as static files:
#
#   scripts/apt-repo.sh --out DIR --url URL --key KEY [--key KEY...] DEB...
#
# DIR gets pool/main/ (the packages), dists/stable/main/binary-<arch>/Packages(.gz),
# dists/stable/Release with InRelease and Release.gpg signed by every KEY (a secret key in
# gpg's keyring, $GNUPGHOME), and netcell-webpanel-agent.sources, the deb822 source for URL
# (where DIR is served) with the public keys embedded in Signed-By. To rotate the key, sign
# with the old and the new key while servers move to a .sources file holding the new one.
# Run it again with more packages to publish a new version: pool/ keeps the older ones.
set -euo pipefail

out="" url="" keys=() debs=()
while [ "$#" -gt 0 ]; do
    case "$1" in
        --out) out="$2"; shift 2 ;;
        --url) url="$2"; shift 2 ;;
        --key) keys+=("$2"); shift 2 ;;
        -h|--help) sed -n '2,12p' "$0"; exit 0 ;;
        -*) echo "apt-repo.sh: unknown option $1" >&2; exit 2 ;;
        *) debs+=("$1"); shift ;;
    esac
done
if [ -z "$out" ] || [ -z "$url" ] || [ "${#keys[@]}" -eq 0 ]; then
    echo "usage: apt-repo.sh --out DIR --url URL --key KEY [--key KEY...] DEB..." >&2
    exit 2
fi
for tool in apt-ftparchive gpg dpkg-deb; do
    command -v "$tool" >/dev/null || { echo "apt-repo.sh: $tool is missing (apt-get install apt-utils gnupg)" >&2; exit 1; }
done

mkdir -p "$out/pool/main"
for deb in "${debs[@]}"; do
    cp -f "$deb" "$out/pool/main/"
done
cd "$out"

archs=$(for deb in pool/main/*.deb; do dpkg-deb -f "$deb" Architecture; done | sort -u | tr '\n' ' ')
rm -rf dists/stable
for arch in $archs; do
    dir="dists/stable/main/binary-$arch"
    mkdir -p "$dir"
    apt-ftparchive --arch "$arch" packages pool/main >"$dir/Packages"
    gzip -9nkf "$dir/Packages"
done
apt-ftparchive \
    -o APT::FTPArchive::Release::Origin=enconf \
    -o APT::FTPArchive::Release::Label=enconf \
    -o APT::FTPArchive::Release::Suite=stable \
    -o APT::FTPArchive::Release::Codename=stable \
    -o APT::FTPArchive::Release::Components=main \
    -o "APT::FTPArchive::Release::Architectures=${archs% }" \
    release dists/stable >dists/stable/Release.new
mv -f dists/stable/Release.new dists/stable/Release

signers=()
for key in "${keys[@]}"; do
    signers+=(--local-user "$key")
done
gpg --batch --yes --digest-algo SHA512 "${signers[@]}" --clearsign \
    --output dists/stable/InRelease dists/stable/Release
gpg --batch --yes --digest-algo SHA512 "${signers[@]}" --armor --detach-sign \
    --output dists/stable/Release.gpg dists/stable/Release

# The source for servers: the public keys inline (deb822: each line indented, empty ones ".").
{
    echo "Types: deb"
    echo "URIs: $url"
    echo "Suites: stable"
    echo "Components: main"
    echo "Signed-By:"
    gpg --batch --armor --export "${keys[@]}" | sed -e 's/^$/./' -e 's/^/ /'
} >netcell-webpanel-agent.sources
