//! Estimates of the heap memory per-flow state holds, for the flow table's memory budget.
//!
//! An estimate, not an exact count: an allocation is counted as its capacity plus
//! [`ALLOC_OVERHEAD`] (the allocator's header and size-class rounding), hash tables as their
//! capacity rounded the way they grow. The point is that every buffer a flow keeps is counted
//! within a small factor, so that the table can evict before the process outgrows its budget.

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;

/// Bytes an allocator spends per allocation beyond what was asked for (header and rounding to
/// its size class; glibc: 8-byte header, 16-byte steps; mimalloc: up to 1/8 rounding).
pub const ALLOC_OVERHEAD: usize = 16;

/// Heap bytes a value owns beyond its inline size.
pub trait HeapSize {
    /// True when the type owns no heap at all (its elements need not be visited).
    const FLAT: bool = false;
    /// Heap bytes owned.
    fn heap_size(&self) -> usize;
}

/// Cost of one heap allocation of `bytes` bytes (nothing for an empty one).
pub fn alloc(bytes: usize) -> usize {
    if bytes == 0 {
        0
    } else {
        bytes + ALLOC_OVERHEAD
    }
}

macro_rules! flat {
    ($($t:ty),*) => {$(
        impl HeapSize for $t {
            const FLAT: bool = true;
            fn heap_size(&self) -> usize {
                0
            }
        }
    )*};
}

flat!(u8, u16, u32, u64, usize, i64, bool, char, f64, IpAddr);

impl HeapSize for String {
    fn heap_size(&self) -> usize {
        alloc(self.capacity())
    }
}

impl<T: HeapSize> HeapSize for Vec<T> {
    fn heap_size(&self) -> usize {
        let own = alloc(self.capacity() * std::mem::size_of::<T>());
        if T::FLAT {
            return own;
        }
        own + self.iter().map(HeapSize::heap_size).sum::<usize>()
    }
}

impl<T: HeapSize> HeapSize for VecDeque<T> {
    fn heap_size(&self) -> usize {
        let own = alloc(self.capacity() * std::mem::size_of::<T>());
        if T::FLAT {
            return own;
        }
        own + self.iter().map(HeapSize::heap_size).sum::<usize>()
    }
}

impl<T: HeapSize> HeapSize for Option<T> {
    const FLAT: bool = T::FLAT;
    fn heap_size(&self) -> usize {
        self.as_ref().map_or(0, HeapSize::heap_size)
    }
}

impl<T: HeapSize> HeapSize for Box<T> {
    fn heap_size(&self) -> usize {
        alloc(std::mem::size_of::<T>()) + (**self).heap_size()
    }
}

impl<A: HeapSize, B: HeapSize> HeapSize for (A, B) {
    const FLAT: bool = A::FLAT && B::FLAT;
    fn heap_size(&self) -> usize {
        self.0.heap_size() + self.1.heap_size()
    }
}

impl<T: HeapSize, const N: usize> HeapSize for [T; N] {
    const FLAT: bool = T::FLAT;
    fn heap_size(&self) -> usize {
        if T::FLAT {
            return 0;
        }
        self.iter().map(HeapSize::heap_size).sum()
    }
}

impl<K: HeapSize, V: HeapSize, S> HeapSize for HashMap<K, V, S> {
    fn heap_size(&self) -> usize {
        if self.capacity() == 0 {
            return 0;
        }
        // hashbrown: a power-of-two bucket array at most 7/8 full, one control byte a bucket.
        let buckets = (self.capacity() * 8 / 7).next_power_of_two();
        let own = alloc(buckets * (std::mem::size_of::<(K, V)>() + 1));
        if K::FLAT && V::FLAT {
            return own;
        }
        own + self
            .iter()
            .map(|(k, v)| k.heap_size() + v.heap_size())
            .sum::<usize>()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_values_own_nothing() {
        assert_eq!(String::new().heap_size(), 0);
        assert_eq!(Vec::<u8>::new().heap_size(), 0);
        assert_eq!(None::<String>.heap_size(), 0);
        assert_eq!(HashMap::<u32, u32>::new().heap_size(), 0);
    }

    #[test]
    fn nested_buffers_are_counted_with_their_elements() {
        let v: Vec<String> = vec!["a".repeat(100), "b".repeat(50)];
        let outer = v.capacity() * std::mem::size_of::<String>() + ALLOC_OVERHEAD;
        assert_eq!(v.heap_size(), outer + 100 + 50 + 2 * ALLOC_OVERHEAD);
        let bytes = vec![0u8; 4096];
        assert_eq!(bytes.heap_size(), 4096 + ALLOC_OVERHEAD);
        let mut m: HashMap<u32, Vec<u16>> = HashMap::new();
        m.insert(1, vec![1, 2, 3]);
        assert!(m.heap_size() >= 6 + ALLOC_OVERHEAD + 4 * 8);
    }
}
