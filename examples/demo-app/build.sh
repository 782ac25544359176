#!/bin/sh
# The demo's "asset build": stamps the version into the page, as a real build would bundle assets.
set -eu
mkdir -p build
sed "s/__VERSION__/${DEMO_VERSION:-dev}/" public/index.html > build/index.html
echo "built build/index.html (version ${DEMO_VERSION:-dev})"
