//! Cache prefetch of a request's future before it is polled.
//!
//! With many requests in flight, a request's future has left the cache by the time its response
//! wakes it, and polling it walks its nested states one after another: each level's read waits
//! for the one before. Asking for all of its lines first lets those misses overlap.

/// Hints the CPU to load every cache line of `value`. A no-op off x86-64.
#[inline(always)]
#[allow(unsafe_code)] // reason: `_mm_prefetch` takes a pointer; a prefetch reads nothing and cannot fault
pub(crate) fn lines_of<T>(value: &T) {
    #[cfg(target_arch = "x86_64")]
    {
        use core::arch::x86_64::{_MM_HINT_T0, _mm_prefetch};
        const LINE: usize = 64;
        let start = (value as *const T).cast::<i8>();
        // From the line `value` starts in: a value of n lines spans at most n + 1 of them. A
        // count known at compile time lets the loop unroll to bare prefetches.
        let first = start.wrapping_sub(start.addr() % LINE);
        for line in 0..std::mem::size_of::<T>() / LINE + 1 {
            // SAFETY: a prefetch is only a hint to the cache: it dereferences nothing, and an
            // address it cannot load is ignored.
            unsafe { _mm_prefetch::<_MM_HINT_T0>(first.wrapping_add(line * LINE)) };
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = value;
}
