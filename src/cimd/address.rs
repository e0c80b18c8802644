//! Which addresses a client metadata document is never fetched from (draft-03 "Server Side
//! Request Forgery (SSRF) Attacks": the URL MUST NOT resolve to special-use addresses, RFC 6890
//! and the IANA special-purpose registries). Everything that is not plainly global unicast is
//! refused; an operator may allow loopback and private networks ([`AddressClass::private`]) for
//! development and tests, never link-local (cloud metadata services live at 169.254.169.254),
//! multicast, broadcast, unspecified, documentation or reserved addresses.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AddressClass {
    Public,
    /// 127.0.0.0/8, ::1.
    Loopback,
    /// RFC 1918 (10/8, 172.16/12, 192.168/16), IPv6 unique local fc00::/7 (RFC 4193), the
    /// deprecated site-local fec0::/10 and local-use NAT64 64:ff9b:1::/48 (RFC 8215).
    Private,
    /// 100.64.0.0/10, carrier-grade NAT (RFC 6598).
    Shared,
    /// 169.254.0.0/16, fe80::/10.
    LinkLocal,
    /// 0.0.0.0, ::.
    Unspecified,
    /// 255.255.255.255.
    Broadcast,
    /// 224.0.0.0/4, ff00::/8.
    Multicast,
    /// 192.0.2/24, 198.51.100/24, 203.0.113/24 (RFC 5737), 2001:db8::/32 (RFC 3849), 3fff::/20
    /// (RFC 9637).
    Documentation,
    /// The rest of the special-purpose registries: 0/8, 192.0.0/24, 192.88.99/24, 198.18/15,
    /// 240/4; IPv6 outside 2000::/3, 2001::/23, 100::/64, IPv4-compatible addresses.
    Reserved,
}

impl AddressClass {
    /// Whether a fetch may go to an address of this class; `allow_private` is the operator's
    /// `cimd.allow_private_addresses`.
    pub fn allowed(self, allow_private: bool) -> bool {
        match self {
            Self::Public => true,
            Self::Loopback | Self::Private | Self::Shared => allow_private,
            _ => false,
        }
    }
}

impl fmt::Display for AddressClass {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Public => "public",
            Self::Loopback => "loopback",
            Self::Private => "private-network",
            Self::Shared => "shared (carrier-grade NAT)",
            Self::LinkLocal => "link-local",
            Self::Unspecified => "unspecified",
            Self::Broadcast => "broadcast",
            Self::Multicast => "multicast",
            Self::Documentation => "documentation",
            Self::Reserved => "reserved",
        })
    }
}

pub fn classify(ip: IpAddr) -> AddressClass {
    match ip {
        IpAddr::V4(v4) => classify_v4(v4),
        IpAddr::V6(v6) => classify_v6(v6),
    }
}

fn in_v4(ip: u32, net: [u8; 4], len: u32) -> bool {
    let mask = u32::MAX.checked_shl(32 - len).unwrap_or(0);
    ip & mask == u32::from_be_bytes(net) & mask
}

pub fn classify_v4(ip: Ipv4Addr) -> AddressClass {
    use AddressClass as C;
    let n = u32::from(ip);
    let table: [([u8; 4], u32, AddressClass); 17] = [
        ([0, 0, 0, 0], 32, C::Unspecified),
        ([255, 255, 255, 255], 32, C::Broadcast),
        ([0, 0, 0, 0], 8, C::Reserved),
        ([10, 0, 0, 0], 8, C::Private),
        ([100, 64, 0, 0], 10, C::Shared),
        ([127, 0, 0, 0], 8, C::Loopback),
        ([169, 254, 0, 0], 16, C::LinkLocal),
        ([172, 16, 0, 0], 12, C::Private),
        ([192, 0, 0, 0], 24, C::Reserved),
        ([192, 0, 2, 0], 24, C::Documentation),
        ([192, 88, 99, 0], 24, C::Reserved),
        ([192, 168, 0, 0], 16, C::Private),
        ([198, 18, 0, 0], 15, C::Reserved),
        ([198, 51, 100, 0], 24, C::Documentation),
        ([203, 0, 113, 0], 24, C::Documentation),
        ([224, 0, 0, 0], 4, C::Multicast),
        ([240, 0, 0, 0], 4, C::Reserved),
    ];
    table
        .iter()
        .find(|(net, len, _)| in_v4(n, *net, *len))
        .map_or(C::Public, |(_, _, class)| *class)
}

