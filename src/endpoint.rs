//! What a socket is for: [`Role`], and [`Endpoint`], a socket descriptor with its role — a
//! listening socket (bound here or passed by systemd) or a connection accepted from one. One type
//! for all three, so start-up, the acceptor and the workers pass the same thing along.

use std::os::fd::OwnedFd;

/// Which listener a socket belongs to, and so what its requests get.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// The public static-file listener.
    Public,
    /// The admin listener (`/healthz`, `/metrics`, `/stats`).
    Admin,
}

/// A socket and what it serves.
pub struct Endpoint {
    pub fd: OwnedFd,
    pub role: Role,
}
