//! The group's floating address (docs/ha.md, "Publishing"): the leader
//! adds it to an interface once it may serve and removes it when it stops
//! serving, before its lease can expire. Taking it announces it on the
//! link (a gratuitous ARP request for IPv4, an unsolicited neighbour
//! advertisement with the override flag for IPv6), so the clients'
//! neighbour caches move to the new leader at once: their next packet on
//! an old connection gets a reset from the new leader's host, and
//! corosync-qdevice reconnects.
//!
//! Adding and removing use `ip` (iproute2); the announcements are sent
//! here (AF_PACKET for ARP, a raw ICMPv6 socket for the advertisement).
//! Needs CAP_NET_ADMIN and CAP_NET_RAW.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::process::Command;

use crate::error::{HaError, Result};

/// A floating address on one interface.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FloatingAddress {
    pub addr: IpAddr,
    pub prefix_len: u8,
    pub dev: String,
}

fn err(fa: &FloatingAddress, action: &'static str, reason: impl std::fmt::Display) -> HaError {
    HaError::Address {
        addr: fa.addr.to_string(),
        dev: fa.dev.clone(),
        action,
        reason: reason.to_string(),
    }
}

impl FloatingAddress {
    /// Parses `ADDR/PREFIX` and an interface name.
    pub fn parse(cidr: &str, dev: &str) -> Result<FloatingAddress> {
        let bad = |problem: String| HaError::InvalidConfig {
            field: "floating_address",
            problem,
        };
        let (a, p) = cidr
            .split_once('/')
            .ok_or_else(|| bad(format!("{cidr:?} needs a prefix length, e.g. 10.0.0.5/24")))?;
        let addr: IpAddr = a
            .parse()
            .map_err(|_| bad(format!("{a:?} is not an IP address")))?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix_len: u8 = p
            .parse()
            .ok()
            .filter(|n| *n <= max)
            .ok_or_else(|| bad(format!("prefix length {p:?} is not 0..{max}")))?;
        if dev.is_empty()
            || dev.len() > 15
            || dev.contains('/')
            || dev.contains(char::is_whitespace)
        {
            return Err(bad(format!("interface name {dev:?} is invalid")));
        }
        Ok(FloatingAddress {
            addr,
            prefix_len,
            dev: dev.into(),
        })
    }

    fn ip(&self, action: &'static str, args: &[&str]) -> Result<()> {
        let out = Command::new("ip")
            .args(args)
            .output()
            .map_err(|e| err(self, action, format!("cannot run ip (iproute2): {e}")))?;
        if out.status.success() {
            Ok(())
        } else {
            Err(err(
                self,
                action,
                String::from_utf8_lossy(&out.stderr).trim().to_string(),
            ))
        }
    }

    /// Adds the address (replacing it if present) and announces it.
    pub fn take(&self) -> Result<()> {
        let cidr = format!("{}/{}", self.addr, self.prefix_len);
        let mut args = vec!["addr", "replace", cidr.as_str(), "dev", self.dev.as_str()];
        if self.addr.is_ipv6() {
            // usable at once: no duplicate address detection delay
            args.push("nodad");
        }
        self.ip("add", &args)?;
        self.announce()
    }

    /// Removes the address; an address that is not there is not an error
    /// (asked of the kernel first, not read from `ip`'s messages).
    pub fn release(&self) -> Result<()> {
        if !self.is_present().map_err(|e| err(self, "remove", e))? {
            return Ok(());
        }
        let cidr = format!("{}/{}", self.addr, self.prefix_len);
        self.ip(
            "remove",
            &["addr", "del", cidr.as_str(), "dev", self.dev.as_str()],
        )
    }

    /// Whether the interface holds the address now (`getifaddrs`).
    pub fn is_present(&self) -> std::io::Result<bool> {
        let mut head: *mut libc::ifaddrs = std::ptr::null_mut();
        // SAFETY: getifaddrs fills `head` with a list that is freed below
        // with freeifaddrs; every node is read only while the list lives.
        unsafe {
            if libc::getifaddrs(&mut head) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            let mut found = false;
            let mut node = head;
            while !node.is_null() {
                let ifa = &*node;
                node = ifa.ifa_next;
                if ifa.ifa_addr.is_null() || ifa.ifa_name.is_null() {
                    continue;
                }
                let name = std::ffi::CStr::from_ptr(ifa.ifa_name);
                if name.to_bytes() != self.dev.as_bytes() {
                    continue;
                }
                let family = i32::from((*ifa.ifa_addr).sa_family);
                let addr = match family {
                    libc::AF_INET => {
                        let sin = &*(ifa.ifa_addr as *const libc::sockaddr_in);
                        IpAddr::V4(Ipv4Addr::from(u32::from_be(sin.sin_addr.s_addr)))
                    }
                    libc::AF_INET6 => {
                        let sin6 = &*(ifa.ifa_addr as *const libc::sockaddr_in6);
                        IpAddr::V6(Ipv6Addr::from(sin6.sin6_addr.s6_addr))
                    }
                    _ => continue,
                };
                if addr == self.addr {
                    found = true;
                    break;
                }
            }
            libc::freeifaddrs(head);
            Ok(found)
        }
    }

