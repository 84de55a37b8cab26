//! The OS account test PostgreSQL servers run as: `postgres` when the tests run as root (PostgreSQL
//! refuses to run as root), else the current user.

use std::ffi::CString;
use std::io;
use std::os::unix::fs as unix_fs;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::Command;
use std::ptr;

/// The OS user that runs `initdb` and `postgres` when the tests run as root. The Debian
/// `postgresql` package creates it.
pub const SERVER_OS_USER: &str = "postgres";

/// A user and its primary group.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OsUser {
    pub uid: u32,
    pub gid: u32,
}

/// Whether this process runs with an effective user ID of 0.
pub fn running_as_root() -> bool {
    // SAFETY: geteuid(2) has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

/// The user and primary group of the account named `name`, if there is one.
pub fn lookup_user(name: &str) -> Option<OsUser> {
    let name = CString::new(name).ok()?;
    let mut buffer: Vec<libc::c_char> = vec![0; 4096];
    loop {
        // SAFETY: passwd is a plain C struct of integers and pointers, valid when zeroed.
        let mut entry: libc::passwd = unsafe { std::mem::zeroed() };
        let mut found: *mut libc::passwd = ptr::null_mut();
        // SAFETY: every pointer is valid for the call: `name` is NUL-terminated, `buffer` has
        // `buffer.len()` writable bytes, and `entry`/`found` are live locals. The strings that
        // `entry` points to (inside `buffer`) are not read; only its integer fields are.
        let status =
            unsafe { libc::getpwnam_r(name.as_ptr(), &mut entry, buffer.as_mut_ptr(), buffer.len(), &mut found) };
        match status {
            0 if found.is_null() => return None,
            0 => return Some(OsUser { uid: entry.pw_uid, gid: entry.pw_gid }),
            libc::ERANGE if buffer.len() < 1 << 20 => buffer.resize(buffer.len() * 2, 0),
            _ => return None,
        }
    }
}

/// The account the servers run as: `None` (this process's own user) unless running as root, in
/// which case it is [`SERVER_OS_USER`].
///
/// # Panics
///
/// If running as root and there is no [`SERVER_OS_USER`] account.
pub fn server_user() -> Option<OsUser> {
    if !running_as_root() {
        return None;
    }
    let user = lookup_user(SERVER_OS_USER).unwrap_or_else(|| {
        panic!(
            "the tests run as root, which PostgreSQL refuses, and there is no `{SERVER_OS_USER}` OS \
             user to run it as; installing PostgreSQL creates one (`apt-get install postgresql`, or \
             scripts/install-deps)"
        )
    });
    Some(user)
}

/// Makes `command` run as `user` (when given).
pub(crate) fn run_as(command: &mut Command, user: Option<OsUser>) {
    if let Some(user) = user {
        command.uid(user.uid).gid(user.gid);
    }
}

/// Gives `path` to `user` (when given), so the server can write there.
pub(crate) fn give_to(path: &Path, user: Option<OsUser>) -> io::Result<()> {
    match user {
        Some(user) => unix_fs::chown(path, Some(user.uid), Some(user.gid)),
        None => Ok(()),
    }
}
