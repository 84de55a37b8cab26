//! The module's global allocator: every byte from the server's allocator, every `Layout` honoured.
//!
//! `redis_module::alloc::RedisAlloc` rounds a layout's *size* up to its alignment and trusts the
//! server's allocator to return an address aligned that far. jemalloc's size classes happen to do
//! so; libc malloc (Valkey's PyPI build, `MALLOC=libc` Redis builds, Alpine) gives 16 bytes at
//! most, and only 8 where zmalloc keeps a size prefix (libcs without `malloc_usable_size`). The
//! first 32-byte-aligned allocation (memchr's AVX2 finder inside woothee's regexes) then faults.
//!
//! This allocator relies on 8 bytes only ([`GUARANTEED_ALIGNMENT`]): layouts that need no more go
//! straight to the server's allocator (the common case, one branch more than before); larger ones
//! are over-allocated by their alignment, and the address handed out is preceded by a word that
//! holds the address the server's allocator returned, which `dealloc` and `realloc` read back.
//! Everything still goes through `RedisModule_Alloc`, so `used_memory` and `INFO memory` count it.
//! ARCHITECTURE.md ("The allocator") has the reasoning; the unit tests below use a backing store
//! that hands out addresses aligned to 8 bytes only, shifting on every call.

use std::alloc::{GlobalAlloc, Layout};
use std::mem::size_of;
use std::ptr;

/// The alignment every server allocation is guaranteed to have, on any zmalloc build: malloc's
/// 16 bytes, plus an 8-byte size prefix where the libc cannot report a block's size.
pub(crate) const GUARANTEED_ALIGNMENT: usize = 8;

/// The word before an over-aligned block: where its backing allocation starts.
const HEADER: usize = size_of::<usize>();

/// Raw memory with at least [`GUARANTEED_ALIGNMENT`]; the server's allocator in production.
///
/// # Safety
///
/// Implementations return null or a block of at least `size` bytes aligned to
/// [`GUARANTEED_ALIGNMENT`]; `reallocate` keeps the first `min(old, new)` bytes and leaves the
/// old block valid when it returns null; `release` and `reallocate` accept only blocks this same
/// implementation returned.
pub(crate) unsafe trait RawMemory {
    /// A new block of `size` bytes (never 0).
    unsafe fn allocate(&self, size: usize) -> *mut u8;
    /// A new block of `size` zeroed bytes (never 0).
    unsafe fn allocate_zeroed(&self, size: usize) -> *mut u8;
    /// `block` resized to `size` bytes (never 0), possibly moved.
    unsafe fn reallocate(&self, block: *mut u8, size: usize) -> *mut u8;
    /// Gives `block` back.
    unsafe fn release(&self, block: *mut u8);
}

/// A [`GlobalAlloc`] over any [`RawMemory`] that honours every power-of-two alignment.
pub(crate) struct AlignedAllocator<M>(pub(crate) M);

impl<M: RawMemory> AlignedAllocator<M> {
    /// Where to put an over-aligned block inside a backing allocation at `backing`: the first
    /// `align`-aligned address with room for the header before it. Since `backing` is aligned to
    /// 8 and `align` > 8, the offset is at most `align`, so `size + align` bytes always suffice.
    fn aligned_offset(backing: *mut u8, align: usize) -> usize {
        let first_candidate = backing as usize + HEADER;
        let aligned = (first_candidate + align - 1) & !(align - 1);
        aligned - backing as usize
    }

    /// Places an over-aligned block in `backing`: records `backing` in the header and returns the
    /// block's address.
    ///
    /// # Safety
    ///
    /// `backing` holds at least `offset` bytes and `offset >= HEADER`.
    unsafe fn place(backing: *mut u8, offset: usize) -> *mut u8 {
        // SAFETY: the caller guarantees `offset` bytes; the header word ends at `offset`, and it is
        // 8-aligned because the block address is aligned to more than 8.
        unsafe {
            let block = backing.add(offset);
            block.sub(HEADER).cast::<*mut u8>().write(backing);
            block
        }
    }

    /// The backing allocation of an over-aligned `block` handed out by [`place`](Self::place).
    ///
    /// # Safety
    ///
    /// `block` came from this allocator with a layout aligned to more than 8.
    unsafe fn backing_of(block: *mut u8) -> *mut u8 {
        // SAFETY: `place` wrote the backing address into the word before every over-aligned block.
        unsafe { block.sub(HEADER).cast::<*mut u8>().read() }
    }
}

