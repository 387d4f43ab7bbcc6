//! The process's own figures, read from `/proc/self` at scrape time, and the data folder's file
//! system (Linux; elsewhere absent).

/// Resident memory, open file descriptors and CPU seconds (user plus system).
#[derive(Clone, Copy, Debug, Default)]
pub struct ProcessFigures {
    /// Resident set size in bytes.
    pub resident_bytes: Option<u64>,
    /// Open file descriptors.
    pub open_fds: Option<u64>,
    /// CPU time used, user plus system, in seconds.
    pub cpu_seconds: Option<f64>,
}

/// Reads this process's figures now.
pub fn read() -> ProcessFigures {
    ProcessFigures {
        resident_bytes: resident_bytes(),
        open_fds: std::fs::read_dir("/proc/self/fd")
            .ok()
            .map(|entries| entries.count() as u64),
        cpu_seconds: cpu_seconds(),
    }
}

fn resident_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|line| line.starts_with("VmRSS:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

fn cpu_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // The command name (field 2) may hold spaces; the fields after its closing parenthesis are
    // plain: state is field 3, utime and stime fields 14 and 15.
    let after = stat.rsplit_once(')')?.1;
    let fields: Vec<&str> = after.split_whitespace().collect();
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    // SAFETY: sysconf only reads a configuration value.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    (ticks > 0).then(|| (utime + stime) as f64 / ticks as f64)
}

/// Bytes available to this process and the size of the file system holding `dir`.
pub fn disk(dir: &std::path::Path) -> Option<(u64, u64)> {
    use std::os::unix::ffi::OsStrExt;
    let path = std::ffi::CString::new(dir.as_os_str().as_bytes()).ok()?;
    // SAFETY: statvfs writes into the zeroed struct it is given and reads the C string.
    let mut stat: libc::statvfs = unsafe { std::mem::zeroed() };
    if unsafe { libc::statvfs(path.as_ptr(), &mut stat) } != 0 {
        return None;
    }
    let block = stat.f_frsize as u64;
    Some((stat.f_bavail as u64 * block, stat.f_blocks as u64 * block))
}

#[cfg(test)]
mod tests {
    #[test]
    fn this_process_has_memory_descriptors_and_cpu_time() {
        let figures = super::read();
        assert!(
            figures.resident_bytes.is_some_and(|b| b > 1024 * 1024),
            "{figures:?}"
        );
        assert!(figures.open_fds.is_some_and(|n| n >= 3), "{figures:?}");
        assert!(figures.cpu_seconds.is_some_and(|s| s >= 0.0), "{figures:?}");
    }

    #[test]
    fn the_disk_under_a_folder_has_a_size_and_free_space() {
        let (free, size) = super::disk(&std::env::temp_dir()).unwrap();
        assert!(size > 0 && free <= size, "{free} of {size}");
        assert!(super::disk(std::path::Path::new("/no/such/folder")).is_none());
    }
}
