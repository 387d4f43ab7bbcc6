//! Freezing a process this harness started (SIGSTOP), with a guard that always thaws it.

/// A frozen process; dropping the guard sends SIGCONT, so a failing test never leaves a stopped
/// process behind.
#[must_use = "the process is thawed when the guard is dropped"]
pub struct Frozen {
    pid: libc::pid_t,
}

impl Frozen {
    /// Sends SIGSTOP to `pid` (a node process of a [`crate::TestCluster`]).
    pub fn stop(pid: u32) -> Frozen {
        let pid = libc::pid_t::try_from(pid).expect("pid fits pid_t");
        signal(pid, libc::SIGSTOP);
        Frozen { pid }
    }

    /// Thaws the process now.
    pub fn thaw(self) {
        drop(self);
    }
}

impl Drop for Frozen {
    fn drop(&mut self) {
        signal(self.pid, libc::SIGCONT);
    }
}

fn signal(pid: libc::pid_t, signal: libc::c_int) {
    // SAFETY: kill(2) on a child process the harness spawned and still owns (not reaped), so the
    // pid cannot have been reused.
    let sent = unsafe { libc::kill(pid, signal) };
    assert!(
        sent == 0 || std::thread::panicking(),
        "signal {signal} to pid {pid} failed"
    );
}
