#!/bin/sh
# A Hydra launcher that stands in for ssh, for "hosts" made by netns.sh:
#
#   mpiexec -launcher ssh -launcher-exec /path/to/netns-launcher.sh -hosts 10.77.0.10,10.77.0.11 ...
#
# Hydra calls it like ssh: `netns-launcher.sh -x HOST WORD...`, the words forming one shell
# command line (Hydra quotes them for a remote shell). It runs that command line with `sh -c`
# inside the network namespace that owns HOST's address, and in a new UTS namespace whose
# hostname is node<i> for mp-ns<i>, so gethostname()/MPI_Get_processor_name differ per "host".
# HOST may be an address (10.77.0.11), a namespace name (mp-ns1) or node<i> (node1).
# Needs root (ip netns exec, unshare). See README.md in this directory.
set -u

me=netns-launcher.sh
# ssh-style options before HOST: Hydra passes -x; skip the ones ssh knows, with their arguments.
while [ $# -gt 0 ]; do
    case $1 in
    -[bcDEeFIiJLlmOopQRSWw]) shift 2 ;;
    -[bcDEeFIiJLlmOopQRSWw]?*) shift ;;
    --) shift; break ;;
    -*) shift ;;
    *) break ;;
    esac
done
[ $# -ge 1 ] || { echo "$me: usage: $me [ssh options] HOST COMMAND..." >&2; exit 255; }
host=${1#*@}   # user@host: the user is ignored
shift

ns=
case $host in
mp-ns[0-9]*) ns=$host ;;
node[0-9]*) ns=mp-ns${host#node} ;;
*)
    for cand in $(ip netns list 2>/dev/null | awk '{print $1}'); do
        case $cand in mp-ns[0-9]*) ;; *) continue ;; esac
        if ip -n "$cand" -4 -o addr show 2>/dev/null | awk '{print $4}' | grep -qx "$host/[0-9]*"; then
            ns=$cand
            break
        fi
    done
    ;;
esac
if [ -z "$ns" ] || ! ip netns list 2>/dev/null | awk '{print $1}' | grep -qx "$ns"; then
    echo "$me: no mp-ns* network namespace owns host '$host' (did you run netns.sh up N?)" >&2
    exit 255
fi
name=node${ns#mp-ns}

# Like ssh, with no command run a shell. `ip netns exec` and `unshare` (no --fork) both exec, and
# a simple command line (Hydra's is one: hydra_pmi_proxy and its arguments) is run with `exec`,
# so this script's process becomes the command: signals from Hydra reach it directly.
# --ipc: a private System V IPC namespace too, as on a separate host, so that UCX does not
# treat the other "hosts" as reachable by shared memory and really talks TCP between them.
# MP_NETNS_SHARE_IPC=1 keeps the caller's IPC namespace: UCX then moves rank-to-rank data over
# shared memory (all "hosts" have one boot id), which avoids MPICH 4.0.2's MPI_Finalize race
# over TCP but tests no TCP (see README.md).
ipc=--ipc
[ "${MP_NETNS_SHARE_IPC:-0}" = 1 ] && ipc=
[ $# -ge 1 ] || set -- "${SHELL:-/bin/sh}"
exec ip netns exec "$ns" unshare --uts $ipc -- sh -c '
    hostname "$1" || exit 255
    shift
    case "$*" in
    *[\;\&\|\<\>\(\)\`]* | *"\$("* | *"
"*) exec sh -c "$*" ;;
    *) exec sh -c "exec $*" ;;
    esac' sh "$name" "$@"
