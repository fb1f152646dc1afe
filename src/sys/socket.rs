//! TCP sockets: `socket(2)`, `setsockopt(2)`/`getsockopt(2)`, `bind(2)`, `listen(2)`, `accept4(2)`,
//! `getsockname(2)`/`getpeername(2)`, `recv(2)`, `sendmsg(2)`/`sendto(2)` and `shutdown(2)`.
//!
//! Every socket is created non-blocking and close-on-exec in the same syscall
//! (`SOCK_NONBLOCK | SOCK_CLOEXEC`, and `accept4` for accepted ones), so there is no window in which
//! a blocking or inheritable fd exists. Listening sockets passed by systemd are checked with
//! [`is_tcp_listener`] and given both flags before use (`crate::sys::fd::adopt_inherited`).

use std::io::{self, IoSlice};
use std::mem;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};

/// Options for a listening socket.
#[derive(Clone, Copy, Debug)]
pub struct ListenOptions {
    /// `listen(2)` backlog: completed connections the kernel queues before `accept`.
    pub backlog: u32,
    /// Seconds for `TCP_DEFER_ACCEPT` (0: off). The kernel then wakes the acceptor only once the
    /// client has sent data, so a connection reaches a worker with its request already waiting.
    pub defer_accept_secs: u32,
    /// `SO_REUSEPORT`: let several processes bind the same address (used for upgrades).
    pub reuse_port: bool,
}

/// Creates, configures, binds and listens on a TCP socket for `addr`.
pub fn listen(addr: SocketAddr, opts: ListenOptions) -> io::Result<OwnedFd> {
    let fd = bind(addr, opts)?;
    start_listening(fd.as_fd(), opts.backlog)?;
    Ok(fd)
}

/// Creates, configures and binds a TCP socket for `addr`, without listening yet: a socket that
/// does not listen takes no connections, also not its share of a `SO_REUSEPORT` group's.
pub fn bind(addr: SocketAddr, opts: ListenOptions) -> io::Result<OwnedFd> {
    let domain = if addr.is_ipv4() { libc::AF_INET } else { libc::AF_INET6 };
    // SAFETY: no pointers; socket returns a fresh fd or -1.
    let raw =
        unsafe { syscall!(socket(domain, libc::SOCK_STREAM | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC, 0))? };
    // SAFETY: socket(2) succeeded; the fd is ours alone.
    let fd = unsafe { OwnedFd::from_raw_fd(raw) };
    // SO_REUSEADDR: rebinding right after a restart must not fail on connections in TIME_WAIT.
    set_int(fd.as_fd(), libc::SOL_SOCKET, libc::SO_REUSEADDR, 1)?;
    if opts.reuse_port {
        set_int(fd.as_fd(), libc::SOL_SOCKET, libc::SO_REUSEPORT, 1)?;
    }
    if addr.is_ipv6() {
        // An explicit [::]:port listens on IPv6 only; 0.0.0.0:port can be given as well.
        set_int(fd.as_fd(), libc::IPPROTO_IPV6, libc::IPV6_V6ONLY, 1)?;
    }
    if opts.defer_accept_secs > 0 {
        set_int(fd.as_fd(), libc::IPPROTO_TCP, libc::TCP_DEFER_ACCEPT, opts.defer_accept_secs as i32)?;
    }
    let (storage, len) = to_sockaddr(addr);
    // SAFETY: `storage` holds a valid sockaddr of `len` bytes for the socket's family.
    unsafe { syscall!(bind(raw, (&storage as *const libc::sockaddr_storage).cast(), len))? };
    Ok(fd)
}

/// `listen(2)` on a bound socket: from now on the kernel completes handshakes for it.
pub fn start_listening(fd: BorrowedFd<'_>, backlog: u32) -> io::Result<()> {
    let backlog = backlog.min(i32::MAX as u32) as libc::c_int;
    // SAFETY: no pointers; a socket that cannot listen gives an error, not undefined behaviour.
    unsafe { syscall!(listen(fd.as_raw_fd(), backlog))? };
    Ok(())
}

