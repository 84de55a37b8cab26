//! Child processes that die with the test process, even when it is killed or never runs destructors.
//!
//! Linux's parent-death signal (`prctl(PR_SET_PDEATHSIG)`) makes the kernel signal a child when
//! its parent goes away. The catch is that "parent" means the *thread* that forked the child, not
//! the process: the signal fires as soon as that thread exits, even while the rest of the process
//! lives on. Test threads come and go (libtest runs each test on its own thread; nextest runs each
//! test in its own process, but on a thread of libtest's choosing), so a child forked from a test
//! thread would be signalled when that one test ends, which would take down a cluster shared by
//! the whole process.
//!
//! So every such child is forked by one dedicated spawner thread that is started on first use and
//! never exits: it blocks on a channel whose sender lives in a `static`, which is never dropped.
//! That thread therefore ends only when the whole process does (normal exit, panic, `SIGKILL` from
//! nextest's timeout...), and then the kernel signals the child. Whoever asked for the child gets
//! its [`Child`] handle back and may wait for it from any thread, since children belong to the
//! whole thread group.

use std::io;
use std::os::unix::process::CommandExt;
use std::process::{self, Child, Command};
use std::sync::mpsc;
use std::sync::OnceLock;
use std::thread;

/// A command for the spawner thread, and where to send the outcome.
struct SpawnRequest {
    command: Command,
    signal: libc::c_int,
    reply: mpsc::Sender<io::Result<Child>>,
}

/// The spawner thread's inbox; never dropped, so the thread never exits.
static SPAWNER: OnceLock<mpsc::Sender<SpawnRequest>> = OnceLock::new();

/// Spawns `command` so that the kernel sends `signal` to the child when this test process ends,
/// however it ends.
///
/// The signal goes to the spawned process itself only (not to its children), and is lost if that
/// process executes a set-user-ID binary or changes its own user or group IDs (the ones set with
/// [`CommandExt::uid`]/[`gid`](CommandExt::gid) are applied before the signal is set up, so they
/// are fine).
///
/// # Errors
///
/// Whatever [`Command::spawn`] returns, or an error if the parent-death signal cannot be set.
pub fn spawn_dying_with_process(command: Command, signal: libc::c_int) -> io::Result<Child> {
    let (reply, outcome) = mpsc::channel();
    spawner()
        .send(SpawnRequest { command, signal, reply })
        .map_err(|_| io::Error::other("the child-spawner thread is gone"))?;
    outcome.recv().map_err(|_| io::Error::other("the child-spawner thread dropped a spawn request"))?
}

fn spawner() -> &'static mpsc::Sender<SpawnRequest> {
    SPAWNER.get_or_init(|| {
        let (requests, inbox) = mpsc::channel::<SpawnRequest>();
        thread::Builder::new()
            .name("qsess-child-spawner".to_owned())
            .spawn(move || {
                // Ends only if every sender is dropped, and the one in SPAWNER never is.
                for SpawnRequest { mut command, signal, reply } in inbox {
                    let _ = reply.send(spawn_with_death_signal(&mut command, signal));
                }
            })
            .unwrap_or_else(|e| panic!("cannot start the child-spawner thread: {e}"));
        requests
    })
}

/// Spawns `command` with a parent-death signal; must run on the spawner thread.
fn spawn_with_death_signal(command: &mut Command, signal: libc::c_int) -> io::Result<Child> {
    let parent = libc::pid_t::try_from(process::id()).map_err(io::Error::other)?;
    let signal = libc::c_ulong::try_from(signal).map_err(io::Error::other)?;
    // SAFETY: the hook runs in the forked child before exec, where only async-signal-safe calls
    // are allowed: it makes two raw syscalls (prctl, getppid) and builds errors from errno values
    // without allocating. std runs it after applying the command's uid and gid, so the setuid does
    // not clear the signal.
    unsafe {
        command.pre_exec(move || {
            if libc::prctl(libc::PR_SET_PDEATHSIG, signal, 0, 0, 0) == -1 {
                return Err(io::Error::last_os_error());
            }
            // If this process died between fork and prctl, the signal will never come: the child
            // has already been reparented, so refuse to exec rather than run unsupervised.
            if libc::getppid() != parent {
                return Err(io::Error::from_raw_os_error(libc::ESRCH));
            }
            Ok(())
        });
    }
    command.spawn()
}
