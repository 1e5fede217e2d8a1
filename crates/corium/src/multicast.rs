//! Multicast groups (RFC 7252 §8, RFC 7390, draft-ietf-core-groupcomm-bis): the
//! All-CoAP-Nodes addresses, and the sockets a server listens to a group on.
//!
//! A server joins a group with a socket of its own, bound to the group address and the
//! CoAP port (SO_REUSEADDR, so several servers on one host can all join): whatever
//! arrives there was sent to the group, so its endpoint handles it with
//! [`Endpoint::handle_multicast_datagram`](corium_proto::Endpoint::handle_multicast_datagram)
//! (no error responses, no RST, responses after a random leisure, §8.2). Responses go
//! out from the server's unicast socket, so that the client learns an address it can
//! talk to afterwards (§8.2.1: "the source address of the response is the unicast
//! address of the server").

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use socket2::{Domain, Protocol, Socket, Type};
use tokio::net::UdpSocket;

/// "All CoAP Nodes" for IPv4 (RFC 7252 §12.8).
pub const ALL_COAP_NODES_V4: Ipv4Addr = Ipv4Addr::new(224, 0, 1, 187);
/// "All CoAP Nodes", link-local scope (RFC 7252 §12.8).
pub const ALL_COAP_NODES_V6_LINK: Ipv6Addr = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 0xfd);
/// "All CoAP Nodes", site-local scope (RFC 7252 §12.8).
pub const ALL_COAP_NODES_V6_SITE: Ipv6Addr = Ipv6Addr::new(0xff05, 0, 0, 0, 0, 0, 0, 0xfd);

/// A multicast group to join, and on which interface.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct MulticastGroup {
    /// The group address (224.0.0.0/4 or ff00::/8).
    pub group: IpAddr,
    /// The interface: for IPv4 one of its addresses, for IPv6 its index (the scope ID
    /// of `ff02::fd%lo` is `lo`'s index); `None` lets the system choose.
    pub interface: Option<MulticastInterface>,
}

/// How an interface is named when joining a group.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum MulticastInterface {
    /// An IPv4 address of the interface (IP_ADD_MEMBERSHIP).
    V4(Ipv4Addr),
    /// An interface index (IPV6_ADD_MEMBERSHIP).
    Index(u32),
}

impl MulticastGroup {
    /// `group` on the interface the system chooses.
    pub fn new(group: IpAddr) -> MulticastGroup {
        MulticastGroup {
            group,
            interface: None,
        }
    }

    /// `group` on `interface`.
    pub fn on(group: IpAddr, interface: MulticastInterface) -> MulticastGroup {
        MulticastGroup {
            group,
            interface: Some(interface),
        }
    }

    /// The All-CoAP-Nodes groups as a server joins them: 224.0.1.187 and ff05::fd on the
    /// interfaces the system chooses, and the link-local ff02::fd once per link, on every
    /// interface that is up and multicast-capable (a link-local group needs its interface,
    /// RFC 4007 §11; interfaces are read from `/sys/class/net` on Linux, none elsewhere).
    pub fn all_coap_nodes_per_link() -> Vec<MulticastGroup> {
        let mut groups = vec![
            MulticastGroup::new(IpAddr::V4(ALL_COAP_NODES_V4)),
            MulticastGroup::new(IpAddr::V6(ALL_COAP_NODES_V6_SITE)),
        ];
        groups.extend(multicast_links().into_iter().map(|index| MulticastGroup {
            group: IpAddr::V6(ALL_COAP_NODES_V6_LINK),
            interface: Some(MulticastInterface::Index(index)),
        }));
        groups
    }

    /// The three All-CoAP-Nodes groups on the interfaces the system chooses. The
    /// link-local ff02::fd cannot be bound that way (see
    /// [`all_coap_nodes_per_link`](Self::all_coap_nodes_per_link)); this list is the
    /// client's set of destinations.
    pub fn all_coap_nodes() -> [MulticastGroup; 3] {
        [
            MulticastGroup::new(IpAddr::V4(ALL_COAP_NODES_V4)),
            MulticastGroup::new(IpAddr::V6(ALL_COAP_NODES_V6_LINK)),
            MulticastGroup::new(IpAddr::V6(ALL_COAP_NODES_V6_SITE)),
        ]
    }
}

