//! Giving freed heap memory back to the operating system after a large removal (archiving) or
//! the end of a burst of sagas.
//!
//! Allocators keep freed blocks for reuse. After a deal is archived, its many small allocations
//! (ids, investments, sagas) are freed together, yet the node's RSS would stay at its peak:
//! nothing else asks for that memory. Releasing once per archiving returns it.
//!
//! The `ledger-node` binary allocates through jemalloc (`main.rs`), which returns dirty pages by
//! itself after its decay time (10 s); a purge returns them now. Tests and simulations that run
//! a node in their own process use the system allocator: glibc's trim covers them.

/// Returns the allocators' free pages to the operating system, where the allocator allows it.
pub fn release_freed() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only walks glibc's own arenas under their locks; it has no
    // preconditions and is safe to call from any thread at any time.
    unsafe {
        libc::malloc_trim(0);
    }
    // "arena.<MALLCTL_ARENAS_ALL>.purge": every arena's unused dirty pages, at once.
    const PURGE_ALL: &std::ffi::CStr = c"arena.4096.purge";
    // SAFETY: a purge takes no value and returns none (all pointers null, length 0); mallctl
    // checks the name and answers an error code for one it does not know.
    unsafe {
        tikv_jemalloc_sys::mallctl(
            PURGE_ALL.as_ptr(),
            std::ptr::null_mut(),
            std::ptr::null_mut(),
            std::ptr::null_mut(),
            0,
        );
    }
}
