#!/usr/bin/env bash
# scaling-out.sh: one NATS server (embedded in the first runner, --durable)
# and three `flows run` processes sharing a three-step Sequence of HTTP
# steps. It posts EVENTS events (10,000 by default) spread over the three
# ingresses, kills the third runner with SIGKILL mid-stream and starts it
# again, then prints how the work was split and checks that every event
# answered 202 reached the reply. Everything listens on 127.0.0.1; every
# wait is bounded.
#
#   examples/scaling-out.sh            # from the repository's root
#   EVENTS=2000 BASE_PORT=19400 examples/scaling-out.sh
set -euo pipefail

EVENTS=${EVENTS:-10000}
BASE=${BASE_PORT:-18400}     # steps BASE, NATS BASE+1, runners BASE+11..13
NATS_PORT=$((BASE + 1))
cd "$(dirname "$0")/.."
work=$(mktemp -d)
pids=()
cleanup() {
	for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
	wait 2>/dev/null || true
	rm -rf "$work"
}
trap cleanup EXIT

echo "building flows and the steps server in $work"
go build -o "$work/flows" ./cmd/flows
mkdir -p "$work/steps"
cat >"$work/steps/main.go" <<'GO'
// The three steps answer with the event they got (binary mode); the reply
// counts the events that reach it, and /stats tells how many.
package main

import (
	"fmt"
	"io"
	"net/http"
	"os"
	"sync"
)

func main() {
	var mu sync.Mutex
	seen := map[string]int{}
	total := 0
	echo := func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		for k, v := range r.Header {
			if len(k) > 3 && (k[:3] == "Ce-" || k == "Content-Type") {
				w.Header()[k] = v
			}
		}
		w.Header().Set("Content-Type", r.Header.Get("Content-Type"))
		w.WriteHeader(http.StatusOK)
		w.Write(body)
	}
	for _, p := range []string{"/first", "/second", "/third"} {
		http.HandleFunc(p, echo)
	}
	http.HandleFunc("/reply", func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		mu.Lock()
		seen[r.Header.Get("Ce-Id")]++
		total++
		mu.Unlock()
		w.WriteHeader(http.StatusAccepted)
	})
	http.HandleFunc("/stats", func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		fmt.Fprintf(w, "%d %d\n", len(seen), total)
	})
	http.HandleFunc("/ids", func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		for id := range seen {
			fmt.Fprintln(w, id)
		}
	})
	if err := http.ListenAndServe(os.Args[1], nil); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}
GO
printf 'module steps\n\ngo 1.22\n' >"$work/steps/go.mod"
(cd "$work/steps" && GOWORK=off go build -o "$work/steps-server" .)
steps="http://127.0.0.1:$BASE"
"$work/steps-server" "127.0.0.1:$BASE" & pids+=($!)

cat >"$work/sequence.yaml" <<YAML
apiVersion: flows.knative.dev/v1
kind: Sequence
metadata: {name: scaling}
spec:
  steps:
    - uri: $steps/first
    - uri: $steps/second
    - uri: $steps/third
  reply:
    uri: $steps/reply
YAML

# wait_for FILE TEXT: up to 30s for TEXT to show in FILE.
wait_for() {
	for _ in $(seq 300); do grep -q "$2" "$1" 2>/dev/null && return 0; sleep 0.1; done
	echo "timed out waiting for '$2' in $1" >&2; cat "$1" >&2; exit 1
}

runner_pid=()
start_runner() { # start_runner N [args]
	local n=$1; shift
	"$work/flows" run -f "$work/sequence.yaml" --listen "127.0.0.1:$((BASE + 10 + n))" \
		--ack-wait 2s --concurrency 4 --log-level info "$@" \
		>"$work/runner$n.out" 2>>"$work/runner$n.log" &
	runner_pid[$n]=$!; pids+=($!)
	wait_for "$work/runner$n.out" "^scaling "
}
start_runner 1 --durable "$work/nats" --nats-port "$NATS_PORT"
echo "runner 1: $(grep -o 'url=nats://[^ ]*' "$work/runner1.log") (embedded server, storage $work/nats)"
start_runner 2 --nats "nats://127.0.0.1:$NATS_PORT"
start_runner 3 --nats "nats://127.0.0.1:$NATS_PORT"
echo "runners 2 and 3 on it; ingresses on 127.0.0.1:$((BASE + 11))..$((BASE + 13))"

# The events, one structured CloudEvent per line, a third per runner.
for n in 1 2 3; do
	awk -v n="$n" -v events="$EVENTS" 'BEGIN { for (i = n - 1; i < events; i += 3)
		printf "{\"specversion\":\"1.0\",\"id\":\"e-%05d\",\"source\":\"/scaling-out\",\"type\":\"demo\",\"datacontenttype\":\"application/json\",\"data\":{\"n\":%d}}\n", i, i }' \
		>"$work/events$n.jsonl"
done
echo "posting $EVENTS events"
senders=()
for n in 1 2 3; do
	"$work/flows" send --to "http://127.0.0.1:$((BASE + 10 + n))/default/scaling-kn-sequence-0" --from "$work/events$n.jsonl" \
		--retry 0 --timeout 10s >"$work/send$n.out" 2>"$work/send$n.err" &
	senders+=($!)
done
sleep 1
echo "killing runner 3 (SIGKILL) mid-stream, and starting it again"
kill -9 "${runner_pid[3]}"
wait "${runner_pid[3]}" 2>/dev/null || true
start_runner 3 --nats "nats://127.0.0.1:$NATS_PORT"
for p in "${senders[@]}"; do wait "$p" || true; done
grep -h ': 202 Accepted' "$work"/send*.out | sed 's/.* id "\([^"]*\)".*/\1/' | LC_ALL=C sort -u >"$work/accepted"
accepted=$(wc -l <"$work/accepted")
echo "$accepted events accepted (202); the rest were refused while runner 3 was down"

for _ in $(seq 600); do  # up to 60s
	read -r unique total < <(curl -s "$steps/stats")
	curl -s "$steps/ids" | LC_ALL=C sort >"$work/replied"
	[ "$(LC_ALL=C comm -23 "$work/accepted" "$work/replied" | wc -l)" -eq 0 ] && break
	sleep 0.1
done
curl -s "$steps/ids" | LC_ALL=C sort >"$work/replied"
missing=$(LC_ALL=C comm -23 "$work/accepted" "$work/replied" | wc -l)
read -r unique total < <(curl -s "$steps/stats")
echo "replies: $total for $unique events ($((total - unique)) duplicates)"
echo "split of the replies (deliveries to $steps/reply logged by each runner):"
for n in 1 2 3; do
	echo "  runner $n: $(grep -c "msg=delivery to=$steps/reply " "$work/runner$n.log" || true)"
done
if [ "$missing" -ne 0 ]; then
	echo "LOST: $missing accepted events never reached the reply" >&2
	exit 1
fi
echo "nothing lost: every accepted event reached the reply"