// SAFETY: small alignments are passed through to memory that guarantees them; larger ones get an
// address rounded up inside a backing allocation of `size + align` bytes (see `aligned_offset`),
// and the same layout test on `dealloc`/`realloc` finds the backing allocation again.
unsafe impl<M: RawMemory> GlobalAlloc for AlignedAllocator<M> {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if layout.align() <= GUARANTEED_ALIGNMENT {
            // SAFETY: GlobalAlloc callers never pass a zero size.
            return unsafe { self.0.allocate(layout.size()) };
        }
        let Some(total) = layout.size().checked_add(layout.align()) else {
            return ptr::null_mut();
        };
        // SAFETY: `total` > 0.
        let backing = unsafe { self.0.allocate(total) };
        if backing.is_null() {
            return backing;
        }
        let offset = Self::aligned_offset(backing, layout.align());
        // SAFETY: `offset` <= align, and `backing` holds `size + align` bytes.
        unsafe { Self::place(backing, offset) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if layout.align() <= GUARANTEED_ALIGNMENT {
            // SAFETY: GlobalAlloc callers never pass a zero size.
            return unsafe { self.0.allocate_zeroed(layout.size()) };
        }
        // SAFETY: same contract as ours.
        let block = unsafe { self.alloc(layout) };
        if !block.is_null() {
            // SAFETY: `alloc` returned `layout.size()` writable bytes at `block`.
            unsafe { block.write_bytes(0, layout.size()) };
        }
        block
    }

    unsafe fn dealloc(&self, block: *mut u8, layout: Layout) {
        // SAFETY: `block` came from `alloc` with this layout, so the same test finds its backing.
        unsafe {
            if layout.align() <= GUARANTEED_ALIGNMENT {
                self.0.release(block);
            } else {
                self.0.release(Self::backing_of(block));
            }
        }
    }

    unsafe fn realloc(&self, block: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let align = layout.align();
        if align <= GUARANTEED_ALIGNMENT {
            // SAFETY: `block` came from `allocate` (same test); `new_size` > 0 per GlobalAlloc.
            return unsafe { self.0.reallocate(block, new_size) };
        }
        let Some(total) = new_size.checked_add(align) else {
            return ptr::null_mut();
        };
        // SAFETY: `block` is over-aligned, so it has a header naming its backing allocation.
        let old_backing = unsafe { Self::backing_of(block) };
        let old_offset = block as usize - old_backing as usize;
        // SAFETY: `old_backing` came from this memory; on null the old block is untouched.
        let new_backing = unsafe { self.0.reallocate(old_backing, total) };
        if new_backing.is_null() {
            return new_backing;
        }
        let new_offset = Self::aligned_offset(new_backing, align);
        if new_offset != old_offset {
            // The backing moved to an address with another remainder: slide the contents. Both
            // ranges lie within `total` bytes, since both offsets are at most `align`; the header
            // is written afterwards, below the new range, so it cannot clobber what moved.
            // SAFETY: `reallocate` kept the first min(old, new) backing bytes, which include the
            // old contents at `old_offset`; `copy` allows the overlap.
            unsafe {
                ptr::copy(new_backing.add(old_offset), new_backing.add(new_offset), layout.size().min(new_size));
            }
        }
        // SAFETY: `new_offset` <= align and `new_backing` holds `new_size + align` bytes.
        unsafe { Self::place(new_backing, new_offset) }
    }
}

/// The server's allocator (`RedisModule_Alloc` and friends), the module's memory in production.
#[cfg(not(test))]
pub(crate) struct ServerMemory;

#[cfg(not(test))]
mod server_memory {
    use super::{RawMemory, ServerMemory};
    use redis_module::raw;

    /// Without the server's allocator nothing can be allocated, not even a panic message: say so
    /// with a raw write and abort (only possible if something allocates before `RedisModule_Init`).
    fn no_server_allocator() -> ! {
        const MESSAGE: &[u8] = b"qsess: the server's allocator is not available\n";
        // SAFETY: write(2) on stderr with a valid static buffer.
        let _ = unsafe { libc::write(libc::STDERR_FILENO, MESSAGE.as_ptr().cast(), MESSAGE.len()) };
        std::process::abort()
    }

