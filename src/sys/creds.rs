//! Credentials (credentials(7)): dropping root after the listeners are bound.
//!
//! Binding port 80 needs root (or `CAP_NET_BIND_SERVICE`), serving files does not. With
//! `--user`, atomserve binds first, then gives up root for good, in the only safe order:
//! 1. `setgroups(2)` to just the target group — while still root, since it needs privilege;
//! 2. `setgid(2)` — also needs privilege, so before setuid;
//! 3. `setuid(2)` — as root this sets the real, effective and saved uid, so root cannot be
//!    regained;
//! 4. `prctl(PR_SET_NO_NEW_PRIVS)` — no exec'd program (there are none, but defence in depth)
//!    can gain privileges through set-uid bits or file capabilities.
//!
//! It runs before any other thread exists, so every thread has the dropped credentials.

use std::ffi::CString;
use std::io;

/// A user's ids.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ids {
    pub uid: u32,
    pub gid: u32,
}

/// The effective user id.
pub fn effective_uid() -> u32 {
    // SAFETY: geteuid(2) takes nothing and cannot fail.
    unsafe { libc::geteuid() }
}

/// Looks up a user by name or numeric id (`getpwnam_r(3)`): its uid and primary gid.
pub fn lookup_user(name: &str) -> io::Result<Ids> {
    let c = CString::new(name).map_err(|_| invalid("user name contains NUL"))?;
    // SAFETY: all-zero passwd is a valid out-parameter.
    let mut pwd: libc::passwd = unsafe { std::mem::zeroed() };
    let mut buf = vec![0 as libc::c_char; 16 * 1024];
    let mut result: *mut libc::passwd = std::ptr::null_mut();
    // SAFETY: every pointer is valid for the call; `buf` is writable for its length.
    let rc = unsafe { libc::getpwnam_r(c.as_ptr(), &mut pwd, buf.as_mut_ptr(), buf.len(), &mut result) };
    if rc != 0 {
        return Err(io::Error::from_raw_os_error(rc));
    }
    if !result.is_null() {
        return Ok(Ids { uid: pwd.pw_uid, gid: pwd.pw_gid });
    }
    // Not a known name: accept a numeric uid (its group defaults to the same number).
    name.parse::<u32>().map(|id| Ids { uid: id, gid: id }).map_err(|_| invalid("no such user"))
}

/// Looks up a group by name or numeric id (`getgrnam_r(3)`).
pub fn lookup_group(name: &str) -> io::Result<u32> {
    let c = CString::new(name).map_err(|_| invalid("group name contains NUL"))?;
    // SAFETY: all-zero group is a valid out-parameter.
    let mut grp: libc::group = unsafe { std::mem::zeroed() };
    let mut buf = vec![0 as libc::c_char; 16 * 1024];
    let mut result: *mut libc::group = std::ptr::null_mut();
    // SAFETY: every pointer is valid for the call; `buf` is writable for its length.
    let rc = unsafe { libc::getgrnam_r(c.as_ptr(), &mut grp, buf.as_mut_ptr(), buf.len(), &mut result) };
    if rc != 0 {
        return Err(io::Error::from_raw_os_error(rc));
    }
    if !result.is_null() {
        return Ok(grp.gr_gid);
    }
    name.parse::<u32>().map_err(|_| invalid("no such group"))
}

/// Drops to `ids` for good: setgroups, setgid, setuid, then `PR_SET_NO_NEW_PRIVS`.
pub fn drop_to(ids: Ids) -> io::Result<()> {
    let groups = [ids.gid as libc::gid_t];
    // SAFETY: `groups` is a valid array of one gid for the call.
    unsafe { syscall!(setgroups(1, groups.as_ptr()))? };
    // SAFETY: no pointers.
    unsafe { syscall!(setgid(ids.gid))? };
    // SAFETY: no pointers.
    unsafe { syscall!(setuid(ids.uid))? };
    set_no_new_privs()
}

/// `prctl(PR_SET_NO_NEW_PRIVS, 1)`: no later `execve` can gain privileges (set-uid bits, file
/// capabilities); also what an unprivileged process needs before installing a seccomp filter.
pub fn set_no_new_privs() -> io::Result<()> {
    // SAFETY: PR_SET_NO_NEW_PRIVS takes plain integer arguments; it only restricts this process.
    unsafe {
        syscall!(prctl(
            libc::PR_SET_NO_NEW_PRIVS,
            1 as libc::c_ulong,
            0 as libc::c_ulong,
            0 as libc::c_ulong,
            0 as libc::c_ulong
        ))?
    };
    Ok(())
}

fn invalid(why: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, why.to_string())
}
