//! `[server] trusted_proxies` and the client address it implies (SPEC §8): the TCP peer, or,
//! when the peer is a trusted proxy, the rightmost `X-Forwarded-For` entry that is not
//! itself a trusted proxy.
//!
//! Walking from the right matters: a client can put anything it likes at the left of the
//! header, and only entries appended by proxies we trust can be believed. The list is data
//! of the compiled config; the walk is here beside it, like a rule's text matching, so that
//! the audit log and (later) `client_ip` rate limits read the same address.

use std::net::IpAddr;

use ipnet::IpNet;

/// The `trusted_proxies` list, parsed once per config load.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TrustedProxies(Vec<IpNet>);

impl TrustedProxies {
    /// Each entry a CIDR (`10.0.0.0/8`) or a bare address (one host).
    pub fn parse<'a>(entries: impl IntoIterator<Item = &'a str>) -> Result<Self, String> {
        entries
            .into_iter()
            .map(|entry| {
                let entry = entry.trim();
                entry
                    .parse::<IpNet>()
                    .map(|net| net.trunc())
                    .or_else(|_| entry.parse::<IpAddr>().map(IpNet::from))
                    .map_err(|_| {
                        format!("`{entry}` is not an IP address or a CIDR such as 10.0.0.0/8")
                    })
            })
            .collect::<Result<Vec<_>, _>>()
            .map(TrustedProxies)
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        self.0.iter().any(|net| net.contains(&ip))
    }

    /// The client of a request from `peer` carrying these `X-Forwarded-For` header values,
    /// in the order they arrived.
    pub fn client_ip<'a, I>(&self, peer: IpAddr, forwarded_for: I) -> IpAddr
    where
        I: IntoIterator<Item = &'a [u8]>,
        I::IntoIter: DoubleEndedIterator,
    {
        let peer = peer.to_canonical();
        if !self.contains(peer) {
            return peer;
        }
        for value in forwarded_for.into_iter().rev() {
            for entry in value.rsplit(|&byte| byte == b',') {
                let Some(ip) = std::str::from_utf8(entry)
                    .ok()
                    .and_then(|text| text.trim().parse::<IpAddr>().ok())
                else {
                    return peer;
                };
                let ip = ip.to_canonical();
                if !self.contains(ip) {
                    return ip;
                }
            }
        }
        peer
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(text: &str) -> IpAddr {
        text.parse().expect("test address")
    }

    fn trusted(entries: &[&str]) -> TrustedProxies {
        TrustedProxies::parse(entries.iter().copied()).expect("valid list")
    }

    #[test]
    fn an_untrusted_peer_is_the_client_whatever_it_forwards() {
        let proxies = trusted(&["10.0.0.0/8"]);
        let xff: [&[u8]; 1] = [b"203.0.113.9"];
        assert_eq!(
            proxies.client_ip(ip("198.51.100.7"), xff),
            ip("198.51.100.7")
        );
        assert_eq!(
            TrustedProxies::default().client_ip(ip("10.1.1.1"), xff),
            ip("10.1.1.1")
        );
    }

    #[test]
    fn behind_trusted_proxies_the_rightmost_untrusted_entry_is_the_client() {
        let proxies = trusted(&["10.0.0.0/8", "192.0.2.1"]);
        let xff: [&[u8]; 2] = [b"1.1.1.1, 203.0.113.9", b"198.51.100.20 , 10.2.3.4"];
        assert_eq!(proxies.client_ip(ip("10.0.0.5"), xff), ip("198.51.100.20"));
        let spoofed: [&[u8]; 1] = [b"6.6.6.6, 203.0.113.9, 192.0.2.1"];
        assert_eq!(
            proxies.client_ip(ip("10.0.0.5"), spoofed),
            ip("203.0.113.9")
        );
    }

    #[test]
    fn a_garbled_entry_or_an_all_trusted_chain_leaves_the_peer() {
        let proxies = trusted(&["10.0.0.0/8"]);
        let garbled: [&[u8]; 1] = [b"203.0.113.9, unknown"];
        assert_eq!(proxies.client_ip(ip("10.0.0.5"), garbled), ip("10.0.0.5"));
        let all_trusted: [&[u8]; 1] = [b"10.9.9.9, 10.8.8.8"];
        assert_eq!(
            proxies.client_ip(ip("10.0.0.5"), all_trusted),
            ip("10.0.0.5")
        );
        let none: [&[u8]; 0] = [];
        assert_eq!(proxies.client_ip(ip("10.0.0.5"), none), ip("10.0.0.5"));
        let ported: [&[u8]; 1] = [b"203.0.113.9:4711"];
        assert_eq!(proxies.client_ip(ip("10.0.0.5"), ported), ip("10.0.0.5"));
    }

    #[test]
    fn ipv6_and_mapped_ipv4_addresses_are_compared_canonically() {
        let proxies = trusted(&["2001:db8::/32", "127.0.0.1"]);
        let xff: [&[u8]; 1] = [b"2001:db8::1, ::ffff:198.51.100.3"];
        assert_eq!(
            proxies.client_ip(ip("::ffff:127.0.0.1"), xff),
            ip("198.51.100.3")
        );
    }

    #[test]
    fn entries_must_be_addresses_or_cidrs() {
        assert!(TrustedProxies::parse(["10.0.0.0/8", "::1", "192.168.1.7/32"]).is_ok());
        let error = TrustedProxies::parse(["10.0.0.0/33"]).expect_err("prefix too long");
        assert!(error.contains("10.0.0.0/33"), "{error}");
        assert!(TrustedProxies::parse(["proxy.internal"]).is_err());
        assert!(trusted(&["10.1.2.3/8"]).contains(ip("10.200.0.1")));
    }
}
