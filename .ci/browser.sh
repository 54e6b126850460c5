#!/usr/bin/env bash
# Sourced by .ci/test: session-axum's browser test drives Debian's headless
# Chromium over WebDriver and fails under CI without it, so install it here.
if ! command -v chromium >/dev/null 2>&1 || ! command -v chromedriver >/dev/null 2>&1; then
  echo "browser: installing chromium and chromium-driver from Debian's packages"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null
fi