    /// Announces the address on the link once.
    pub fn announce(&self) -> Result<()> {
        let mac = link_address(&self.dev).map_err(|e| err(self, "announce", e))?;
        let index = if_index(&self.dev).map_err(|e| err(self, "announce", e))?;
        match self.addr {
            IpAddr::V4(a) => {
                send_packet(index, &garp_frame(mac, a)).map_err(|e| err(self, "announce", e))
            }
            IpAddr::V6(a) => {
                send_na(index, a, &na_message(mac, a)).map_err(|e| err(self, "announce", e))
            }
        }
    }
}

fn link_address(dev: &str) -> std::io::Result<[u8; 6]> {
    let text = std::fs::read_to_string(format!("/sys/class/net/{dev}/address"))
        .map_err(|e| std::io::Error::new(e.kind(), format!("no interface {dev} ({e})")))?;
    let parts: Vec<u8> = text
        .trim()
        .split(':')
        .filter_map(|h| u8::from_str_radix(h, 16).ok())
        .collect();
    parts.try_into().map_err(|_| {
        std::io::Error::new(
            std::io::ErrorKind::Unsupported,
            format!("interface {dev} has no Ethernet address"),
        )
    })
}

fn if_index(dev: &str) -> std::io::Result<u32> {
    let name = std::ffi::CString::new(dev)
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::InvalidInput, "bad interface name"))?;
    // SAFETY: a valid NUL-terminated string.
    let i = unsafe { libc::if_nametoindex(name.as_ptr()) };
    if i == 0 {
        Err(std::io::Error::new(
            std::io::ErrorKind::NotFound,
            format!("no interface {dev}"),
        ))
    } else {
        Ok(i)
    }
}

/// A broadcast Ethernet frame with a gratuitous ARP request for `addr`.
pub fn garp_frame(mac: [u8; 6], addr: Ipv4Addr) -> Vec<u8> {
    let mut f = Vec::with_capacity(42);
    f.extend_from_slice(&[0xff; 6]); // destination: broadcast
    f.extend_from_slice(&mac);
    f.extend_from_slice(&[0x08, 0x06]); // ARP
    f.extend_from_slice(&[0, 1, 0x08, 0x00, 6, 4, 0, 1]); // Ethernet/IPv4, request
    f.extend_from_slice(&mac);
    f.extend_from_slice(&addr.octets()); // sender = the address
    f.extend_from_slice(&[0; 6]);
    f.extend_from_slice(&addr.octets()); // target = the address
    f
}

/// An unsolicited neighbour advertisement (ICMPv6 type 136) for `addr`
/// with the override flag and the target link-layer address option; the
/// kernel fills in the checksum.
pub fn na_message(mac: [u8; 6], addr: Ipv6Addr) -> Vec<u8> {
    let mut m = Vec::with_capacity(32);
    m.extend_from_slice(&[136, 0, 0, 0]); // type, code, checksum
    m.extend_from_slice(&[0x20, 0, 0, 0]); // flags: override
    m.extend_from_slice(&addr.octets());
    m.extend_from_slice(&[2, 1]); // option: target link-layer address, 8 bytes
    m.extend_from_slice(&mac);
    m
}

fn last_os_error(what: &str) -> std::io::Error {
    let e = std::io::Error::last_os_error();
    std::io::Error::new(e.kind(), format!("{what}: {e}"))
}

fn send_packet(index: u32, frame: &[u8]) -> std::io::Result<()> {
    // SAFETY: plain socket calls on a descriptor owned here and closed below.
    unsafe {
        let fd = libc::socket(
            libc::AF_PACKET,
            libc::SOCK_RAW,
            (libc::ETH_P_ARP as u16).to_be() as i32,
        );
        if fd < 0 {
            return Err(last_os_error("AF_PACKET socket (needs CAP_NET_RAW)"));
        }
        let mut sll: libc::sockaddr_ll = std::mem::zeroed();
        sll.sll_family = libc::AF_PACKET as u16;
        sll.sll_protocol = (libc::ETH_P_ARP as u16).to_be();
        sll.sll_ifindex = index as i32;
        sll.sll_halen = 6;
        sll.sll_addr[..6].copy_from_slice(&[0xff; 6]);
        let n = libc::sendto(
            fd,
            frame.as_ptr().cast(),
            frame.len(),
            0,
            (&sll as *const libc::sockaddr_ll).cast(),
            std::mem::size_of::<libc::sockaddr_ll>() as u32,
        );
        let r = if n < 0 {
            Err(last_os_error("send ARP"))
        } else {
            Ok(())
        };
        libc::close(fd);
        r
    }
}