/// Indexes of the interfaces that are up and multicast-capable (`IFF_UP | IFF_MULTICAST`
/// in `/sys/class/net/*/flags`).
fn multicast_links() -> Vec<u32> {
    const IFF_UP: u32 = 0x1;
    const IFF_MULTICAST: u32 = 0x1000;
    let Ok(dir) = std::fs::read_dir("/sys/class/net") else {
        return Vec::new();
    };
    let read = |path: std::path::PathBuf| std::fs::read_to_string(path).ok();
    let mut links: Vec<u32> = dir
        .filter_map(Result::ok)
        .filter_map(|entry| {
            let flags = read(entry.path().join("flags"))?;
            let flags = u32::from_str_radix(flags.trim().trim_start_matches("0x"), 16).ok()?;
            let index = read(entry.path().join("ifindex"))?.trim().parse().ok()?;
            (flags & (IFF_UP | IFF_MULTICAST) == IFF_UP | IFF_MULTICAST).then_some(index)
        })
        .collect();
    links.sort_unstable();
    links
}

/// Binds a socket to `group`:`port` and joins the group (see the module docs).
pub(crate) fn bind_group(group: MulticastGroup, port: u16) -> io::Result<UdpSocket> {
    if !group.group.is_multicast() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{} is not a multicast address", group.group),
        ));
    }
    let mut addr = SocketAddr::new(group.group, port);
    let socket = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
    // Several servers on one host join the same group and port.
    socket.set_reuse_address(true)?;
    match (group.group, group.interface) {
        (IpAddr::V4(g), interface) => {
            let local = match interface {
                Some(MulticastInterface::V4(a)) => a,
                Some(MulticastInterface::Index(_)) => {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidInput,
                        "an IPv4 group is joined on an interface address, not an index",
                    ))
                }
                None => Ipv4Addr::UNSPECIFIED,
            };
            socket.join_multicast_v4(&g, &local)?;
        }
        (IpAddr::V6(g), interface) => {
            socket.set_only_v6(true)?;
            let index = match interface {
                Some(MulticastInterface::Index(i)) => i,
                Some(MulticastInterface::V4(_)) => {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidInput,
                        "an IPv6 group is joined on an interface index, not an IPv4 address",
                    ))
                }
                None => 0,
            };
            // A link-local group (ff02::/16) exists once per link: the kernel binds to it
            // only with the link's interface as the scope ID (RFC 4007 §11), so joining it
            // on "the interface the system chooses" cannot work; say so instead of EINVAL.
            if index == 0 && (g.segments()[0] & 0x000f) == 0x2 {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!("{g} is link-local: name the interface (index), e.g. {g}@1"),
                ));
            }
            socket.join_multicast_v6(&g, index)?;
            addr = SocketAddr::V6(std::net::SocketAddrV6::new(g, port, 0, index));
        }
    }
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    UdpSocket::from_std(socket.into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn all_coap_nodes_addresses() {
        assert_eq!(ALL_COAP_NODES_V4.to_string(), "224.0.1.187");
        assert_eq!(ALL_COAP_NODES_V6_LINK.to_string(), "ff02::fd");
        assert_eq!(ALL_COAP_NODES_V6_SITE.to_string(), "ff05::fd");
        assert!(MulticastGroup::all_coap_nodes()
            .iter()
            .all(|g| g.group.is_multicast()));
    }

    #[tokio::test]
    async fn unicast_addresses_are_refused() {
        let err = bind_group(MulticastGroup::new("127.0.0.1".parse().unwrap()), 0).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
    }

    /// Two sockets of one host join 224.0.1.187 on the loopback interface and both get
    /// a datagram sent to the group.
    #[tokio::test]
    async fn two_members_on_loopback_both_receive() {
        let port = std::net::UdpSocket::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let group = MulticastGroup::on(
            IpAddr::V4(ALL_COAP_NODES_V4),
            MulticastInterface::V4(Ipv4Addr::LOCALHOST),
        );
        let a = bind_group(group, port).unwrap();
        let b = bind_group(group, port).unwrap();
        let sender = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP)).unwrap();
        sender.set_multicast_if_v4(&Ipv4Addr::LOCALHOST).unwrap();
        sender.set_multicast_loop_v4(true).unwrap();
        let sender: std::net::UdpSocket = sender.into();
        sender.send_to(b"hello", (ALL_COAP_NODES_V4, port)).unwrap();
        let mut buf = [0u8; 16];
        for member in [&a, &b] {
            let (n, _) = tokio::time::timeout(
                std::time::Duration::from_secs(10),
                member.recv_from(&mut buf),
            )
            .await
            .expect("the datagram arrives")
            .unwrap();
            assert_eq!(&buf[..n], b"hello");
        }
    }
}
