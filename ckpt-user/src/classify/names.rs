//! Names for the kernel's socket, TCP-state, BPF-map-type and range numbers used in profiles.

pub const AF_INET: u16 = 2;
pub const AF_INET6: u16 = 10;
pub const AF_PACKET: u16 = 17;
pub const AF_XDP: u16 = 44;
pub const SOCK_STREAM: u16 = 1;
pub const IPPROTO_TCP: u16 = 6;

const FAMILIES: &[(&str, u16)] = &[
    ("unix", 1),
    ("inet", 2),
    ("ax25", 3),
    ("ipx", 4),
    ("appletalk", 5),
    ("x25", 9),
    ("inet6", 10),
    ("key", 15),
    ("netlink", 16),
    ("packet", AF_PACKET),
    ("rds", 21),
    ("llc", 26),
    ("ib", 27),
    ("mpls", 28),
    ("can", 29),
    ("tipc", 30),
    ("bluetooth", 31),
    ("rxrpc", 33),
    ("isdn", 34),
    ("phonet", 35),
    ("ieee802154", 36),
    ("caif", 37),
    ("alg", 38),
    ("nfc", 39),
    ("vsock", 40),
    ("kcm", 41),
    ("qipcrtr", 42),
    ("smc", 43),
    ("xdp", AF_XDP),
    ("mctp", 45),
];

const SOCK_TYPES: &[(&str, u16)] = &[
    ("stream", 1),
    ("dgram", 2),
    ("raw", 3),
    ("rdm", 4),
    ("seqpacket", 5),
    ("dccp", 6),
    ("packet", 10),
];

const TCP_STATES: &[(&str, u16)] = &[
    ("established", 1),
    ("syn_sent", 2),
    ("syn_recv", 3),
    ("fin_wait1", 4),
    ("fin_wait2", 5),
    ("time_wait", 6),
    ("close", 7),
    ("close_wait", 8),
    ("last_ack", 9),
    ("listen", 10),
    ("closing", 11),
    ("new_syn_recv", 12),
];

/// `enum bpf_map_type` (uapi, append-only), without the `BPF_MAP_TYPE_` prefix.
const BPF_MAP_TYPES: &[(&str, u16)] = &[
    ("hash", 1),
    ("array", 2),
    ("prog_array", 3),
    ("perf_event_array", 4),
    ("percpu_hash", 5),
    ("percpu_array", 6),
    ("stack_trace", 7),
    ("cgroup_array", 8),
    ("lru_hash", 9),
    ("lru_percpu_hash", 10),
    ("lpm_trie", 11),
    ("array_of_maps", 12),
    ("hash_of_maps", 13),
    ("devmap", 14),
    ("sockmap", 15),
    ("cpumap", 16),
    ("xskmap", 17),
    ("sockhash", 18),
    ("cgroup_storage", 19),
    ("reuseport_sockarray", 20),
    ("percpu_cgroup_storage", 21),
    ("queue", 22),
    ("stack", 23),
    ("sk_storage", 24),
    ("devmap_hash", 25),
    ("struct_ops", 26),
    ("ringbuf", 27),
    ("inode_storage", 28),
    ("task_storage", 29),
    ("bloom_filter", 30),
    ("user_ringbuf", 31),
    ("cgrp_storage", 32),
    ("arena", 33),
];

fn lookup(table: &[(&str, u16)], name: &str) -> Option<u16> {
    table
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, v)| *v)
        .or_else(|| name.parse().ok())
}

/// A family by name (`inet6`) or number (`"40"`).
pub fn family(name: &str) -> Option<u16> {
    lookup(FAMILIES, name)
}

pub fn sock_type(name: &str) -> Option<u16> {
    lookup(SOCK_TYPES, name)
}

pub fn tcp_state(name: &str) -> Option<u16> {
    lookup(TCP_STATES, name)
}

pub fn bpf_map_type(name: &str) -> Option<u16> {
    lookup(BPF_MAP_TYPES, name)
}

