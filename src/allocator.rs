//! The C allocator's two knobs the daemon turns, so that its memory stays flat for years.
//!
//! kioskpay allocates through the system allocator, glibc's `malloc` on the boards it ships
//! for. glibc gives every thread that allocates while the others hold theirs an arena of its
//! own, up to eight per core, and an arena keeps the high-water mark of what its threads ever
//! held, cut into free chunks that other arenas cannot use. Much of the daemon's allocating
//! happens on tokio's blocking pool, whose threads come and go (journal appends, HTTP calls, the journal's
//! compaction), so every burst can land in an arena that has not been used for a while: issue
//! 13 measured the anonymous memory going 4.9 → 26.7 MB over three compactions, and 7.8 MB with
//! `MALLOC_ARENA_MAX=1`. `kioskpay bench` (the packaged x86_64 build, 10,005 payments, five
//! compactions) measured 30.3 MiB of anonymous memory at the end without these knobs, 5.6
//! MiB with the arena cap and the trim, and 2.4 MiB with the mmap threshold fixed too (1.3
//! MiB after 100 payments, 2.3 MiB after 5,000).
//!
//! - [`limit_arenas`] caps the arenas at [`ARENAS`] before the first thread starts: the daemon
//!   runs one payment at a time, so threads seldom allocate at the same instant and a shared
//!   arena's lock is not contended. It also keeps big blocks out of the heap.
//! - [`release_free`] hands the free pages inside every arena back to the kernel
//!   (`malloc_trim`), after the one job that allocates a whole journal's worth and frees it.
//!
//! Elsewhere (musl, another OS) both do nothing: those allocators keep no per-thread arenas.

/// Arenas the daemon allows: two, so that the async workers and a blocking thread that
/// happen to allocate at once do not queue on one lock.
pub const ARENAS: i32 = 2;

/// Blocks at least this big get pages of their own (`mmap`), returned whole when freed.
pub const MMAP_THRESHOLD: i32 = 128 * 1024;

/// Caps glibc's arenas at [`ARENAS`] and fixes its mmap threshold at [`MMAP_THRESHOLD`]. Call
/// before any thread is started; later threads use the existing arenas. Returns whether the
/// allocator took both (always `false` off glibc); glibc refusing is logged as a warning.
///
/// The threshold is glibc's default, but glibc raises it each time a mapped block is freed
/// (up to 32 MiB), so after the first compaction the next one's buffers (the journal's bytes,
/// its line index, the rewritten file: megabytes) come from the heap, where the small
/// long-lived allocations made meanwhile pin their pages. Setting it turns that off.
pub fn limit_arenas() -> bool {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        // SAFETY: mallopt only sets tunables of the allocator: a count and a size in bytes.
        let (arenas, threshold) = unsafe {
            (
                libc::mallopt(libc::M_ARENA_MAX, ARENAS),
                libc::mallopt(libc::M_MMAP_THRESHOLD, MMAP_THRESHOLD),
            )
        };
        let took = arenas == 1 && threshold == 1;
        if !took {
            tracing::warn!(
                arenas,
                threshold,
                "glibc refused the arena cap or the mmap threshold; memory may grow with each \
                 journal compaction (set MALLOC_ARENA_MAX=2 and MALLOC_MMAP_THRESHOLD_=131072 \
                 in the unit's environment instead)"
            );
        }
        took
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    {
        false
    }
}

/// Returns the free pages of every arena to the kernel. It walks each arena's free chunks
/// under that arena's lock, so call it where nobody waits: after a compaction, with the result
/// on screen. Returns whether any memory went back.
pub fn release_free() -> bool {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        // SAFETY: malloc_trim only returns free memory; no live allocation moves.
        unsafe { libc::malloc_trim(0) == 1 }
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    {
        false
    }
}

#[cfg(all(test, target_os = "linux", target_env = "gnu"))]
mod tests {
    use super::*;

    #[test]
    fn glibc_takes_the_arena_cap_and_the_mmap_threshold() {
        assert!(limit_arenas());
    }

    #[test]
    fn freed_memory_goes_back_to_the_kernel() {
        // Enough small blocks that glibc keeps them in its heap instead of mmap-ing each, then
        // all freed but the last, which pins the heap's top: only a trim can return the rest.
        let blocks: Vec<Vec<u8>> = (0..4_000).map(|i| vec![i as u8; 4_000]).collect();
        let last = blocks.last().cloned();
        drop(blocks);
        assert!(release_free());
        drop(last);
    }
}
