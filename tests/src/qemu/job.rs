//! Pieces of guest job scripts shared by the guest tests: shell functions
//! that wait (bounded) for the agent or for a condition, the client, director
//! and real namespaces of the XDP guest tests, and the parser for
//! output split into `==NAME` sections.

use std::collections::BTreeMap;

/// `wait_agent LOG PID`: waits (at most 60 s) until the agent started in the
/// background as PID logged that it forwards; fails, printing its log to
/// stderr, if it exits or never gets there.
pub const WAIT_AGENT: &str = r#"wait_agent() {
    i=0
    while [ $i -lt 300 ]; do
        grep -q "xlb forwarding" "$1" && return 0
        kill -0 $2 2>/dev/null || { echo "agent exited" >&2; cat "$1" >&2; return 1; }
        sleep 0.2; i=$((i+1))
    done
    echo "agent did not start" >&2; cat "$1" >&2; return 1
}
"#;

/// `until_ok LABEL CMD…`: runs CMD every 0.2 s until it succeeds, at most
/// 150 times; on timeout says so on stderr and fails. Callers print the state
/// they waited for afterwards either way, so the host's assertion shows it.
pub const UNTIL_OK: &str = r#"until_ok() {
    label=$1; shift
    i=0
    while [ $i -lt 150 ]; do
        "$@" && return 0
        sleep 0.2; i=$((i+1))
    done
    echo "timed out waiting for $label" >&2; return 1
}
"#;

/// The guest's three namespaces for XDP through a director: client `c`
/// (`c0`, at `client` in 10.81.0.0/24, routed through the director),
/// director `d` (`d1` 10.81.0.1, `d0` 10.80.0.1, forwarding) and real `r`
/// (`r0`, not yet addressed or up), with bpffs mounted and `in_c`, `in_d`,
/// `in_r` to run a command in each. nsenter keeps the mount namespace (ip
/// netns exec would remount /sys and hide bpffs).
pub fn client_director_real(client: &str) -> String {
    format!(
        r#"mount -t bpf bpf /sys/fs/bpf
in_c() {{ nsenter --net=/run/netns/c "$@"; }}
in_d() {{ nsenter --net=/run/netns/d "$@"; }}
in_r() {{ nsenter --net=/run/netns/r "$@"; }}
ip netns add c; ip netns add d; ip netns add r
ip link add c0 netns c type veth peer name d1 netns d
ip link add d0 netns d type veth peer name r0 netns r
for n in c d r; do in_$n ip link set lo up; done
in_c ip addr add {client}/24 dev c0
in_c ip link set c0 up
in_c ip route add default via 10.81.0.1
in_d ip addr add 10.81.0.1/24 dev d1
in_d ip addr add 10.80.0.1/24 dev d0
in_d ip link set d1 up
in_d ip link set d0 up
in_d sh -c 'echo 1 > /proc/sys/net/ipv4/ip_forward'
"#
    )
}

/// The guest's stdout split at lines `==NAME`: each section's text by name.
/// Text before the first marker is dropped.
pub fn sections(stdout: &str) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut name: Option<String> = None;
    for line in stdout.split_inclusive('\n') {
        if let Some(n) = line.strip_prefix("==") {
            let n = n.trim_end().to_string();
            out.insert(n.clone(), String::new());
            name = Some(n);
        } else if let Some(n) = &name {
            out.get_mut(n).expect("section exists").push_str(line);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sections_keep_their_lines_and_drop_the_preamble() {
        let s = sections("noise\n==a\none\n  two\n==b\n==c\nlast");
        assert_eq!(
            s,
            BTreeMap::from([
                ("a".to_string(), "one\n  two\n".to_string()),
                ("b".to_string(), String::new()),
                ("c".to_string(), "last".to_string()),
            ])
        );
    }
}