    // SAFETY: zmalloc returns blocks aligned to malloc's alignment plus at most an 8-byte prefix,
    // so to at least 8; it aborts the server rather than return null.
    unsafe impl RawMemory for ServerMemory {
        unsafe fn allocate(&self, size: usize) -> *mut u8 {
            // SAFETY: set once by RedisModule_Init, before any command runs, and never changed.
            match unsafe { raw::RedisModule_Alloc } {
                // SAFETY: the server's malloc.
                Some(alloc) => unsafe { alloc(size).cast() },
                None => no_server_allocator(),
            }
        }

        unsafe fn allocate_zeroed(&self, size: usize) -> *mut u8 {
            // SAFETY: set once by RedisModule_Init, before any command runs, and never changed.
            match unsafe { raw::RedisModule_Calloc } {
                // SAFETY: the server's calloc.
                Some(calloc) => unsafe { calloc(1, size).cast() },
                None => no_server_allocator(),
            }
        }

        unsafe fn reallocate(&self, block: *mut u8, size: usize) -> *mut u8 {
            // SAFETY: set once by RedisModule_Init, before any command runs, and never changed.
            match unsafe { raw::RedisModule_Realloc } {
                // SAFETY: `block` came from the server's allocator (trait contract).
                Some(realloc) => unsafe { realloc(block.cast(), size).cast() },
                None => no_server_allocator(),
            }
        }

        unsafe fn release(&self, block: *mut u8) {
            // SAFETY: set once by RedisModule_Init, before any command runs, and never changed.
            match unsafe { raw::RedisModule_Free } {
                // SAFETY: `block` came from the server's allocator (trait contract).
                Some(free) => unsafe { free(block.cast()) },
                None => no_server_allocator(),
            }
        }
    }
}

