//! Memory for what a request reads at random among all tenants — the host index and the
//! tenant array — on transparent huge pages, and nothing else.
//!
//! With 100 000 tenants these are about 17 MB read at random, one line a request each. On
//! 4 KiB pages that is some 4 000 pages, more than a core's TLB holds, so each read was a
//! page walk as well as a cache miss (under a hypervisor, a walk of two page tables). On
//! 2 MiB pages the same memory is nine pages. Huge pages everywhere are what they cost
//! elsewhere: each first touch zeroes 2 MiB, so a reload's many small allocations took longer
//! and RSS grew. So the process allows them only where it asks for them ([`only_where_advised`]),
//! and asks ([`HugePages`]) only for these dense arrays, which a build writes whole anyway.
//! What is still a cache miss is asked for early where the request allows ([`prefetch`]).

use std::alloc::Layout;
use std::ptr::NonNull;

use allocator_api2::alloc::{AllocError, Allocator, Global};

/// Starts loading the cache line at `at`, for a read that comes later: a miss that arrives
/// while the request does other work is one it does not wait for.
#[inline(always)]
pub fn prefetch<T>(at: &T) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: a prefetch is a hint; it reads nothing architecturally and cannot fault.
    unsafe {
        use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
        _mm_prefetch::<_MM_HINT_T0>((at as *const T).cast());
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = at;
}

/// A vector in memory advised for huge pages.
pub type HugeVec<T> = allocator_api2::vec::Vec<T, HugePages>;

/// Blocks of 2 MiB and more mapped on their own and advised for transparent huge pages; smaller
/// ones from the global allocator. A mapping of its own, not the allocator's memory advised:
/// the advice would outlive the block, and small allocations that later reused its pages got
/// huge pages too (RSS grew by 8 MB at start). And a reload's old table goes back to the
/// system at once.
#[derive(Clone, Copy, Debug, Default)]
pub struct HugePages;

const HUGE_PAGE: usize = 2 << 20;
const PAGE: usize = 4096;

/// The length of the mapping for a block of `size` bytes: whole pages.
fn mapped(size: usize) -> usize {
    size.next_multiple_of(PAGE)
}

// SAFETY: a small block comes from, and goes back to, the global allocator; a large one is a
// private anonymous mapping of at least its size, aligned to 2 MiB (more than any type
// asks), unmapped exactly once, by `deallocate` with the layout it was made for.
unsafe impl Allocator for HugePages {
    fn allocate(&self, layout: Layout) -> Result<NonNull<[u8]>, AllocError> {
        if layout.size() < HUGE_PAGE {
            return Global.allocate(layout);
        }
        let len = mapped(layout.size());
        // Mapped with room to start on a 2 MiB boundary; the ends outside are given back.
        // SAFETY: a new private anonymous mapping; no existing memory is named.
        let base = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len + HUGE_PAGE,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        if base == libc::MAP_FAILED {
            return Err(AllocError);
        }
        let base = base as usize;
        let start = base.next_multiple_of(HUGE_PAGE);
        // SAFETY: both ranges are inside the mapping just made and outside [start, start+len);
        // the advice names whole huge pages inside the block (its partial last one is left on
        // small pages: touching it would zero 2 MiB for a few bytes).
        unsafe {
            if start > base {
                libc::munmap(base as *mut libc::c_void, start - base);
            }
            let end = base + len + HUGE_PAGE;
            if end > start + len {
                libc::munmap((start + len) as *mut libc::c_void, end - start - len);
            }
            let whole = layout.size() & !(HUGE_PAGE - 1);
            libc::madvise(start as *mut libc::c_void, whole, libc::MADV_HUGEPAGE);
        }
        let block = std::ptr::slice_from_raw_parts_mut(start as *mut u8, layout.size());
        NonNull::new(block).ok_or(AllocError)
    }

    fn allocate_zeroed(&self, layout: Layout) -> Result<NonNull<[u8]>, AllocError> {
        if layout.size() < HUGE_PAGE {
            return Global.allocate_zeroed(layout);
        }
        // A new anonymous mapping reads as zeroes; writing them would touch every page.
        self.allocate(layout)
    }

    unsafe fn deallocate(&self, ptr: NonNull<u8>, layout: Layout) {
        if layout.size() < HUGE_PAGE {
            // SAFETY: the caller passes a block this allocator gave, so `Global`'s.
            return unsafe { Global.deallocate(ptr, layout) };
        }
        // SAFETY: the caller passes a mapping `allocate` made for this layout, once.
        unsafe { libc::munmap(ptr.as_ptr() as *mut libc::c_void, mapped(layout.size())) };
    }
}

/// Transparent huge pages only for memory advised for them. On kernels from 6.18 that is
/// one `prctl`; before, where THP is `always` (Debian's default), they are turned off for
/// the whole process, and where it is `madvise` already, nothing needs doing.
pub fn only_where_advised() {
    /// `PR_THP_DISABLE_EXCEPT_ADVISED` (Linux 6.18), not yet in the `libc` crate.
    const EXCEPT_ADVISED: libc::c_ulong = 1 << 1;
    // SAFETY: PR_SET_THP_DISABLE sets a flag on this process; no memory is passed.
    if unsafe { libc::prctl(libc::PR_SET_THP_DISABLE, 1, EXCEPT_ADVISED, 0, 0) } == 0 {
        return;
    }
    let mode = std::fs::read_to_string("/sys/kernel/mm/transparent_hugepage/enabled");
    if mode.is_ok_and(|m| m.contains("[always]")) {
        // SAFETY: as above.
        unsafe { libc::prctl(libc::PR_SET_THP_DISABLE, 1, 0, 0, 0) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The advice takes: a vector spanning whole huge pages is backed by them once written.
    /// Needs a kernel with THP (`madvise` or `always`), as this project's machines have.
    #[test]
    fn a_large_vector_is_backed_by_huge_pages() {
        only_where_advised();
        let huge_kb = || {
            let smaps = std::fs::read_to_string("/proc/self/smaps_rollup").unwrap();
            smaps
                .lines()
                .find_map(|l| l.strip_prefix("AnonHugePages:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
                .unwrap()
        };
        let before = huge_kb();
        let mut v: HugeVec<u64> = HugeVec::with_capacity_in(16 << 20 >> 3, HugePages);
        v.resize(v.capacity(), 1);
        let after = huge_kb();
        assert!(
            after >= before + 12 * 1024,
            "AnonHugePages {before} kB before a 16 MiB vector, {after} kB after"
        );
        assert_eq!(v.iter().sum::<u64>(), v.len() as u64);
    }
}