fn send_na(index: u32, src: Ipv6Addr, msg: &[u8]) -> std::io::Result<()> {
    // SAFETY: plain socket calls on a descriptor owned here and closed below.
    unsafe {
        let fd = libc::socket(libc::AF_INET6, libc::SOCK_RAW, libc::IPPROTO_ICMPV6);
        if fd < 0 {
            return Err(last_os_error("ICMPv6 socket (needs CAP_NET_RAW)"));
        }
        let close = |r| {
            libc::close(fd);
            r
        };
        let hops: libc::c_int = 255;
        let idx: libc::c_int = index as libc::c_int;
        for (opt, val) in [
            (libc::IPV6_MULTICAST_HOPS, &hops),
            (libc::IPV6_MULTICAST_IF, &idx),
        ] {
            if libc::setsockopt(
                fd,
                libc::IPPROTO_IPV6,
                opt,
                (val as *const libc::c_int).cast(),
                std::mem::size_of::<libc::c_int>() as u32,
            ) < 0
            {
                return close(Err(last_os_error("ICMPv6 socket option")));
            }
        }
        let mut from: libc::sockaddr_in6 = std::mem::zeroed();
        from.sin6_family = libc::AF_INET6 as u16;
        from.sin6_addr.s6_addr = src.octets();
        if libc::bind(
            fd,
            (&from as *const libc::sockaddr_in6).cast(),
            std::mem::size_of::<libc::sockaddr_in6>() as u32,
        ) < 0
        {
            return close(Err(last_os_error("bind to the floating address")));
        }
        let mut to: libc::sockaddr_in6 = std::mem::zeroed();
        to.sin6_family = libc::AF_INET6 as u16;
        to.sin6_addr.s6_addr = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 1).octets();
        to.sin6_scope_id = index;
        let n = libc::sendto(
            fd,
            msg.as_ptr().cast(),
            msg.len(),
            0,
            (&to as *const libc::sockaddr_in6).cast(),
            std::mem::size_of::<libc::sockaddr_in6>() as u32,
        );
        close(if n < 0 {
            Err(last_os_error("send neighbour advertisement"))
        } else {
            Ok(())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_checks_address_prefix_and_device() {
        let f = FloatingAddress::parse("10.0.0.5/24", "eth0").unwrap();
        assert_eq!(f.addr, "10.0.0.5".parse::<IpAddr>().unwrap());
        assert_eq!(f.prefix_len, 24);
        assert!(FloatingAddress::parse("fd00::5/64", "eth0").is_ok());
        for (a, d) in [
            ("10.0.0.5", "eth0"),
            ("10.0.0.5/33", "eth0"),
            ("x/24", "eth0"),
            ("10.0.0.5/24", ""),
            ("10.0.0.5/24", "a b"),
        ] {
            let e = FloatingAddress::parse(a, d).unwrap_err();
            assert!(
                matches!(
                    e,
                    HaError::InvalidConfig {
                        field: "floating_address",
                        ..
                    }
                ),
                "{a} {d}"
            );
        }
    }

    #[test]
    fn garp_frame_layout() {
        let mac = [2, 0, 0, 0, 0, 9];
        let f = garp_frame(mac, Ipv4Addr::new(10, 78, 0, 200));
        assert_eq!(f.len(), 42);
        assert_eq!(&f[0..6], &[0xff; 6]);
        assert_eq!(&f[6..12], &mac);
        assert_eq!(&f[12..14], &[8, 6]);
        assert_eq!(&f[20..22], &[0, 1]); // request
        assert_eq!(&f[22..28], &mac);
        assert_eq!(&f[28..32], &[10, 78, 0, 200]);
        assert_eq!(&f[38..42], &[10, 78, 0, 200]);
    }

    #[test]
    fn na_message_layout() {
        let mac = [2, 0, 0, 0, 0, 9];
        let a: Ipv6Addr = "fd00::5".parse().unwrap();
        let m = na_message(mac, a);
        assert_eq!(m.len(), 32);
        assert_eq!(m[0], 136);
        assert_eq!(m[4] & 0x20, 0x20); // override
        assert_eq!(&m[8..24], &a.octets());
        assert_eq!(&m[24..26], &[2, 1]);
        assert_eq!(&m[26..32], &mac);
    }

    #[test]
    fn presence_is_read_from_the_kernel() {
        // every Linux network namespace has 127.0.0.1 on lo
        let held = FloatingAddress::parse("127.0.0.1/8", "lo").unwrap();
        assert!(held.is_present().unwrap());
        let absent = FloatingAddress::parse("127.0.0.77/8", "lo").unwrap();
        assert!(!absent.is_present().unwrap());
        let elsewhere = FloatingAddress::parse("127.0.0.1/8", "qnetd-none0").unwrap();
        assert!(!elsewhere.is_present().unwrap());
        // nothing to remove: done without running `ip` (no privileges needed)
        absent.release().unwrap();
    }
}