// The tests drive raw memory on purpose; every block is one allocator call under test or the
// bookkeeping of `ShiftingMemory`, whose layout its own comment describes.
#[cfg(test)]
#[allow(clippy::undocumented_unsafe_blocks)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// System memory that hands out addresses aligned to 8 bytes and no more, at a different
    /// remainder modulo 64 on every call, so every alignment and every "moved to another
    /// remainder" path of `realloc` is taken. Each block records its shift and size before it.
    struct ShiftingMemory {
        calls: AtomicUsize,
    }

    /// Shifts from a 64-aligned base: 16 leaves room for the two bookkeeping words.
    const SHIFTS: [usize; 6] = [16, 24, 40, 56, 72, 88];
    const BASE_ALIGN: usize = 64;

    impl ShiftingMemory {
        fn new() -> Self {
            Self { calls: AtomicUsize::new(0) }
        }

        fn base_layout(size: usize) -> Layout {
            Layout::from_size_align(size + SHIFTS[SHIFTS.len() - 1], BASE_ALIGN).expect("test layout")
        }
    }

    unsafe impl RawMemory for ShiftingMemory {
        unsafe fn allocate(&self, size: usize) -> *mut u8 {
            let shift = SHIFTS[self.calls.fetch_add(1, Ordering::Relaxed) % SHIFTS.len()];
            unsafe {
                let base = std::alloc::System.alloc(Self::base_layout(size));
                assert!(!base.is_null());
                let block = base.add(shift);
                block.sub(8).cast::<usize>().write(shift);
                block.sub(16).cast::<usize>().write(size);
                // Garbage, so a missing zeroing or copy shows.
                block.write_bytes(0xA5, size);
                block
            }
        }

        unsafe fn allocate_zeroed(&self, size: usize) -> *mut u8 {
            unsafe {
                let block = self.allocate(size);
                block.write_bytes(0, size);
                block
            }
        }

        unsafe fn reallocate(&self, block: *mut u8, size: usize) -> *mut u8 {
            unsafe {
                let old_size = block.sub(16).cast::<usize>().read();
                let moved = self.allocate(size);
                ptr::copy_nonoverlapping(block, moved, old_size.min(size));
                self.release(block);
                moved
            }
        }

        unsafe fn release(&self, block: *mut u8) {
            unsafe {
                let shift = block.sub(8).cast::<usize>().read();
                let size = block.sub(16).cast::<usize>().read();
                std::alloc::System.dealloc(block.sub(shift), Self::base_layout(size));
            }
        }
    }

    const ALIGNMENTS: [usize; 10] = [1, 2, 4, 8, 16, 32, 64, 128, 256, 4096];
    const SIZES: [usize; 6] = [1, 7, 16, 31, 100, 5000];

    fn fill(block: *mut u8, size: usize, seed: u8) {
        for i in 0..size {
            unsafe { block.add(i).write(seed.wrapping_add(i as u8)) };
        }
    }

    fn holds(block: *mut u8, size: usize, seed: u8) -> bool {
        (0..size).all(|i| unsafe { block.add(i).read() } == seed.wrapping_add(i as u8))
    }

    #[test]
    fn every_alignment_is_honoured_even_by_memory_aligned_to_8() {
        let allocator = AlignedAllocator(ShiftingMemory::new());
        for align in ALIGNMENTS {
            for size in SIZES {
                let layout = Layout::from_size_align(size, align).unwrap();
                for round in 0..SHIFTS.len() {
                    let block = unsafe { allocator.alloc(layout) };
                    assert_eq!(block as usize % align, 0, "align {align}, size {size}, round {round}");
                    fill(block, size, round as u8);
                    assert!(holds(block, size, round as u8));
                    unsafe { allocator.dealloc(block, layout) };
                }
            }
        }
    }

    #[test]
    fn zeroed_blocks_are_zero_at_every_alignment() {
        let allocator = AlignedAllocator(ShiftingMemory::new());
        for align in ALIGNMENTS {
            for size in SIZES {
                let layout = Layout::from_size_align(size, align).unwrap();
                let block = unsafe { allocator.alloc_zeroed(layout) };
                assert_eq!(block as usize % align, 0);
                assert!((0..size).all(|i| unsafe { block.add(i).read() } == 0), "align {align}, size {size}");
                unsafe { allocator.dealloc(block, layout) };
            }
        }
    }

    #[test]
    fn realloc_keeps_contents_and_alignment_growing_and_shrinking() {
        let allocator = AlignedAllocator(ShiftingMemory::new());
        for align in ALIGNMENTS {
            for from in SIZES {
                for to in SIZES {
                    let layout = Layout::from_size_align(from, align).unwrap();
                    let block = unsafe { allocator.alloc(layout) };
                    fill(block, from, 3);
                    let resized = unsafe { allocator.realloc(block, layout, to) };
                    assert_eq!(resized as usize % align, 0, "align {align}, {from} -> {to}");
                    assert!(holds(resized, from.min(to), 3), "contents lost: align {align}, {from} -> {to}");
                    unsafe { allocator.dealloc(resized, Layout::from_size_align(to, align).unwrap()) };
                }
            }
        }
    }

    #[test]
    fn a_chain_of_reallocs_across_remainders_keeps_contents() {
        // Growing one block many times moves its backing through every remainder modulo 64.
        let allocator = AlignedAllocator(ShiftingMemory::new());
        let align = 32;
        let mut size = 8;
        let mut block = unsafe { allocator.alloc(Layout::from_size_align(size, align).unwrap()) };
        fill(block, size, 9);
        for _ in 0..24 {
            let new_size = size * 3 / 2 + 1;
            block = unsafe { allocator.realloc(block, Layout::from_size_align(size, align).unwrap(), new_size) };
            assert_eq!(block as usize % align, 0);
            assert!(holds(block, size, 9));
            fill(block, new_size, 9);
            size = new_size;
        }
        unsafe { allocator.dealloc(block, Layout::from_size_align(size, align).unwrap()) };
    }

    #[test]
    fn small_alignments_pass_through_without_a_header() {
        // One allocation of exactly `size` bytes: nothing added where the server already aligns.
        let allocator = AlignedAllocator(ShiftingMemory::new());
        let layout = Layout::from_size_align(24, 8).unwrap();
        let block = unsafe { allocator.alloc(layout) };
        assert_eq!(unsafe { block.sub(16).cast::<usize>().read() }, 24);
        unsafe { allocator.dealloc(block, layout) };
    }

    #[test]
    fn over_aligned_blocks_cost_their_alignment_in_bytes() {
        let allocator = AlignedAllocator(ShiftingMemory::new());
        let layout = Layout::from_size_align(100, 32).unwrap();
        let block = unsafe { allocator.alloc(layout) };
        let backing = unsafe { AlignedAllocator::<ShiftingMemory>::backing_of(block) };
        assert_eq!(unsafe { backing.sub(16).cast::<usize>().read() }, 100 + 32);
        unsafe { allocator.dealloc(block, layout) };
    }
}
