#!/usr/bin/env bash
# Every route of sio-push's backend API as a curl command.
#
#   PUSH_SERVICE_KEY=... ./curl.sh                 # every route, in this order
#   PUSH_SERVICE_KEY=... ./curl.sh channel emit    # only those
#
# PUSH_SERVICE_URL (default http://localhost:4000) is the server; CHANNEL, THREAD, COMMUNITY and
# PUSH_USER name the ids used. Each call prints the answer's body, then "HTTP <status>".
# `disconnect` comes last: it disconnects PUSH_USER's sockets and refuses their current tokens.
set -euo pipefail

URL="${PUSH_SERVICE_URL:-http://localhost:4000}"
KEY="${PUSH_SERVICE_KEY:?set PUSH_SERVICE_KEY to the service key of the server}"
CHANNEL="${CHANNEL:-general}"
THREAD="${THREAD:-t1}"
COMMUNITY="${COMMUNITY:-c1}"
USER_ID="${PUSH_USER:-u1}"

# The key goes as a header (POST routes also take it as the body field "token", as Linen's backend sends it).
post() { curl -sS -X POST "$URL$1" -H "Authorization: Bearer $KEY" -H 'Content-Type: application/json' \
  --data "$2" -w '\nHTTP %{http_code}\n'; }
get() { curl -sS "$URL$1" -H "Authorization: Bearer $KEY" -w '\nHTTP %{http_code}\n'; }

health() { curl -sS "$URL/api/health" -w '\nHTTP %{http_code}\n'; }

# SPEC section 2: pushes. Every field but the key reaches the browsers untouched, as new_msg.
message() {
  post /api/message "$(printf '{"channel_id": "%s", "thread_id": "%s", "message_id": "m1", "is_thread": false,
    "is_reply": true, "message": "{\\"id\\": \\"m1\\", \\"body\\": \\"hi\\"}"}' "$CHANNEL" "$THREAD")"
}
channel() { post /api/channel "$(printf '{"channel_id": "%s", "message_id": "m2"}' "$CHANNEL")"; }
community() { post /api/community "$(printf '{"community_id": "%s", "kind": "announcement"}' "$COMMUNITY")"; }
user() { post /api/user "$(printf '{"user_id": "%s", "is_mention": true, "mention_type": "user"}' "$USER_ID")"; }
emit() {
  post /api/emit "$(printf '{"rooms": ["room:%s"], "event": "reaction", "data": {"emoji": "+1"}}' "$COMMUNITY")"
}

# SPEC section 8: several pushes at once (all or none), presence, occupied rooms.
batch() {
  post /api/batch "$(printf '{"pushes": [
    {"rooms": ["room:lobby:%s"], "event": "edited", "data": {"message_id": "m1"}},
    {"rooms": ["room:topic:%s"], "event": "edited", "data": {"message_id": "m1"}}]}' "$CHANNEL" "$THREAD")"
}
presence() { get "/api/presence/room:$COMMUNITY?limit=10"; }
rooms() { get "/api/rooms?prefix=room:lobby:&limit=10"; }

# SPEC section 7: revocation.
unsubscribe() { post /api/unsubscribe "$(printf '{"user_id": "%s", "room": "room:lobby:%s"}' "$USER_ID" "$CHANNEL")"; }
disconnect() { post /api/disconnect "$(printf '{"user_id": "%s"}' "$USER_ID")"; }

ALL=(health message channel community user emit batch presence rooms unsubscribe disconnect)
for route in "${@:-${ALL[@]}}"; do
  case " ${ALL[*]} " in
    *" $route "*) echo "== $route"; "$route" ;;
    *) echo "unknown route: $route (one of: ${ALL[*]})" >&2; exit 2 ;;
  esac
done
