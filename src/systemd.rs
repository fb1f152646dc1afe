//! systemd integration without libsystemd: socket activation and readiness notification, each a
//! few lines over a documented protocol (sd_listen_fds(3), sd_notify(3)).
//!
//! **Socket activation** ([`listen_fds`]). When `LISTEN_PID` is this process and `LISTEN_FDS=n`,
//! descriptors 3 to 3+n−1 are listening sockets that systemd opened (`atomserve.socket`), and
//! atomserve serves on them instead of binding `--listen` — so port 80 needs no privilege, and a
//! restart loses no connection: the socket, and the connections waiting in it, stay with systemd.
//! `LISTEN_FDNAMES` (colon-separated, from `FileDescriptorName=`) may name one socket `admin`:
//! that one serves the admin endpoints, every other one the site; with no socket named `admin`
//! the admin listener is bound from `--admin-listen` as usual. Each descriptor must be a listening
//! TCP socket (`SO_DOMAIN`, `SO_TYPE`, `SO_ACCEPTCONN`) and is made close-on-exec and
//! non-blocking. The three variables are removed from the environment either way, so that a
//! child process could never take them for its own.
//!
//! **Readiness** ([`Notifier`]). With `NOTIFY_SOCKET` set (a path, or `@name` in the abstract
//! namespace), atomserve sends one datagram per state change: `READY=1` once the snapshot is
//! loaded, the workers run and the listeners accept; `RELOADING=1` with `MONOTONIC_USEC=` when a
//! reload starts, and `READY=1` when it ends, loaded or not; `STOPPING=1` when the drain begins.
//! Each carries a `STATUS=` line for `systemctl status`. Sending is best effort and never blocks:
//! a lost notification makes systemd time out, it cannot stall the server.

use std::env;
use std::ffi::OsStr;
use std::io;
use std::os::fd::{AsFd, RawFd};
use std::os::linux::net::SocketAddrExt;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::net::{SocketAddr, UnixDatagram};

use crate::endpoint::{Endpoint, Role};
use crate::sync::Arc;
use crate::sys::socket;
use crate::sys::{clock, fd};

/// The first descriptor systemd passes (`SD_LISTEN_FDS_START`).
const FIRST_FD: RawFd = 3;
/// The `FileDescriptorName=` that marks the admin listener.
pub const ADMIN_NAME: &str = "admin";

/// The sockets systemd passed to this process, or `None` when it passed none (then atomserve
/// binds its own). Removes `LISTEN_PID`, `LISTEN_FDS` and `LISTEN_FDNAMES` from the environment.
///
/// Call it first thing at start-up, before the process opens a descriptor of its own and before
/// any other thread exists (it changes the environment): descriptors 3 and up are taken over on
/// the word of the environment.
pub fn listen_fds() -> io::Result<Option<Vec<Endpoint>>> {
    let var = |name| env::var(name).ok();
    let plan = plan(std::process::id(), var("LISTEN_PID"), var("LISTEN_FDS"), var("LISTEN_FDNAMES"));
    for name in ["LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES"] {
        env::remove_var(name);
    }
    let Some(roles) = plan.map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))? else {
        return Ok(None);
    };
    let mut passed = Vec::with_capacity(roles.len());
    for (i, role) in roles.into_iter().enumerate() {
        let raw = FIRST_FD + i as RawFd;
        // SAFETY: `plan` checked that LISTEN_PID is this process, so the descriptors are ours to
        // take, and the caller runs this before the process opened any descriptor of its own.
        let fd = unsafe { fd::adopt_inherited(raw) }
            .map_err(|e| io::Error::new(e.kind(), format!("fd {raw}: {e}")))?;
        if !socket::is_tcp_listener(fd.as_fd()).unwrap_or(false) {
            let what = format!("fd {raw} is not a listening TCP socket (ListenStream= with an address)");
            return Err(io::Error::new(io::ErrorKind::InvalidInput, what));
        }
        passed.push(Endpoint { fd, role });
    }
    Ok(Some(passed))
}

/// Decides from the three variables which descriptors to take and what each serves, following
/// sd_listen_fds(3): no `LISTEN_PID`, or another process's, or `LISTEN_FDS=0`, means none.
fn plan(
    pid: u32,
    listen_pid: Option<String>,
    listen_fds: Option<String>,
    names: Option<String>,
) -> Result<Option<Vec<Role>>, String> {
    let Some(listen_pid) = listen_pid else { return Ok(None) };
    if listen_pid.trim().parse::<u32>().map_err(|_| format!("LISTEN_PID={listen_pid:?}"))? != pid {
        return Ok(None); // meant for another process (our parent, say)
    }
    let n: usize = match listen_fds {
        Some(n) => n.trim().parse().map_err(|_| format!("LISTEN_FDS={n:?} is not a number"))?,
        None => return Ok(None),
    };
    if n == 0 {
        return Ok(None);
    }
    if n > 64 {
        return Err(format!("LISTEN_FDS={n}: more sockets than atomserve would ever listen on"));
    }
    let roles: Vec<Role> = match names {
        None => vec![Role::Public; n],
        Some(names) => {
            let names: Vec<&str> = names.split(':').collect();
            if names.len() != n {
                return Err(format!("LISTEN_FDNAMES has {} names for LISTEN_FDS={n}", names.len()));
            }
            names.iter().map(|&name| if name == ADMIN_NAME { Role::Admin } else { Role::Public }).collect()
        }
    };
    if roles.iter().filter(|&&r| r == Role::Admin).count() > 1 {
        return Err(format!("more than one socket is named {ADMIN_NAME:?}"));
    }
    if !roles.contains(&Role::Public) {
        return Err(format!("every passed socket is named {ADMIN_NAME:?}: none to serve the site on"));
    }
    Ok(Some(roles))
}