/// Steers the new connections of this listener's `SO_REUSEPORT` group to the group's second
/// socket, with a one-instruction classic BPF program (`SO_ATTACH_REUSEPORT_CBPF`, Linux 4.5):
/// `ret #1`. The kernel keeps a group's sockets in the order they started listening and, when
/// one closes, moves the last into its place; an index past the end falls back to the usual
/// hash. So in a hand-over — the old process first, the new one second — every new connection
/// goes to the new process from the moment it calls this, the old one only finishes what it
/// has; once the old one is gone the group has one socket and the hash picks it. The program
/// belongs to the group and survives the socket that attached it.
pub fn steer_reuseport_group_to_second(fd: BorrowedFd<'_>) -> io::Result<()> {
    let code = [libc::sock_filter { code: (libc::BPF_RET | libc::BPF_K) as u16, jt: 0, jf: 0, k: 1 }];
    let prog = libc::sock_fprog { len: code.len() as u16, filter: code.as_ptr() as *mut libc::sock_filter };
    // SAFETY: `prog` points at `code`, both alive for the call; the kernel copies the program.
    unsafe {
        syscall!(setsockopt(
            fd.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_ATTACH_REUSEPORT_CBPF,
            (&prog as *const libc::sock_fprog).cast(),
            mem::size_of::<libc::sock_fprog>() as libc::socklen_t
        ))?
    };
    Ok(())
}

/// `TCP_DEFER_ACCEPT` (see [`ListenOptions::defer_accept_secs`]), for a listener made elsewhere.
pub fn set_defer_accept(fd: BorrowedFd<'_>, secs: u32) -> io::Result<()> {
    set_int(fd, libc::IPPROTO_TCP, libc::TCP_DEFER_ACCEPT, secs.min(i32::MAX as u32) as i32)
}

/// Whether `fd` is a TCP socket (IPv4 or IPv6, stream) in the listening state: what a socket
/// passed by systemd must be before atomserve accepts on it (`SO_DOMAIN`, `SO_TYPE`,
/// `SO_ACCEPTCONN`). `ENOTSOCK` and the like come back as errors.
pub fn is_tcp_listener(fd: BorrowedFd<'_>) -> io::Result<bool> {
    let domain = get_int(fd, libc::SOL_SOCKET, libc::SO_DOMAIN)?;
    let kind = get_int(fd, libc::SOL_SOCKET, libc::SO_TYPE)?;
    let listening = get_int(fd, libc::SOL_SOCKET, libc::SO_ACCEPTCONN)?;
    Ok(matches!(domain, libc::AF_INET | libc::AF_INET6) && kind == libc::SOCK_STREAM && listening == 1)
}

fn get_int(fd: BorrowedFd<'_>, level: libc::c_int, name: libc::c_int) -> io::Result<libc::c_int> {
    let mut value: libc::c_int = 0;
    let mut len = mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: `value` and `len` are valid and writable; `len` holds the size of `value`.
    unsafe {
        syscall!(getsockopt(fd.as_raw_fd(), level, name, (&mut value as *mut libc::c_int).cast(), &mut len))?
    };
    Ok(value)
}

/// `accept4(SOCK_NONBLOCK | SOCK_CLOEXEC)`: the next pending connection, or `EAGAIN` when none.
pub fn accept(listener: BorrowedFd<'_>) -> io::Result<OwnedFd> {
    // SAFETY: null address pointers are allowed (we do not need the peer address here).
    let raw = unsafe {
        syscall!(accept4(
            listener.as_raw_fd(),
            std::ptr::null_mut(),
            std::ptr::null_mut(),
            libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC
        ))?
    };
    // SAFETY: accept4(2) succeeded; the new fd is ours alone.
    Ok(unsafe { OwnedFd::from_raw_fd(raw) })
}

