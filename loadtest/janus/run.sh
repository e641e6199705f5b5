#!/usr/bin/env bash
# Starts Janus (Debian's `janus` package, 1.1.x) for the load test on loopback, with the
# minimal configuration beside this script. It execs Janus, so the process id the caller holds
# is Janus's own (its /proc figures are Janus's alone).
#
#   JANUS_WS_PORT     WebSocket API port (default 8188)
#   JANUS_RTP_RANGE   RTP/RTCP port range (default 40000-40999)
#   JANUS_CPUS        CPU list to pin Janus to with taskset (default: not pinned)
#   JANUS_EVENT_LOOPS event-loop threads (default 1)
#   JANUS_DEBUG_LEVEL Janus log level 0-7 (default 3: errors and warnings)
#   JANUS_ICE_IP      the address Janus offers as its candidate (default: this host's first
#                     IPv4 address; libnice skips loopback)
#   JANUS_BIN         the janus binary (default: janus in PATH)
#   JANUS_CONF_DIR    where the filled-in configuration goes (default: a new temporary
#                     directory; the caller removes it, as the exec leaves no shell to do so)
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
BIN=${JANUS_BIN:-$(command -v janus || true)}
if [ -z "$BIN" ]; then
  echo "janus is not installed (Debian: apt-get install janus)" >&2
  exit 127
fi
LIB_DIR=""
for d in /usr/lib/x86_64-linux-gnu/janus /usr/lib/aarch64-linux-gnu/janus /usr/lib/janus /usr/local/lib/janus /opt/janus/lib/janus; do
  if [ -d "$d/plugins" ]; then LIB_DIR=$d; break; fi
done
if [ -z "$LIB_DIR" ]; then
  echo "cannot find Janus's plugins folder" >&2
  exit 1
fi
# This host's first IPv4 address: Janus's only ICE candidate (see janus.jcfg).
ICE_IP=${JANUS_ICE_IP:-$(hostname -I 2>/dev/null | tr ' ' '\n' | grep -m1 -E '^[0-9]+\.' || true)}
if [ -z "$ICE_IP" ]; then
  echo "no IPv4 address on this host for Janus's ICE candidate (set JANUS_ICE_IP)" >&2
  exit 1
fi
CONF_DIR=${JANUS_CONF_DIR:-$(mktemp -d "${TMPDIR:-/tmp}/parley-janus.XXXXXX")}
mkdir -p "$CONF_DIR"
for f in janus.jcfg janus.transport.websockets.jcfg janus.plugin.videoroom.jcfg; do
  sed -e "s|@CONF_DIR@|$CONF_DIR|g" -e "s|@LIB_DIR@|$LIB_DIR|g" \
      -e "s|@WS_PORT@|${JANUS_WS_PORT:-8188}|g" -e "s|@RTP_RANGE@|${JANUS_RTP_RANGE:-40000-40999}|g" \
      -e "s|@EVENT_LOOPS@|${JANUS_EVENT_LOOPS:-1}|g" -e "s|@DEBUG_LEVEL@|${JANUS_DEBUG_LEVEL:-3}|g" -e "s|@ICE_IP@|$ICE_IP|g" \
      "$HERE/$f" > "$CONF_DIR/$f"
done
CMD=("$BIN" --config="$CONF_DIR/janus.jcfg" --configs-folder="$CONF_DIR" --disable-colors)
if [ -n "${JANUS_CPUS:-}" ]; then
  exec taskset -c "$JANUS_CPUS" "${CMD[@]}"
fi
exec "${CMD[@]}"