/// Sends sd_notify(3) datagrams to the service manager; does nothing without `NOTIFY_SOCKET`.
/// Cheap to clone (the reload thread has one).
#[derive(Clone, Default)]
pub struct Notifier {
    target: Option<Arc<(UnixDatagram, SocketAddr)>>,
}

impl Notifier {
    /// From `NOTIFY_SOCKET`, which it removes from the environment (so, like [`listen_fds`], call
    /// it before other threads exist). An address it cannot use is logged and ignored.
    pub fn from_env() -> Notifier {
        let Some(path) = env::var_os("NOTIFY_SOCKET") else { return Notifier::default() };
        env::remove_var("NOTIFY_SOCKET");
        match Self::connect(path.as_bytes()) {
            Ok(target) => Notifier { target: Some(Arc::new(target)) },
            Err(e) => {
                crate::log!("NOTIFY_SOCKET={}: {e}; not notifying systemd", path.to_string_lossy());
                Notifier::default()
            }
        }
    }

    fn connect(path: &[u8]) -> io::Result<(UnixDatagram, SocketAddr)> {
        let addr = match path {
            [b'@', name @ ..] => SocketAddr::from_abstract_name(name)?,
            [b'/', ..] => SocketAddr::from_pathname(OsStr::from_bytes(path))?,
            _ => return Err(io::Error::new(io::ErrorKind::Unsupported, "neither a path nor @abstract")),
        };
        let socket = UnixDatagram::unbound()?;
        // A full receive queue must cost a lost notification, never a stalled acceptor.
        socket.set_nonblocking(true)?;
        Ok((socket, addr))
    }

    /// Whether there is a service manager to notify.
    pub fn is_enabled(&self) -> bool {
        self.target.is_some()
    }

    /// Sends one notification (`KEY=value` lines); errors are ignored (see the module docs).
    pub fn send(&self, message: &str) {
        if let Some(target) = &self.target {
            let (socket, addr) = &**target;
            let _ = socket.send_to_addr(message.as_bytes(), addr);
        }
    }

    /// `READY=1`: serving (after start-up, or after a reload).
    pub fn ready(&self, status: &str) {
        self.send(&format!("READY=1\nSTATUS={status}\n"));
    }

    /// `RELOADING=1` with the time it began, as systemd's `Type=notify-reload` wants it.
    pub fn reloading(&self) {
        self.send(&format!("RELOADING=1\nMONOTONIC_USEC={}\nSTATUS=reloading\n", clock::monotonic_usec()));
    }

    /// `STOPPING=1`: the drain began.
    pub fn stopping(&self, status: &str) {
        self.send(&format!("STOPPING=1\nSTATUS={status}\n"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &str) -> Option<String> {
        Some(v.to_string())
    }

    #[test]
    fn nothing_passed_means_bind_as_usual() {
        assert_eq!(plan(7, None, s("2"), None), Ok(None));
        assert_eq!(plan(7, s("8"), s("2"), None), Ok(None), "another process's sockets");
        assert_eq!(plan(7, s("7"), s("0"), None), Ok(None));
        assert_eq!(plan(7, s("7"), None, None), Ok(None));
    }

    #[test]
    fn names_choose_the_admin_listener() {
        assert_eq!(plan(7, s("7"), s("2"), None), Ok(Some(vec![Role::Public, Role::Public])));
        assert_eq!(
            plan(7, s("7"), s("3"), s("http:admin:https")),
            Ok(Some(vec![Role::Public, Role::Admin, Role::Public]))
        );
        // systemd names unnamed sockets after the unit ("atomserve.socket"): public.
        assert_eq!(plan(7, s("7"), s("1"), s("atomserve.socket")), Ok(Some(vec![Role::Public])));
    }

    #[test]
    fn inconsistent_variables_are_errors() {
        assert!(plan(7, s("seven"), s("1"), None).is_err());
        assert!(plan(7, s("7"), s("x"), None).is_err());
        assert!(plan(7, s("7"), s("2"), s("http")).is_err());
        assert!(plan(7, s("7"), s("2"), s("admin:admin")).is_err());
        assert!(plan(7, s("7"), s("1"), s("admin")).is_err());
        assert!(plan(7, s("7"), s("1000"), None).is_err());
    }
}
