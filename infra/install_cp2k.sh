#!/usr/bin/env bash
# Install CP2K and its data (Debian's cp2k + cp2k-data: GTH-PBE pseudopotentials and
# DZVP-MOLOPT-SR basis sets for 71 elements) for `dft.mode: cp2k` and its tests.
#
# Idempotent and never fatal: does nothing when cp2k.psmp and the data files are present,
# installs them with apt-get when running as root on Debian/Ubuntu, and otherwise prints how
# (the CP2K tests then skip with that reason).
set -uo pipefail
DATA=/usr/share/cp2k
if command -v cp2k.psmp >/dev/null && [ -f "$DATA/BASIS_MOLOPT" ] && [ -f "$DATA/GTH_POTENTIALS" ]; then
  exit 0
fi
if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null; then
  echo "[cp2k] installing Debian's cp2k and cp2k-data (offline DFT for dft.mode: cp2k)"
  export DEBIAN_FRONTEND=noninteractive
  if { apt-get install -y -qq cp2k cp2k-data >/dev/null 2>&1 \
      || { apt-get update -qq && apt-get install -y -qq cp2k cp2k-data >/dev/null; }; }; then
    exit 0
  fi
  echo "[cp2k] apt-get could not install cp2k (no package index reachable?)" >&2
fi
echo "[cp2k] CP2K is not installed: dft.mode 'cp2k' and its tests need it." \
  "Install it with: sudo apt-get install cp2k cp2k-data (Debian/Ubuntu)," \
  "or set dft.cp2k.cp2k_cmd and dft.cp2k.data_dir to another build." >&2
exit 0