fn in_v6(ip: u128, net: u128, len: u32) -> bool {
    let mask = u128::MAX.checked_shl(128 - len).unwrap_or(0);
    ip & mask == net & mask
}

/// The IPv4 address in the last 32 bits.
fn low_v4(n: u128) -> Ipv4Addr {
    Ipv4Addr::from((n & 0xffff_ffff) as u32)
}

pub fn classify_v6(ip: Ipv6Addr) -> AddressClass {
    use AddressClass as C;
    let n = u128::from(ip);
    if n == 0 {
        return C::Unspecified;
    }
    if n == 1 {
        return C::Loopback;
    }
    // ::ffff:a.b.c.d (IPv4-mapped, RFC 4291 §2.5.5.2): a socket connects to the IPv4 address.
    if in_v6(n, 0xffff_0000_0000, 96) {
        return classify_v4(low_v4(n));
    }
    // ::a.b.c.d (IPv4-compatible, deprecated by RFC 4291 §2.5.5.1): never routed; a special
    // embedded address keeps its own class so the refusal says which.
    if in_v6(n, 0, 96) {
        return match classify_v4(low_v4(n)) {
            C::Public => C::Reserved,
            other => other,
        };
    }
    // 64:ff9b::/96, well-known NAT64 prefix (RFC 6052): DNS64 makes these for IPv4-only hosts,
    // and the translator connects to the embedded address.
    if in_v6(n, 0x0064_ff9b << 96, 96) {
        return classify_v4(low_v4(n));
    }
    // 2002::/16, 6to4 (RFC 3056): the IPv4 address is in bits 16 to 47.
    if in_v6(n, 0x2002 << 112, 16) {
        return classify_v4(low_v4(n >> 80));
    }
    let table: [(u128, u32, AddressClass); 10] = [
        (0x0064_ff9b_0001 << 80, 48, C::Private),
        (0x0100 << 112, 64, C::Reserved),
        (0x2001_0db8 << 96, 32, C::Documentation),
        (0x2001 << 112, 23, C::Reserved),
        (0x3fff << 112, 20, C::Documentation),
        (0xfc00 << 112, 7, C::Private),
        (0xfe80 << 112, 10, C::LinkLocal),
        (0xfec0 << 112, 10, C::Private),
        (0xff00 << 112, 8, C::Multicast),
        (0x2000 << 112, 3, C::Public),
    ];
    table
        .iter()
        .find(|(net, len, _)| in_v6(n, *net, *len))
        .map_or(C::Reserved, |(_, _, class)| *class)
}

#[cfg(test)]
mod tests {
    use super::AddressClass as C;
    use super::*;

    fn class(s: &str) -> AddressClass {
        classify(s.parse().unwrap())
    }

