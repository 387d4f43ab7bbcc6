//! Processes inside the test network's namespaces: spawning (with a fake clock and a slow-fsync
//! shim preloaded when asked), signals by pid, and the shim itself, built by the harness.

use std::fs::File;
use std::os::fd::AsRawFd;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use anyhow::{bail, Context, Result};

/// Where Debian's `libfaketime` package puts the multi-threaded library.
const FAKETIME_LIBRARIES: &[&str] = &[
    "/usr/lib/x86_64-linux-gnu/faketime/libfaketimeMT.so.1",
    "/usr/lib/aarch64-linux-gnu/faketime/libfaketimeMT.so.1",
    "/usr/lib/faketime/libfaketimeMT.so.1",
];

/// The libfaketime library to preload, if installed.
pub fn faketime_library() -> Option<PathBuf> {
    FAKETIME_LIBRARIES
        .iter()
        .map(PathBuf::from)
        .find(|p| p.is_file())
}

/// The `LD_PRELOAD` shim that delays `fsync`, `fdatasync` and `sync_file_range` (what sled's
/// log uses) by the number of milliseconds in
/// the file named by `LJP_SLOW_FSYNC_FILE` (re-read at most every 100 ms; 0 or absent: no delay).
const SLOW_FSYNC_C: &str = r#"
#define _GNU_SOURCE
#include <dlfcn.h>
#include <fcntl.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

static long cached_ms = 0;
static long checked_at_ms = -1000;

static long now_ms(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec * 1000 + t.tv_nsec / 1000000;
}

static long delay_ms(void) {
    const char *path = getenv("LJP_SLOW_FSYNC_FILE");
    if (path == NULL) return 0;
    long now = now_ms();
    if (now - __atomic_load_n(&checked_at_ms, __ATOMIC_RELAXED) >= 100) {
        char buf[32] = {0};
        long value = 0;
        int fd = open(path, O_RDONLY | O_CLOEXEC);
        if (fd >= 0) {
            ssize_t n = read(fd, buf, sizeof buf - 1);
            close(fd);
            if (n > 0) value = strtol(buf, NULL, 10);
        }
        __atomic_store_n(&cached_ms, value, __ATOMIC_RELAXED);
        __atomic_store_n(&checked_at_ms, now, __ATOMIC_RELAXED);
    }
    return __atomic_load_n(&cached_ms, __ATOMIC_RELAXED);
}

static void slow_down(void) {
    long ms = delay_ms();
    if (ms > 0) {
        struct timespec t = { ms / 1000, (ms % 1000) * 1000000L };
        nanosleep(&t, NULL);
    }
}

int fsync(int fd) {
    static int (*real)(int) = NULL;
    if (real == NULL) real = (int (*)(int))dlsym(RTLD_NEXT, "fsync");
    slow_down();
    return real(fd);
}

int fdatasync(int fd) {
    static int (*real)(int) = NULL;
    if (real == NULL) real = (int (*)(int))dlsym(RTLD_NEXT, "fdatasync");
    slow_down();
    return real(fd);
}

/* sled writes its log with pwrite + sync_file_range(WAIT_AFTER), not fsync. */
int sync_file_range(int fd, off64_t offset, off64_t nbytes, unsigned int flags) {
    static int (*real)(int, off64_t, off64_t, unsigned int) = NULL;
    if (real == NULL)
        real = (int (*)(int, off64_t, off64_t, unsigned int))dlsym(RTLD_NEXT, "sync_file_range");
    slow_down();
    return real(fd, offset, nbytes, flags);
}
"#;

/// Builds the slow-fsync shim into `dir` with the system C compiler; returns its path.
pub fn build_slow_fsync_shim(dir: &Path) -> Result<PathBuf> {
    let source = dir.join("slowfsync.c");
    let library = dir.join("slowfsync.so");
    std::fs::write(&source, SLOW_FSYNC_C)?;
    let source_arg = source.to_string_lossy().into_owned();
    let library_arg = library.to_string_lossy().into_owned();
    crate::net::sh(
        "cc",
        &[
            "-shared",
            "-fPIC",
            "-O2",
            "-o",
            &library_arg,
            &source_arg,
            "-ldl",
        ],
    )
    .context("build the slow-fsync shim")?;
    Ok(library)
}

/// What to preload into a process, and the files that steer it.
#[derive(Clone, Debug, Default)]
pub struct Preload {
    /// libfaketime, steered by this timestamp file (`+600`, `-3600`, `+0`).
    pub faketime: Option<(PathBuf, PathBuf)>,
    /// The slow-fsync shim, steered by this delay file (milliseconds).
    pub slow_fsync: Option<(PathBuf, PathBuf)>,
}

/// How to start one process.
pub struct Spawn<'a> {
    /// The network namespace to run in.
    pub netns: &'a str,
    /// The program.
    pub program: &'a Path,
    /// Its arguments.
    pub args: Vec<String>,
    /// Extra environment.
    pub env: Vec<(String, String)>,
    /// What to preload.
    pub preload: Preload,
    /// Where its stdout and stderr go (appended).
    pub log: &'a Path,
}

/// Starts a process inside a network namespace: the child joins the namespace (setns) between
/// fork and exec, so the pid returned is the program's own, for signals.
pub fn spawn(spec: Spawn<'_>) -> Result<Child> {
    let ns_path = format!("/var/run/netns/{}", spec.netns);
    let ns = File::open(&ns_path).with_context(|| format!("open {ns_path}"))?;
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(spec.log)
        .with_context(|| format!("open {}", spec.log.display()))?;
    let mut command = Command::new(spec.program);
    command
        .args(&spec.args)
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log);
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("LEDGER_") {
            command.env_remove(key);
        }
    }
    command.env("NO_COLOR", "1");
    for (key, value) in &spec.env {
        command.env(key, value);
    }
    let mut preload = Vec::new();
    if let Some((library, file)) = &spec.preload.slow_fsync {
        preload.push(library.to_string_lossy().into_owned());
        command.env("LJP_SLOW_FSYNC_FILE", file);
    }
    if let Some((library, file)) = &spec.preload.faketime {
        preload.push(library.to_string_lossy().into_owned());
        command
            .env("FAKETIME_TIMESTAMP_FILE", file)
            // Re-read the offset at most once a second; the monotonic clock stays real, as it
            // does when NTP steps a real machine's clock.
            .env("FAKETIME_CACHE_DURATION", "1")
            .env("FAKETIME_DONT_FAKE_MONOTONIC", "1");
    }
    if !preload.is_empty() {
        command.env("LD_PRELOAD", preload.join(":"));
    }
    let fd = ns.as_raw_fd();
    // SAFETY: setns(2) is async-signal-safe; the closure touches nothing but the fd, which stays
    // open in the parent (`ns` lives until after spawn returns).
    unsafe {
        command.pre_exec(move || {
            if libc::setns(fd, libc::CLONE_NEWNET) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let child = command
        .spawn()
        .with_context(|| format!("spawn {} in {}", spec.program.display(), spec.netns))?;
    drop(ns);
    Ok(child)
}

/// Sends `signal` to `pid`, a process this harness started.
pub fn signal(pid: u32, signal: libc::c_int) -> Result<()> {
    let pid = libc::pid_t::try_from(pid)?;
    // SAFETY: kill(2) on a child of this harness that it has not reaped.
    if unsafe { libc::kill(pid, signal) } != 0 {
        bail!(
            "signal {signal} to {pid}: {}",
            std::io::Error::last_os_error()
        );
    }
    Ok(())
}
