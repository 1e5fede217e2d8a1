//! UDP socket setup (socket2) and the address mapping between a dual-stack IPv6 socket
//! and the canonical peer addresses the endpoint sees.

use std::io;
use std::net::{IpAddr, SocketAddr, SocketAddrV6};

use socket2::{Domain, Protocol, Socket, Type};
use tokio::net::UdpSocket;

/// Kernel buffer size asked for (best effort: the kernel may cap it, e.g. at
/// `net.core.rmem_max` on Linux). Large buffers absorb bursts of requests while the
/// driver task is busy.
pub const SOCKET_BUFFER_SIZE: usize = 4 * 1024 * 1024;

/// Largest datagram the driver receives: the largest UDP payload over IPv6 jumbo-free
/// paths. CoAP messages are normally far smaller (RFC 7252 §4.6).
pub const MAX_DATAGRAM_SIZE: usize = 65_535;

/// How a v6 socket handles IPv4.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub(crate) enum V6Mode {
    /// `IPV6_V6ONLY` set: the socket talks IPv6 only (servers, so `[::]:5683` and
    /// `0.0.0.0:5683` can be bound side by side).
    Only,
    /// Dual stack: IPv4 peers are reached through v4-mapped addresses (`::ffff:a.b.c.d`).
    Dual,
}

/// A bound socket and what it can reach.
#[derive(Debug)]
pub(crate) struct BoundSocket {
    pub(crate) socket: UdpSocket,
    pub(crate) local: SocketAddr,
    pub(crate) family: Family,
}

/// Which peers a socket can reach.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub(crate) enum Family {
    V4,
    V6Only,
    Dual,
}

impl Family {
    /// The address to pass to `send_to` for the canonical peer `peer`, or `None` when this
    /// socket cannot reach it.
    pub(crate) fn to_socket(self, peer: SocketAddr) -> Option<SocketAddr> {
        match (self, peer) {
            (Family::V4, SocketAddr::V4(_)) => Some(peer),
            (Family::V4, SocketAddr::V6(_)) => None,
            (Family::V6Only, SocketAddr::V6(_)) => Some(peer),
            (Family::V6Only, SocketAddr::V4(_)) => None,
            (Family::Dual, SocketAddr::V6(_)) => Some(peer),
            (Family::Dual, SocketAddr::V4(v4)) => Some(SocketAddr::V6(SocketAddrV6::new(
                v4.ip().to_ipv6_mapped(),
                v4.port(),
                0,
                0,
            ))),
        }
    }
}

/// The canonical form of a peer address: v4-mapped IPv6 addresses become IPv4, so a
/// peer has one identity whichever socket it came through, and traces read naturally.
pub fn canonical(addr: SocketAddr) -> SocketAddr {
    match addr {
        SocketAddr::V6(v6) => match v6.ip().to_ipv4_mapped() {
            Some(v4) => SocketAddr::new(IpAddr::V4(v4), v6.port()),
            None => addr,
        },
        SocketAddr::V4(_) => addr,
    }
}

/// Binds a UDP socket with SO_REUSEADDR, large buffers and the given v6 mode, registered
/// with the tokio reactor. Must be called inside a tokio runtime.
///
/// `reuse_address` sets SO_REUSEADDR. It is off by default: on Linux it lets a second
/// process bind the same UDP port and silently take the traffic, which hides a mistake
/// that an "address in use" error would have shown.
pub(crate) fn bind(addr: SocketAddr, v6: V6Mode, reuse_address: bool) -> io::Result<BoundSocket> {
    bind_shared(addr, v6, reuse_address, false)
}

