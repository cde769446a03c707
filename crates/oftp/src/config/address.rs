//! Allowed and blocked client addresses: one address or a CIDR range per rule, and the policy
//! the listener checks before it reads a byte. Pure data and matching; no I/O.

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// An allowed/blocked client rule: one address or a CIDR range (`10.0.0.0/8`, `::1`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AddressRule {
    net: IpAddr,
    prefix: u8,
}

/// A rule that is neither an IP address nor `address/prefix`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid client address rule {0:?}: use an IP address or a CIDR range like 10.0.0.0/8")]
pub struct AddressRuleError(pub String);

impl AddressRule {
    /// Whether `ip` falls under this rule (IPv4-mapped IPv6 addresses match IPv4 rules).
    pub fn matches(&self, ip: IpAddr) -> bool {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
            v4 => v4,
        };
        match (self.net, ip) {
            (IpAddr::V4(n), IpAddr::V4(a)) => {
                prefix_eq(&n.octets(), &a.octets(), u32::from(self.prefix))
            }
            (IpAddr::V6(n), IpAddr::V6(a)) => {
                prefix_eq(&n.octets(), &a.octets(), u32::from(self.prefix))
            }
            _ => false,
        }
    }
}

fn prefix_eq(a: &[u8], b: &[u8], bits: u32) -> bool {
    let full = (bits / 8) as usize;
    if a[..full] != b[..full] {
        return false;
    }
    let rem = bits % 8;
    if rem == 0 {
        return true;
    }
    let mask = 0xFFu8 << (8 - rem);
    (a[full] & mask) == (b[full] & mask)
}

impl FromStr for AddressRule {
    type Err = AddressRuleError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = || AddressRuleError(s.to_owned());
        let (addr, prefix) = match s.trim().split_once('/') {
            Some((a, p)) => (a, Some(p.parse::<u8>().map_err(|_| err())?)),
            None => (s.trim(), None),
        };
        let net: IpAddr = addr.parse().map_err(|_| err())?;
        let max = if net.is_ipv4() { 32 } else { 128 };
        let prefix = prefix.unwrap_or(max);
        if prefix > max {
            return Err(err());
        }
        Ok(Self { net, prefix })
    }
}

impl fmt::Display for AddressRule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.net, self.prefix)
    }
}

impl Serialize for AddressRule {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for AddressRule {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// Allowed and blocked client addresses (seed `AllowedClients` / `BlockedClients`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AddressPolicy {
    /// When not empty, only these clients may connect.
    #[serde(default)]
    pub allowed: Vec<AddressRule>,
    /// These clients may never connect (checked after `allowed`).
    #[serde(default)]
    pub blocked: Vec<AddressRule>,
}

impl AddressPolicy {
    /// Whether a client at `ip` may connect.
    pub fn permits(&self, ip: IpAddr) -> bool {
        (self.allowed.is_empty() || self.allowed.iter().any(|r| r.matches(ip)))
            && !self.blocked.iter().any(|r| r.matches(ip))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn address_rules() {
        let r: AddressRule = "10.1.0.0/16".parse().unwrap();
        assert!(r.matches("10.1.200.3".parse().unwrap()));
        assert!(!r.matches("10.2.0.1".parse().unwrap()));
        assert!(r.matches("::ffff:10.1.0.9".parse().unwrap()));
        let one: AddressRule = "127.0.0.1".parse().unwrap();
        assert!(one.matches("127.0.0.1".parse().unwrap()));
        assert!(!one.matches("127.0.0.2".parse().unwrap()));
        let odd: AddressRule = "192.168.0.0/23".parse().unwrap();
        assert!(odd.matches("192.168.1.255".parse().unwrap()));
        assert!(!odd.matches("192.168.2.0".parse().unwrap()));
        let v6: AddressRule = "fe80::/10".parse().unwrap();
        assert!(v6.matches("fe80::1".parse().unwrap()));
        for bad in ["", "10.0.0.0/33", "host.example", "1.2.3.4/x"] {
            assert!(bad.parse::<AddressRule>().is_err(), "{bad}");
        }
    }
}