/// `TCP_NODELAY`: send each response at once instead of waiting (Nagle) for more to coalesce.
/// atomserve already writes a whole response (or batch of pipelined responses) per send.
pub fn set_nodelay(fd: BorrowedFd<'_>) -> io::Result<()> {
    set_int(fd, libc::IPPROTO_TCP, libc::TCP_NODELAY, 1)
}

/// `TCP_NOTSENT_LOWAT`: the most bytes the socket keeps queued but not yet transmitted. A send
/// beyond it is cut short (`SOCK_NOSPACE` set, so an `EPOLLOUT` edge follows), and `poll(2)`
/// reports the socket writable only below it. See docs/syscalls.md.
pub fn set_notsent_lowat(fd: BorrowedFd<'_>, bytes: u32) -> io::Result<()> {
    set_int(fd, libc::IPPROTO_TCP, libc::TCP_NOTSENT_LOWAT, bytes.min(i32::MAX as u32) as libc::c_int)
}

/// `getsockname(2)`: the address a listener is bound to (the real port when 0 was asked for).
pub fn local_addr(fd: BorrowedFd<'_>) -> io::Result<SocketAddr> {
    // SAFETY: all-zero sockaddr_storage is valid to overwrite.
    let mut storage: libc::sockaddr_storage = unsafe { mem::zeroed() };
    let mut len = mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
    // SAFETY: storage and len are valid and writable; len holds the storage's size.
    unsafe {
        syscall!(getsockname(fd.as_raw_fd(), (&mut storage as *mut libc::sockaddr_storage).cast(), &mut len))?
    };
    from_sockaddr(&storage)
}

/// `getpeername(2)`: the remote address of a connection, for logs.
pub fn peer_addr(fd: BorrowedFd<'_>) -> io::Result<SocketAddr> {
    // SAFETY: as in local_addr.
    let mut storage: libc::sockaddr_storage = unsafe { mem::zeroed() };
    let mut len = mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
    // SAFETY: storage and len are valid and writable; len holds the storage's size.
    unsafe {
        syscall!(getpeername(fd.as_raw_fd(), (&mut storage as *mut libc::sockaddr_storage).cast(), &mut len))?
    };
    from_sockaddr(&storage)
}

/// `recv(2)` into `buf`. `Ok(0)` means the peer closed its side.
///
/// Entered through `syscall(2)` (as `recvfrom`, which glibc's `recv` calls too), like
/// [`send_vectored`]: glibc's socket calls are thread-cancellation points, and each switches
/// asynchronous cancellation on before the kernel call and off after it — about 60 instructions
/// a call by callgrind, on the two calls every keep-alive request makes. atomserve never cancels
/// a thread (`pthread_cancel`), so it has nothing to gain from them.
pub fn recv(fd: BorrowedFd<'_>, buf: &mut [u8]) -> io::Result<usize> {
    let (address, address_len) =
        (std::ptr::null_mut::<libc::sockaddr>(), std::ptr::null_mut::<libc::socklen_t>());
    // SAFETY: `buf` is valid and writable for `buf.len()` bytes; recvfrom(2) with a null address
    // writes none; the six arguments are recvfrom's, in its order.
    let n = unsafe {
        syscall!(syscall(
            libc::SYS_recvfrom,
            fd.as_raw_fd(),
            buf.as_mut_ptr(),
            buf.len(),
            0,
            address,
            address_len
        ))?
    };
    Ok(n as usize)
}

