#!/usr/bin/env bash
# Tests may send traffic only to loopback and to addresses inside a network namespace the test run
# made itself (the e2e cluster's, test/e2e/cluster/netns.go). This check, run by hack/test.sh,
# fails when code outside that file:
#   - writes a non-loopback IPv4 literal, unless the line says why it is never dialled
#     (a "netcheck:" comment, e.g. an address inside a certificate);
#   - assigns addresses or creates interfaces (ip addr/link add, netlink);
#   - looks up the machine's interface addresses (net.Interfaces, InterfaceAddrs), which is how a
#     harness ends up dialling the host's own address;
#   - names the removed host-address switch REPORTS_E2E_NODE_IP.
set -euo pipefail
cd "$(dirname "$0")/.."

allowed=test/e2e/cluster/netns.go
status=0
files=$(git ls-files '*.go' '*.sh' | grep -v -e '/zz_generated' -e '^hack/check-test-network.sh$' -e "^$allowed\$" || true)

report() { # what, grep output
	if [[ -n "$2" ]]; then
		echo "check-test-network: $1 outside $allowed:" >&2
		echo "$2" >&2
		status=1
	fi
}

# IPv4 literals other than 127.0.0.0/8 and 0.0.0.0, in code and strings alike.
literals=$(grep -nP '(?<![\d.])(?!127\.|0\.0\.0\.0)\d{1,3}\.\d{1,3}\.\d{1,3}\.\d{1,3}(?![\d.])' $files |
	grep -v 'netcheck:' || true)
report "non-loopback IPv4 address (add a 'netcheck: <why it is never dialled>' comment if it is not a destination)" "$literals"

assign=$(grep -nE '"addr",[[:space:]]*"add"|"link",[[:space:]]*"add"|ip (addr|address|link) add|netlink\.|vishvananda/netlink' $files || true)
report "address or interface assignment" "$assign"

lookup=$(grep -nE 'net\.Interfaces\(|InterfaceAddrs\(' $files || true)
report "lookup of the machine's interface addresses" "$lookup"

nodeip=$(grep -n 'REPORTS_E2E_NODE_IP' $files deploy/README.md README.md || true)
report "REPORTS_E2E_NODE_IP (removed: the cluster's address is the namespace's)" "$nodeip"

if [[ $status -eq 0 ]]; then
	echo "check-test-network: ok (no test traffic to addresses outside loopback and the e2e namespace)"
fi
exit $status