/// [`bind`], with SO_REUSEPORT when `reuse_port` is set: several sockets then share
/// the address and port, and the kernel spreads the peers over them by a hash of the
/// 4-tuple, so each peer's datagrams always reach the same socket (one shard per
/// worker thread, see `ServerBuilder::shards`).
pub(crate) fn bind_shared(
    addr: SocketAddr,
    v6: V6Mode,
    reuse_address: bool,
    reuse_port: bool,
) -> io::Result<BoundSocket> {
    // An IPv4 target given as a v4-mapped address is bound as IPv4.
    let addr = canonical(addr);
    let domain = Domain::for_address(addr);
    let socket = Socket::new(domain, Type::DGRAM, Some(Protocol::UDP))?;
    let mut family = Family::V4;
    if addr.is_ipv6() {
        let only = v6 == V6Mode::Only;
        // Best effort for dual stack: some systems refuse to clear IPV6_V6ONLY.
        if let Err(err) = socket.set_only_v6(only) {
            if only {
                return Err(err);
            }
            tracing::debug!(%addr, %err, "could not make the socket dual-stack");
        }
        family = if socket.only_v6().unwrap_or(only) {
            Family::V6Only
        } else {
            Family::Dual
        };
    }
    if reuse_address {
        socket.set_reuse_address(true)?;
    }
    if reuse_port {
        #[cfg(all(unix, not(any(target_os = "solaris", target_os = "illumos"))))]
        socket.set_reuse_port(true)?;
        #[cfg(not(all(unix, not(any(target_os = "solaris", target_os = "illumos")))))]
        return Err(io::Error::new(
            io::ErrorKind::Unsupported,
            "SO_REUSEPORT is not available on this platform",
        ));
    }
    // A unicast socket takes no group traffic (RFC 7252 §8.1 wants group requests told
    // apart: no error answers, a Leisure delay). On Linux a wildcard-bound socket would
    // otherwise receive the datagrams of every group any socket of the host joined, and
    // answer a group request as if it were unicast, beside the group socket.
    #[cfg(target_os = "linux")]
    {
        let v4 = if family == Family::V6Only {
            Ok(())
        } else {
            socket.set_multicast_all_v4(false)
        };
        let v6 = if family == Family::V4 {
            Ok(())
        } else {
            socket.set_multicast_all_v6(false)
        };
        if let Err(err) = v4.and(v6) {
            tracing::debug!(%addr, %err, "could not limit the socket to its own groups");
        }
    }
    if let Err(err) = socket.set_recv_buffer_size(SOCKET_BUFFER_SIZE) {
        tracing::debug!(%addr, %err, "could not enlarge the receive buffer");
    }
    if let Err(err) = socket.set_send_buffer_size(SOCKET_BUFFER_SIZE) {
        tracing::debug!(%addr, %err, "could not enlarge the send buffer");
    }
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    let socket = UdpSocket::from_std(socket.into())?;
    let local = socket.local_addr()?;
    Ok(BoundSocket {
        socket,
        local,
        family,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv6Addr;

    #[test]
    fn canonical_unmaps_v4_mapped() {
        let mapped: SocketAddr = "[::ffff:127.0.0.1]:5683".parse().unwrap();
        assert_eq!(canonical(mapped), "127.0.0.1:5683".parse().unwrap());
        let v6: SocketAddr = "[::1]:5683".parse().unwrap();
        assert_eq!(canonical(v6), v6);
    }

    #[test]
    fn family_maps_targets() {
        let v4: SocketAddr = "192.0.2.1:5683".parse().unwrap();
        let v6: SocketAddr = "[2001:db8::1]:5683".parse().unwrap();
        assert_eq!(Family::V4.to_socket(v4), Some(v4));
        assert_eq!(Family::V4.to_socket(v6), None);
        assert_eq!(Family::V6Only.to_socket(v4), None);
        assert_eq!(
            Family::Dual.to_socket(v4),
            Some("[::ffff:192.0.2.1]:5683".parse().unwrap())
        );
        assert_eq!(Family::Dual.to_socket(v6), Some(v6));
    }

    #[tokio::test]
    async fn v6only_and_v4_bind_side_by_side() {
        let v4 = bind("127.0.0.1:0".parse().unwrap(), V6Mode::Only, false).unwrap();
        let port = v4.local.port();
        // The same port on [::] with IPV6_V6ONLY does not collide with the IPv4 socket.
        match bind(
            SocketAddr::new(Ipv6Addr::UNSPECIFIED.into(), port),
            V6Mode::Only,
            false,
        ) {
            Ok(v6) => assert_eq!(v6.family, Family::V6Only),
            // Hosts without IPv6 support cannot run this check.
            Err(err) if err.kind() == io::ErrorKind::AddrNotAvailable => {}
            Err(err) if err.raw_os_error() == Some(97) => {} // EAFNOSUPPORT
            Err(err) => panic!("bind [::]:{port}: {err}"),
        }
    }
}