    /// Draft-03 "Server Side Request Forgery (SSRF) Attacks" and RFC 6890: every special-purpose
    /// range, its edges, and the public addresses just outside them.
    #[test]
    fn every_special_use_range_is_classified_rfc_6890() {
        let table = [
            ("8.8.8.8", C::Public),
            ("1.1.1.1", C::Public),
            ("0.0.0.0", C::Unspecified),
            ("0.1.2.3", C::Reserved),
            ("9.255.255.255", C::Public),
            ("10.0.0.0", C::Private),
            ("10.255.255.255", C::Private),
            ("11.0.0.0", C::Public),
            ("100.63.255.255", C::Public),
            ("100.64.0.0", C::Shared),
            ("100.127.255.255", C::Shared),
            ("100.128.0.0", C::Public),
            ("127.0.0.1", C::Loopback),
            ("127.255.255.254", C::Loopback),
            ("169.254.169.254", C::LinkLocal),
            ("169.255.0.1", C::Public),
            ("172.15.255.255", C::Public),
            ("172.16.0.1", C::Private),
            ("172.31.255.255", C::Private),
            ("172.32.0.0", C::Public),
            ("192.0.0.8", C::Reserved),
            ("192.0.2.1", C::Documentation),
            ("192.88.99.1", C::Reserved),
            ("192.167.255.255", C::Public),
            ("192.168.1.1", C::Private),
            ("192.169.0.0", C::Public),
            ("198.17.255.255", C::Public),
            ("198.18.0.1", C::Reserved),
            ("198.19.255.255", C::Reserved),
            ("198.20.0.0", C::Public),
            ("198.51.100.7", C::Documentation),
            ("203.0.113.9", C::Documentation),
            ("223.255.255.255", C::Public),
            ("224.0.0.1", C::Multicast),
            ("239.255.255.250", C::Multicast),
            ("240.0.0.1", C::Reserved),
            ("255.255.255.254", C::Reserved),
            ("255.255.255.255", C::Broadcast),
            // IPv6.
            ("2606:4700:4700::1111", C::Public),
            ("::", C::Unspecified),
            ("::1", C::Loopback),
            ("fc00::1", C::Private),
            ("fd00:ec2::254", C::Private),
            ("fe80::1", C::LinkLocal),
            ("febf::1", C::LinkLocal),
            ("fec0::1", C::Private),
            ("ff02::1", C::Multicast),
            ("2001:db8::1", C::Documentation),
            ("3fff::1", C::Documentation),
            ("2001::1", C::Reserved),
            ("2001:2::1", C::Reserved),
            ("2001:200::1", C::Public),
            ("100::1", C::Reserved),
            ("64:ff9b:1::1", C::Private),
            ("5f00::1", C::Reserved),
            ("4000::1", C::Reserved),
            ("1::1", C::Reserved),
        ];
        for (ip, want) in table {
            assert_eq!(class(ip), want, "{ip}");
        }
    }

    /// RFC 4291 §2.5.5: an IPv4 address inside an IPv6 one keeps its class, so `::ffff:127.0.0.1`
    /// is loopback; likewise NAT64 (RFC 6052) and 6to4 (RFC 3056) embeddings.
    #[test]
    fn ipv4_mapped_compatible_nat64_and_6to4_forms_take_the_embedded_class() {
        let table = [
            ("::ffff:127.0.0.1", C::Loopback),
            ("::ffff:10.1.2.3", C::Private),
            ("::ffff:169.254.169.254", C::LinkLocal),
            ("::ffff:100.64.0.1", C::Shared),
            ("::ffff:0.0.0.0", C::Unspecified),
            ("::ffff:8.8.8.8", C::Public),
            ("::127.0.0.1", C::Loopback),
            ("::192.168.0.1", C::Private),
            ("::8.8.8.8", C::Reserved),
            ("64:ff9b::127.0.0.1", C::Loopback),
            ("64:ff9b::a9fe:a9fe", C::LinkLocal),
            ("64:ff9b::8.8.8.8", C::Public),
            ("2002:7f00:1::", C::Loopback),
            ("2002:c0a8:101::1", C::Private),
            ("2002:0808:0808::1", C::Public),
        ];
        for (ip, want) in table {
            assert_eq!(class(ip), want, "{ip}");
        }
    }

    #[test]
    fn the_operator_setting_opens_loopback_and_private_networks_only() {
        for c in [C::Loopback, C::Private, C::Shared] {
            assert!(!c.allowed(false) && c.allowed(true), "{c}");
        }
        for c in [
            C::LinkLocal,
            C::Unspecified,
            C::Broadcast,
            C::Multicast,
            C::Documentation,
            C::Reserved,
        ] {
            assert!(!c.allowed(false) && !c.allowed(true), "{c}");
        }
        assert!(C::Public.allowed(false));
    }
}
