//! The address nearby phones reach this daemon at, for the board's QR code
//! (`[board] qr = "auto"`, docs/board.md §10).
//!
//! [`phone_url`] turns the listen socket's address into `http://ADDR:PORT/`.
//! A specific address is used as it is. For a wildcard (`0.0.0.0`, `[::]`)
//! it asks the routing table which address this machine sends from: a UDP
//! socket `connect`ed to an outside address picks its source address the
//! way the kernel routes, and sends nothing. On a LAN with no default route
//! it asks the same of the first interface route in `/proc/net/route`.
//! Loopback gives no URL: phones cannot reach it.
//!
//! This module opens UDP sockets that never send a packet and reads
//! `/proc/net/route`; it never resolves a name, never blocks, and holds
//! nothing between calls.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, UdpSocket};

/// Where the routing table is asked for the default route's source
/// address: documentation addresses (RFC 5737, RFC 3849), routed like any
/// outside address and owned by no one. `connect` on a UDP socket sends
/// nothing to them.
const OUTSIDE_V4: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);

/// The IPv6 twin of [`OUTSIDE_V4`].
const OUTSIDE_V6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1);

/// Interface routes tried when there is no default route: a LAN has one or
/// two, and a machine with hundreds (a router) does not need the first few
/// to be wrong.
const MAX_ROUTE_PROBES: usize = 8;

/// Why there is no URL for phones.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NoUrl {
    /// The daemon listens on this loopback address only.
    Loopback(SocketAddr),
    /// The daemon listens on every address, but the machine has no LAN
    /// address yet (no network, or DHCP has not answered).
    NoLan,
}

impl fmt::Display for NoUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NoUrl::Loopback(addr) => write!(
                f,
                "the daemon listens on {addr}, which phones cannot reach; \
                 set [server] listen = \"0.0.0.0:{}\" to open it to the LAN, \
                 or [board] qr = \"off\" or a URL",
                addr.port()
            ),
            NoUrl::NoLan => {
                f.write_str("this machine has no LAN address yet (no network, or no DHCP answer)")
            }
        }
    }
}

/// The URL a phone on the LAN opens for a daemon listening on `listen`.
pub fn phone_url(listen: SocketAddr) -> Result<String, NoUrl> {
    let ip = listen.ip();
    if ip.is_loopback() {
        return Err(NoUrl::Loopback(listen));
    }
    let ip = if ip.is_unspecified() {
        // `[::]` takes IPv4 too (Linux's default), and a phone is likelier
        // to have an IPv4 address on the LAN.
        let v4 = routed_source(IpAddr::V4(OUTSIDE_V4)).or_else(interface_route_source);
        let v6 = || routed_source(IpAddr::V6(OUTSIDE_V6));
        match ip {
            IpAddr::V4(_) => v4,
            IpAddr::V6(_) => v4.or_else(v6),
        }
        .ok_or(NoUrl::NoLan)?
    } else {
        ip
    };
    Ok(url_for(ip, listen.port()))
}

/// `http://ip:port/`, with an IPv6 address in brackets and port 80 left
/// out (a shorter URL is a smaller code).
pub fn url_for(ip: IpAddr, port: u16) -> String {
    let host = match ip {
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => v4.to_string(),
            None => format!("[{v6}]"),
        },
    };
    if port == 80 {
        format!("http://{host}/")
    } else {
        format!("http://{host}:{port}/")
    }
}

/// The address this machine would send from to reach `to`, if a phone
/// could use it.
fn routed_source(to: IpAddr) -> Option<IpAddr> {
    let bind: SocketAddr = match to {
        IpAddr::V4(_) => (Ipv4Addr::UNSPECIFIED, 0).into(),
        IpAddr::V6(_) => (Ipv6Addr::UNSPECIFIED, 0).into(),
    };
    let socket = UdpSocket::bind(bind).ok()?;
    // The discard port; nothing is sent, `connect` only picks the route.
    socket.connect((to, 9)).ok()?;
    let ip = socket.local_addr().ok()?.ip();
    usable(ip).then_some(ip)
}

/// The source address of the first interface route (one with no gateway)
/// off loopback, for a LAN without a default route.
fn interface_route_source() -> Option<IpAddr> {
    let table = std::fs::read_to_string("/proc/net/route").ok()?;
    route_probes(&table)
        .into_iter()
        .take(MAX_ROUTE_PROBES)
        .find_map(|probe| routed_source(IpAddr::V4(probe)))
}

