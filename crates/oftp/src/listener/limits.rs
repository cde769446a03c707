//! Per-address connection counts: how many connections of one client address (IPv4, or the
//! /64 of an IPv6 address) have not logged in yet, and how many are sessions. A connection
//! holds an [`AddressSlot`] from accept until it ends; the slot moves from the first count
//! to the second at login and gives its place back when dropped.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

/// Counts per client address (IPv4, or the /64 of an IPv6 address).
#[derive(Debug, Default, Clone, Copy)]
struct Counts {
    unauthenticated: usize,
    sessions: usize,
}

/// The per-address limits of one listener.
#[derive(Debug)]
pub(crate) struct AddressLimits {
    max_unauthenticated: usize,
    max_sessions: usize,
    counts: Mutex<HashMap<IpAddr, Counts>>,
}

/// The address a client is counted under: IPv4 as is (also when IPv4-mapped), IPv6 by its
/// /64, the block one subscriber gets, so one host cannot escape the limit by changing its
/// interface identifier.
fn address_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let mut o = v6.octets();
                o[8..].fill(0);
                IpAddr::V6(o.into())
            }
        },
    }
}

impl AddressLimits {
    pub(crate) fn new(max_unauthenticated: usize, max_sessions: usize) -> Arc<Self> {
        Arc::new(Self {
            max_unauthenticated,
            max_sessions,
            counts: Mutex::new(HashMap::new()),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<IpAddr, Counts>> {
        self.counts.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A slot for a new connection from `ip`, or why not.
    pub(crate) fn admit(self: &Arc<Self>, ip: IpAddr) -> Result<AddressSlot, &'static str> {
        let key = address_key(ip);
        let mut counts = self.lock();
        let c = counts.entry(key).or_default();
        if c.unauthenticated >= self.max_unauthenticated {
            return Err("too many connections from your address have not logged in yet");
        }
        c.unauthenticated += 1;
        Ok(AddressSlot {
            limits: self.clone(),
            key,
            logged_in: false,
        })
    }
}

/// One connection's place in the per-address counts; given back when dropped.
#[derive(Debug)]
pub(crate) struct AddressSlot {
    limits: Arc<AddressLimits>,
    key: IpAddr,
    logged_in: bool,
}

impl AddressSlot {
    /// See [`Admission::log_in`](super::Admission::log_in).
    pub(super) fn log_in(&mut self) -> Result<(), &'static str> {
        if self.logged_in {
            return Ok(());
        }
        let mut counts = self.limits.lock();
        let c = counts.entry(self.key).or_default();
        if c.sessions >= self.limits.max_sessions {
            return Err("too many sessions from your address");
        }
        c.unauthenticated = c.unauthenticated.saturating_sub(1);
        c.sessions += 1;
        self.logged_in = true;
        Ok(())
    }
}

impl Drop for AddressSlot {
    fn drop(&mut self) {
        let mut counts = self.limits.lock();
        if let Some(c) = counts.get_mut(&self.key) {
            if self.logged_in {
                c.sessions = c.sessions.saturating_sub(1);
            } else {
                c.unauthenticated = c.unauthenticated.saturating_sub(1);
            }
            if c.unauthenticated == 0 && c.sessions == 0 {
                counts.remove(&self.key);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn address_slots_count_per_address_and_move_to_sessions_at_login() {
        let limits = AddressLimits::new(2, 1);
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let mut first = limits.admit(a).unwrap();
        let second = limits.admit(a).unwrap();
        assert!(
            limits.admit(a).is_err(),
            "two not logged in from one address"
        );
        assert!(limits.admit("10.0.0.2".parse().unwrap()).is_ok());
        // Logging in frees the not-logged-in place...
        first.log_in().unwrap();
        let mut third = limits.admit(a).unwrap();
        // ...and counts a session: one allowed.
        assert!(third.log_in().is_err());
        drop(first);
        third.log_in().unwrap();
        drop((second, third));
        assert!(limits.lock().is_empty(), "counts are given back");
    }

    #[test]
    fn ipv6_clients_count_by_their_64_and_mapped_ipv4_as_ipv4() {
        let limits = AddressLimits::new(1, 1);
        let _one = limits.admit("2001:db8:1:2::1".parse().unwrap()).unwrap();
        assert!(limits.admit("2001:db8:1:2::ffff".parse().unwrap()).is_err());
        assert!(limits.admit("2001:db8:1:3::1".parse().unwrap()).is_ok());
        let _v4 = limits.admit("192.0.2.7".parse().unwrap()).unwrap();
        assert!(limits.admit("::ffff:192.0.2.7".parse().unwrap()).is_err());
    }
}