/// Whether `name` (as [`lookup`] reads it) is `value`: the daemon asks this of every install,
/// so the table is searched by number, the cheap compare, and at most one name is compared.
/// Right because every table names each number once (tested).
fn is_named(table: &[(&str, u16)], name: &str, value: u16) -> bool {
    match table.iter().find(|(_, v)| *v == value) {
        Some((n, _)) if *n == name => true,
        _ => name.parse() == Ok(value),
    }
}

/// Whether a profile's family `name` is `value`: `family(name) == Some(value)`.
pub fn is_family(name: &str, value: u16) -> bool {
    is_named(FAMILIES, name, value)
}

pub fn is_sock_type(name: &str, value: u16) -> bool {
    is_named(SOCK_TYPES, name, value)
}

pub fn is_tcp_state(name: &str, value: u16) -> bool {
    is_named(TCP_STATES, name, value)
}

pub fn is_bpf_map_type(name: &str, value: u32) -> bool {
    u16::try_from(value).is_ok_and(|v| is_named(BPF_MAP_TYPES, name, v))
}

fn name_of(table: &[(&str, u16)], value: u16, prefix: &str) -> String {
    table.iter().find(|(_, v)| *v == value).map_or_else(
        || format!("{prefix}{value}"),
        |(n, _)| format!("{prefix}{}", n.to_uppercase()),
    )
}

/// `AF_INET6`, or `AF_77` for a family we have no name for.
pub fn family_name(value: u16) -> String {
    name_of(FAMILIES, value, "AF_")
}

pub fn sock_type_name(value: u16) -> String {
    name_of(SOCK_TYPES, value, "SOCK_")
}

pub fn tcp_state_name(value: u16) -> String {
    TCP_STATES
        .iter()
        .find(|(_, v)| *v == value)
        .map_or_else(|| format!("state {value}"), |(n, _)| n.to_uppercase())
}

/// `ringbuf`, or `type 40` for a map type newer than this table.
pub fn bpf_map_type_name(value: u32) -> String {
    BPF_MAP_TYPES
        .iter()
        .find(|(_, v)| u32::from(*v) == value)
        .map_or_else(|| format!("type {value}"), |(n, _)| n.to_string())
}

/// `"136-143"` → (136, 143).
pub fn parse_range(s: &str) -> Option<(u64, u64)> {
    let (lo, hi) = s.split_once('-')?;
    let (lo, hi) = (lo.trim().parse().ok()?, hi.trim().parse().ok()?);
    (lo <= hi).then_some((lo, hi))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_numbers() {
        assert_eq!(family("vsock"), Some(40));
        assert_eq!(family("40"), Some(40));
        assert_eq!(family("nope"), None);
        assert_eq!(sock_type("seqpacket"), Some(5));
        assert_eq!(tcp_state("listen"), Some(10));
        assert_eq!(family_name(10), "AF_INET6");
        assert_eq!(family_name(99), "AF_99");
        assert_eq!(sock_type_name(2), "SOCK_DGRAM");
        assert_eq!(tcp_state_name(1), "ESTABLISHED");
        assert_eq!(bpf_map_type("ringbuf"), Some(27));
        assert_eq!(bpf_map_type_name(2), "array");
        assert_eq!(bpf_map_type_name(400), "type 400");
    }

    #[test]
    fn a_name_is_its_number_either_way() {
        for table in [FAMILIES, SOCK_TYPES, TCP_STATES, BPF_MAP_TYPES] {
            let numbers: std::collections::BTreeSet<u16> = table.iter().map(|(_, v)| *v).collect();
            assert_eq!(numbers.len(), table.len(), "a number named twice");
            let some_names = table.iter().map(|(n, _)| n.to_string());
            for name in some_names.chain(["40", "2", "077", "nope", "", "65536"].map(String::from))
            {
                for value in 0..=64 {
                    assert_eq!(
                        is_named(table, &name, value),
                        lookup(table, &name) == Some(value),
                        "{name} as {value}"
                    );
                }
            }
        }
        assert!(is_bpf_map_type("ringbuf", 27));
        assert!(!is_bpf_map_type("27", 27 + 65_536));
    }

    #[test]
    fn ranges() {
        assert_eq!(parse_range("136-143"), Some((136, 143)));
        assert_eq!(parse_range("5-4"), None);
        assert_eq!(parse_range("x-4"), None);
    }
}
