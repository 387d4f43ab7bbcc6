//! Giving freed heap memory back to the operating system after a large removal (archiving).
//!
//! glibc's allocator keeps freed small blocks in its arenas for reuse. After a deal is
//! archived, its many small allocations (ids, investments, sagas) are freed together, yet the
//! node's RSS would stay at its peak: nothing else asks for that memory. Trimming once per
//! archiving returns it.

/// Returns the allocator's free pages to the operating system, where the allocator allows it.
pub fn release_freed() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only walks glibc's own arenas under their locks; it has no
    // preconditions and is safe to call from any thread at any time.
    unsafe {
        libc::malloc_trim(0);
    }
}