/// `sendmsg(2)` of several buffers at once — `writev(2)` with flags — or `sendto(2)` when there
/// is one. `MSG_NOSIGNAL` turns a closed peer into `EPIPE` instead of SIGPIPE; `MSG_DONTWAIT`
/// keeps it non-blocking.
///
/// One buffer is the common case (a rendered response, a pipelined batch copied together):
/// `sendto` takes it as a pointer and a length, where `sendmsg` first copies a `msghdr` and its
/// iovec array in from user memory and checks them (`copy_msghdr_from_user`, `import_iovec`).
///
/// `more`: a sendfile(2) of the body follows at once, so `MSG_MORE` tells TCP to hold this head
/// back and send it in the same segment as the body's first bytes (what nginx's `tcp_nopush`
/// does with TCP_CORK, without a setsockopt per response).
pub fn send_vectored(fd: BorrowedFd<'_>, bufs: &[IoSlice<'_>], more: bool) -> io::Result<usize> {
    let flags = libc::MSG_NOSIGNAL | libc::MSG_DONTWAIT | if more { libc::MSG_MORE } else { 0 };
    if let [one] = bufs {
        let (address, address_len) = (std::ptr::null::<libc::sockaddr>(), 0 as libc::socklen_t);
        // SAFETY: `one` is valid for reads of `one.len()` bytes for the call; sendto(2) with a
        // null address reads none; the six arguments are sendto's, in its order. Through
        // syscall(2), not glibc's cancellation point: see `recv`.
        let n = unsafe {
            syscall!(syscall(
                libc::SYS_sendto,
                fd.as_raw_fd(),
                one.as_ptr(),
                one.len(),
                flags,
                address,
                address_len
            ))?
        };
        return Ok(n as usize);
    }
    // SAFETY: all-zero msghdr has null name and control, which is what we want.
    let mut msg: libc::msghdr = unsafe { mem::zeroed() };
    // IoSlice is guaranteed ABI-compatible with iovec on Unix.
    msg.msg_iov = bufs.as_ptr() as *mut libc::iovec;
    msg.msg_iovlen = bufs.len().min(libc::UIO_MAXIOV as usize) as _;
    // SAFETY: msg points at `msg_iovlen` valid iovecs that live for the call; the kernel only reads
    // them. Through syscall(2), not glibc's cancellation point: see `recv`.
    let n =
        unsafe { syscall!(syscall(libc::SYS_sendmsg, fd.as_raw_fd(), &msg as *const libc::msghdr, flags))? };
    Ok(n as usize)
}

/// `send(2)` of one buffer, non-blocking, without SIGPIPE.
pub fn send(fd: BorrowedFd<'_>, buf: &[u8]) -> io::Result<usize> {
    // SAFETY: `buf` is valid for reads of `buf.len()` bytes.
    let n = unsafe {
        syscall!(send(
            fd.as_raw_fd(),
            buf.as_ptr().cast(),
            buf.len(),
            libc::MSG_NOSIGNAL | libc::MSG_DONTWAIT
        ))?
    };
    Ok(n as usize)
}

/// `shutdown(SHUT_WR)`: send FIN after what is queued, telling the client no more is coming,
/// while still letting us read (and discard) what it sends — a gentler close than `close(2)`
/// with unread input, which makes the kernel answer with a reset that can destroy our response.
pub fn shutdown_write(fd: BorrowedFd<'_>) -> io::Result<()> {
    // SAFETY: no pointers.
    unsafe { syscall!(shutdown(fd.as_raw_fd(), libc::SHUT_WR))? };
    Ok(())
}

/// `shutdown(SHUT_RDWR)`: ends both directions at once; pending receives and sends on the
/// socket (io_uring's among them) complete.
pub fn shutdown_both(fd: BorrowedFd<'_>) -> io::Result<()> {
    // SAFETY: no pointers.
    unsafe { syscall!(shutdown(fd.as_raw_fd(), libc::SHUT_RDWR))? };
    Ok(())
}

fn set_int(fd: BorrowedFd<'_>, level: libc::c_int, name: libc::c_int, value: libc::c_int) -> io::Result<()> {
    // SAFETY: passes a valid c_int and its exact size.
    unsafe {
        syscall!(setsockopt(
            fd.as_raw_fd(),
            level,
            name,
            (&value as *const libc::c_int).cast(),
            mem::size_of::<libc::c_int>() as libc::socklen_t
        ))?
    };
    Ok(())
}