/// An address inside each interface route of `/proc/net/route` (the
/// network's first host), in the table's order: routes that are up, not
/// through a gateway, not on `lo`, and not to a single host.
fn route_probes(table: &str) -> Vec<Ipv4Addr> {
    /// `RTF_UP` and `RTF_GATEWAY` of the route's flags.
    const UP: u32 = 0x1;
    const GATEWAY: u32 = 0x2;
    let hex = |s: &str| u32::from_str_radix(s, 16).ok();
    table
        .lines()
        .skip(1)
        .filter_map(|line| {
            let f: Vec<&str> = line.split_whitespace().collect();
            let (iface, dest, flags, mask) = (
                f.first()?,
                hex(f.get(1)?)?,
                hex(f.get(3)?)?,
                hex(f.get(7)?)?,
            );
            // The kernel prints the network-order address as a native u32.
            let (dest, mask) = (
                u32::from_be_bytes(dest.to_ne_bytes()),
                u32::from_be_bytes(mask.to_ne_bytes()),
            );
            let keep = *iface != "lo"
                && flags & UP != 0
                && flags & GATEWAY == 0
                && mask != 0
                && mask != u32::MAX;
            keep.then(|| Ipv4Addr::from((dest & mask) | 1))
        })
        .collect()
}

/// Whether a phone on the LAN could open `ip`: not loopback, not
/// unspecified, and not an IPv6 link-local address (which needs an
/// interface name that a URL in a QR code cannot carry).
fn usable(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => !v4.is_loopback() && !v4.is_unspecified(),
        IpAddr::V6(v6) => {
            !v6.is_loopback() && !v6.is_unspecified() && (v6.segments()[0] & 0xffc0) != 0xfe80
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_has_no_url_and_says_what_to_set() {
        for listen in ["127.0.0.1:7070", "[::1]:7070", "127.0.0.53:80"] {
            let listen: SocketAddr = listen.parse().unwrap();
            assert_eq!(phone_url(listen), Err(NoUrl::Loopback(listen)));
        }
        let why = NoUrl::Loopback("127.0.0.1:7070".parse().unwrap()).to_string();
        assert!(
            why.contains("127.0.0.1:7070") && why.contains("listen = \"0.0.0.0:7070\""),
            "{why}"
        );
    }

    #[test]
    fn a_specific_address_is_used_as_it_is() {
        let url = |s: &str| phone_url(s.parse().unwrap());
        assert_eq!(
            url("192.168.1.23:7070").unwrap(),
            "http://192.168.1.23:7070/"
        );
        assert_eq!(url("10.0.0.5:80").unwrap(), "http://10.0.0.5/");
        assert_eq!(url("[fd00::7]:7070").unwrap(), "http://[fd00::7]:7070/");
        assert_eq!(
            url("[::ffff:10.1.2.3]:8080").unwrap(),
            "http://10.1.2.3:8080/"
        );
    }

    #[test]
    fn a_wildcard_gives_a_lan_address_or_says_there_is_none() {
        // Whatever this machine's network, the answer is a usable address
        // with the port, or NoLan: never loopback, never the wildcard.
        for listen in ["0.0.0.0:7070", "[::]:7070"] {
            match phone_url(listen.parse().unwrap()) {
                Ok(url) => {
                    assert!(
                        url.starts_with("http://") && url.ends_with(":7070/"),
                        "{url}"
                    );
                    assert!(!url.contains("127.") && !url.contains("0.0.0.0"), "{url}");
                }
                Err(e) => assert_eq!(e, NoUrl::NoLan),
            }
        }
    }

    #[test]
    fn interface_routes_give_a_host_in_each_lan() {
        // A Pi on Wi-Fi with a default route, a wired LAN without one, a
        // host route, a route that is down, and loopback.
        let table = "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT\n\
            wlan0\t00000000\t0101A8C0\t0003\t0\t0\t600\t00000000\t0\t0\t0\n\
            wlan0\t0001A8C0\t00000000\t0001\t0\t0\t600\t00FFFFFF\t0\t0\t0\n\
            eth0\t0000000A\t00000000\t0001\t0\t0\t100\t0000FFFF\t0\t0\t0\n\
            eth0\t0500000A\t00000000\t0005\t0\t0\t100\tFFFFFFFF\t0\t0\t0\n\
            eth1\t000010AC\t00000000\t0000\t0\t0\t100\t0000FFFF\t0\t0\t0\n\
            lo\t0000007F\t00000000\t0001\t0\t0\t0\t000000FF\t0\t0\t0\n";
        let probes = route_probes(table);
        if cfg!(target_endian = "little") {
            assert_eq!(
                probes,
                [Ipv4Addr::new(192, 168, 1, 1), Ipv4Addr::new(10, 0, 0, 1)]
            );
        } else {
            assert_eq!(probes.len(), 2);
        }
        assert!(route_probes("garbage\nnot a route\n").is_empty());
    }

    #[test]
    fn link_local_and_loopback_are_not_for_phones() {
        assert!(!usable("fe80::1".parse().unwrap()));
        assert!(!usable("::1".parse().unwrap()));
        assert!(!usable("127.0.0.1".parse().unwrap()));
        assert!(usable("192.168.1.23".parse().unwrap()));
        assert!(usable("2001:db8::5".parse().unwrap()));
    }
}
