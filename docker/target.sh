#!/bin/sh
# A sample target task (busybox image): serves HTTP on $PORT, registers itself with berth
# through the TCP control API with the bearer token, and on SIGTERM deregisters with
# "Wait":true, so `docker compose stop` returns only once berth has drained it.
set -u
BERTH_URL=${BERTH_URL:-http://berth:9901}
TARGET_GROUP=${TARGET_GROUP:-web}
PORT=${PORT:-8000}
TOKEN_FILE=${TOKEN_FILE:-/run/secrets/berth_token}

ip=$(hostname -i | cut -d' ' -f1)
token=$(cat "$TOKEN_FILE") || exit 1

www=/tmp/www
mkdir -p "$www"
printf 'hello from %s (%s:%s)\n' "$(hostname)" "$ip" "$PORT" > "$www/index.html"
httpd -f -p "$PORT" -h "$www" &
httpd_pid=$!

# berth VERB JSON: POST /v1/target-groups/$TARGET_GROUP/VERB with the token
berth() {
    wget -q -O - -T 900 \
        --header "Authorization: Bearer $token" \
        --header "Content-Type: application/json" \
        --post-data "$2" "$BERTH_URL/v1/target-groups/$TARGET_GROUP/$1"
}
targets() { printf '{"Targets":[{"Id":"%s","Port":%s}]%s}' "$ip" "$PORT" "$1"; }

stop() {
    trap - TERM INT
    echo "deregistering $ip:$PORT from $TARGET_GROUP (waiting for the drain)"
    berth deregister "$(targets ',"Wait":true')" || echo "deregister failed" >&2
    kill -TERM "$httpd_pid" 2>/dev/null
    wait "$httpd_pid" 2>/dev/null
    exit 0
}
trap stop TERM INT

until berth register "$(targets '')"; do
    echo "berth not ready, retrying" >&2
    sleep 1
done
echo "registered $ip:$PORT in $TARGET_GROUP"
wait "$httpd_pid"