fn to_sockaddr(addr: SocketAddr) -> (libc::sockaddr_storage, libc::socklen_t) {
    // SAFETY: all-zero sockaddr_storage is valid; we fill the family-specific prefix below.
    let mut storage: libc::sockaddr_storage = unsafe { mem::zeroed() };
    let len = match addr {
        SocketAddr::V4(a) => {
            let sin = libc::sockaddr_in {
                sin_family: libc::AF_INET as libc::sa_family_t,
                sin_port: a.port().to_be(),
                sin_addr: libc::in_addr { s_addr: u32::from_ne_bytes(a.ip().octets()) },
                sin_zero: [0; 8],
            };
            // SAFETY: sockaddr_storage is larger than and suitably aligned for sockaddr_in.
            unsafe { std::ptr::write((&mut storage as *mut libc::sockaddr_storage).cast(), sin) };
            mem::size_of::<libc::sockaddr_in>()
        }
        SocketAddr::V6(a) => {
            let sin6 = libc::sockaddr_in6 {
                sin6_family: libc::AF_INET6 as libc::sa_family_t,
                sin6_port: a.port().to_be(),
                sin6_flowinfo: a.flowinfo(),
                sin6_addr: libc::in6_addr { s6_addr: a.ip().octets() },
                sin6_scope_id: a.scope_id(),
            };
            // SAFETY: sockaddr_storage is larger than and suitably aligned for sockaddr_in6.
            unsafe { std::ptr::write((&mut storage as *mut libc::sockaddr_storage).cast(), sin6) };
            mem::size_of::<libc::sockaddr_in6>()
        }
    };
    (storage, len as libc::socklen_t)
}

fn from_sockaddr(storage: &libc::sockaddr_storage) -> io::Result<SocketAddr> {
    match storage.ss_family as libc::c_int {
        libc::AF_INET => {
            // SAFETY: the family says the storage holds a sockaddr_in.
            let sin: libc::sockaddr_in =
                unsafe { std::ptr::read((storage as *const libc::sockaddr_storage).cast()) };
            let ip = Ipv4Addr::from(sin.sin_addr.s_addr.to_ne_bytes());
            Ok(SocketAddr::V4(SocketAddrV4::new(ip, u16::from_be(sin.sin_port))))
        }
        libc::AF_INET6 => {
            // SAFETY: the family says the storage holds a sockaddr_in6.
            let sin6: libc::sockaddr_in6 =
                unsafe { std::ptr::read((storage as *const libc::sockaddr_storage).cast()) };
            let ip = Ipv6Addr::from(sin6.sin6_addr.s6_addr);
            Ok(SocketAddr::V6(SocketAddrV6::new(
                ip,
                u16::from_be(sin6.sin6_port),
                sin6.sin6_flowinfo,
                sin6.sin6_scope_id,
            )))
        }
        _ => Err(io::Error::new(io::ErrorKind::InvalidData, "unexpected address family")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;
    use std::net::{TcpListener, TcpStream};
    use std::os::fd::AsFd;

    /// One buffer goes by `sendto`, several by `sendmsg`; with `more` or without, the peer reads
    /// every byte in order.
    #[test]
    fn one_buffer_and_several_arrive_whole() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (mut server, _) = listener.accept().unwrap();
        let parts: [&[u8]; 3] = [b"HTTP/1.1 200 OK\r\n", b"Content-Length: 2\r\n\r\n", b"hi"];
        let sent = send_vectored(client.as_fd(), &[IoSlice::new(parts[0])], true).unwrap();
        assert_eq!(sent, parts[0].len());
        let rest: Vec<IoSlice<'_>> = parts[1..].iter().map(|p| IoSlice::new(p)).collect();
        assert_eq!(send_vectored(client.as_fd(), &rest, false).unwrap(), parts[1].len() + parts[2].len());
        let mut got = vec![0; parts.concat().len()];
        server.read_exact(&mut got).unwrap();
        assert_eq!(got, parts.concat());
    }
}
