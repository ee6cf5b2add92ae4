#!/bin/sh
# Postern's rspamd configuration from the environment: writes into CONFDIR (the argument) the files
# that depend on where rspamd runs. Used by the sidecar image (rspamd/Dockerfile) and by the local
# stack (postern_local.rspamd), so the two cannot drift.
#   RSPAMD_NORMAL      worker address (default 127.0.0.1:11333: the task's loopback only)
#   RSPAMD_CONTROLLER  controller address, learning (default 127.0.0.1:11334; secure_ip: loopback)
#   RSPAMD_REDIS       host:port of Redis/Valkey: Bayes learning and greylisting on (empty: both off)
#   RSPAMD_REDIS_TLS   "true" for ElastiCache Serverless (TLS only)
#   RSPAMD_CLAMD       host:port of clamd: the antivirus module on, a virus is refused (empty: off)
#   RSPAMD_DNS         nameserver(s), comma-separated (empty: the system's)
set -eu
CONFDIR=${1:?usage: configure.sh CONFDIR}
mkdir -p "$CONFDIR/local.d" "$CONFDIR/override.d"
NORMAL=${RSPAMD_NORMAL:-127.0.0.1:11333}
CONTROLLER=${RSPAMD_CONTROLLER:-127.0.0.1:11334}

cat > "$CONFDIR/override.d/worker-normal.inc" <<EOT
bind_socket = "$NORMAL";
EOT
cat > "$CONFDIR/override.d/worker-controller.inc" <<EOT
bind_socket = "$CONTROLLER";
secure_ip = ["127.0.0.1", "::1"];
EOT
cat > "$CONFDIR/override.d/worker-proxy.inc" <<EOT
count = 0;
EOT
cat > "$CONFDIR/override.d/logging.inc" <<EOT
type = "console";
level = "warning";
EOT

# The defaults Postern's thresholds mirror (postern.verdicts: Junk at 6, reject at 15). The reject
# in the SMTP session is Postern's decision, per recipient (postern.spam), not this score alone.
# Greylisting only with Redis: without its state rspamd would answer "greylist" for ever.
cat > "$CONFDIR/local.d/actions.conf" <<EOT
reject = 15;
add_header = 6;
EOT
if [ -n "${RSPAMD_REDIS:-}" ]; then
  echo "greylist = 4;" >> "$CONFDIR/local.d/actions.conf"
else
  echo "greylist = null;" >> "$CONFDIR/local.d/actions.conf"
fi

if [ -n "${RSPAMD_REDIS:-}" ]; then
  tls=""
  if [ "${RSPAMD_REDIS_TLS:-false}" = "true" ]; then tls='ssl = true;'; fi
  cat > "$CONFDIR/local.d/redis.conf" <<EOT
servers = "$RSPAMD_REDIS";
$tls
EOT
  cat > "$CONFDIR/local.d/classifier-bayes.conf" <<EOT
backend = "redis";
autolearn = true;
EOT
else
  rm -f "$CONFDIR/local.d/redis.conf" "$CONFDIR/local.d/classifier-bayes.conf"
fi

if [ -n "${RSPAMD_CLAMD:-}" ]; then
  cat > "$CONFDIR/local.d/antivirus.conf" <<EOT
clamav {
  type = "clamav";
  servers = "$RSPAMD_CLAMD";
  action = "reject";
  scan_mime_parts = true;
  # A hung clamd costs at most 2 x 2 s per scan, well inside POSTERN_RSPAMD_TIMEOUT (10 s): the
  # message is then judged without it (CLAM_VIRUS_FAIL, no score), not accepted unchecked.
  timeout = 2.0;
  retransmits = 1;
  symbol = "CLAM_VIRUS";
  log_clean = false;
}
EOT
else
  rm -f "$CONFDIR/local.d/antivirus.conf"
fi

if [ -n "${RSPAMD_DNS:-}" ]; then
  servers=$(printf '%s' "$RSPAMD_DNS" | sed 's/[^,][^,]*/"&"/g')
  cat > "$CONFDIR/override.d/options.inc" <<EOT
dns { nameserver = [$servers]; timeout = 1s; retransmits = 1; }
EOT
else
  rm -f "$CONFDIR/override.d/options.inc"
fi
