#!/bin/sh
# Several "hosts" on one machine for proc-mpi tests: network namespaces on a private bridge.
#
#   netns.sh up N    create mp-br (the namespace holding the bridge mpbr0) and mp-ns0..mp-ns{N-1},
#                    each with an eth0 (a veth onto mpbr0) at 10.77.0.(10+i)/24, loopback up
#   netns.sh down    remove everything `up` made (also after a partial or failed `up`)
#   netns.sh list    show the namespaces and their addresses
#
# The root namespace is not touched: the bridge and the host side of every veth live in the
# namespace mp-br, so deleting the namespaces removes every link. No file outside the
# namespaces' /run/netns entries is created; /etc/hosts is not edited.
# Both subcommands are idempotent. Exit code 77 (the automake "skip" code) when namespaces
# cannot be created here (not root, no CAP_NET_ADMIN, no `ip`), so tests can skip.
set -u

PREFIX=mp-ns      # host namespaces: mp-ns0, mp-ns1, ...
BRNS=mp-br        # namespace holding the bridge
BR=mpbr0          # the bridge
NET=10.77.0       # private /24; host i is $NET.$((10 + i))
BASE=10
MAX=200           # at most 200 hosts (10.77.0.10 .. 10.77.0.209)

die() { echo "netns.sh: $*" >&2; exit 1; }
skip() { echo "netns.sh: SKIP: $*" >&2; exit 77; }

check() {
    command -v ip >/dev/null 2>&1 || skip "no 'ip' command (iproute2) on PATH"
    [ "$(id -u)" = 0 ] || skip "must run as root (needs CAP_NET_ADMIN and CAP_SYS_ADMIN)"
    probe=mp-probe-$$
    if ! ip netns add "$probe" 2>/dev/null; then
        skip "cannot create network namespaces here (no CAP_NET_ADMIN/CAP_SYS_ADMIN?)"
    fi
    if ! ip -n "$probe" link add mp-probe type bridge 2>/dev/null; then
        ip netns del "$probe" 2>/dev/null
        skip "cannot create a bridge in a network namespace (no CAP_NET_ADMIN, or no bridge support?)"
    fi
    if ! ip -n "$probe" link add mp-pa type veth peer name mp-pb 2>/dev/null; then
        ip netns del "$probe" 2>/dev/null
        skip "cannot create veth pairs (no CAP_NET_ADMIN, or no veth support?)"
    fi
    ip netns del "$probe"
}

has_ns() { ip netns list 2>/dev/null | awk '{print $1}' | grep -qx "$1"; }

up() {
    n=${1:-}
    case $n in '' | *[!0-9]*) die "usage: netns.sh up N (N >= 1)" ;; esac
    [ "$n" -ge 1 ] && [ "$n" -le $MAX ] || die "N must be in 1..$MAX"
    check
    # the bridge namespace and the bridge
    has_ns $BRNS || ip netns add $BRNS || die "cannot create namespace $BRNS"
    ip -n $BRNS link set lo up
    ip -n $BRNS link show $BR >/dev/null 2>&1 || ip -n $BRNS link add $BR type bridge ||
        die "cannot create bridge $BR"
    ip -n $BRNS link set $BR up || die "cannot bring $BR up"
    i=0
    while [ $i -lt "$n" ]; do
        ns=$PREFIX$i
        veth=v$i   # host side, in $BRNS
        addr=$NET.$((BASE + i))
        has_ns "$ns" || ip netns add "$ns" || die "cannot create namespace $ns"
        ip -n "$ns" link set lo up || die "cannot bring lo up in $ns"
        if ! ip -n "$ns" link show eth0 >/dev/null 2>&1; then
            ip -n $BRNS link del "$veth" 2>/dev/null   # a stale half from a partial up
            ip -n $BRNS link add "$veth" type veth peer name eth0 netns "$ns" ||
                die "cannot create veth $veth <-> $ns/eth0"
        fi
        ip -n $BRNS link set "$veth" master $BR || die "cannot attach $veth to $BR"
        ip -n $BRNS link set "$veth" up || die "cannot bring $veth up"
        ip -n "$ns" addr replace "$addr/24" dev eth0 || die "cannot set $addr on $ns/eth0"
        ip -n "$ns" link set eth0 up || die "cannot bring eth0 up in $ns"
        i=$((i + 1))
    done
    # Namespaces beyond N from an earlier, larger `up` are left alone; `down` removes them.
    echo "netns.sh: $n host namespaces up: ${PREFIX}0..$PREFIX$((n - 1)) at $NET.$BASE..$NET.$((BASE + n - 1)) (bridge $BR in namespace $BRNS)"
}

down() {
    command -v ip >/dev/null 2>&1 || skip "no 'ip' command (iproute2) on PATH"
    [ "$(id -u)" = 0 ] || skip "must run as root"
    rc=0
    for ns in $(ip netns list 2>/dev/null | awk '{print $1}'); do
        case $ns in
        $PREFIX[0-9]* | $BRNS | mp-probe-*)
            # processes still inside keep the namespace alive; kill only what runs in ours
            for pid in $(ip netns pids "$ns" 2>/dev/null); do kill "$pid" 2>/dev/null; done
            ip netns del "$ns" || rc=1
            ;;
        esac
    done
    # nothing is made in the root namespace, but clean up after older versions of this script
    ip link show $BR >/dev/null 2>&1 && { ip link del $BR || rc=1; }
    [ $rc = 0 ] && echo "netns.sh: down" || echo "netns.sh: down, with errors" >&2
    return $rc
}

list() {
    for ns in $(ip netns list 2>/dev/null | awk '{print $1}'); do
        case $ns in
        $PREFIX[0-9]*) echo "$ns $(ip -n "$ns" -4 -o addr show dev eth0 2>/dev/null | awk '{print $4}')" ;;
        $BRNS) echo "$ns (bridge $BR)" ;;
        esac
    done
}

case ${1:-} in
up) shift; up "$@" ;;
down) down ;;
list) list ;;
*) echo "usage: netns.sh up N | down | list" >&2; exit 2 ;;
esac
