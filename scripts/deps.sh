#!/bin/sh
# Installs what plugnet needs to build, test and run its main job on Debian 12
# (Fashion-MNIST comes as the package dataset-fashion-mnist), when missing.
set -e
PKGS="build-essential autoconf automake libtool pkg-config libyaml-dev libhwloc-dev hwloc
libopenblas-dev zlib1g-dev libdeflate-dev libjansson-dev libjpeg62-turbo-dev libpng-dev libcmocka-dev
dataset-fashion-mnist"
missing=""
for p in $PKGS; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
[ -z "$missing" ] && exit 0
if [ "$(id -u)" -ne 0 ]; then
  SUDO=sudo
  command -v sudo >/dev/null || { echo "plugnet: run as root to install:$missing" >&2; exit 1; }
fi
echo "installing:$missing"
${SUDO:-} apt-get update -qq
DEBIAN_FRONTEND=noninteractive ${SUDO:-} apt-get install -y -qq --no-install-recommends $missing >/dev/null
