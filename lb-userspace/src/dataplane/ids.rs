//! Slot ids (services, reals) handed out lowest first, in O(log n) per id:
//! allocating a service's reals must not scan every id already in use, or
//! applying thousands of services becomes quadratic.

use std::collections::BTreeSet;

/// Ids in `first..limit`; those below `next` that are not in use wait in `free`.
#[derive(Debug)]
pub struct IdPool {
    next: u32,
    limit: u32,
    free: BTreeSet<u32>,
}

impl IdPool {
    /// Every id in `first..limit` free.
    pub fn new(first: u32, limit: u32) -> IdPool {
        IdPool {
            next: first,
            limit,
            free: BTreeSet::new(),
        }
    }

    /// Ids in `first..limit` free except `used` (what a previous agent left).
    pub fn with_used(first: u32, limit: u32, used: &BTreeSet<u32>) -> IdPool {
        let next = used.last().map_or(first, |&m| (m + 1).max(first));
        IdPool {
            next,
            limit,
            free: (first..next).filter(|i| !used.contains(i)).collect(),
        }
    }

    /// The lowest free id, now in use; `None` when all are.
    pub fn take(&mut self) -> Option<u32> {
        if let Some(id) = self.free.pop_first() {
            return Some(id);
        }
        (self.next < self.limit).then(|| {
            self.next += 1;
            self.next - 1
        })
    }

    /// `id` is free again.
    pub fn give(&mut self, id: u32) {
        if id < self.next {
            self.free.insert(id);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lowest_free_first_and_bounded() {
        let mut p = IdPool::new(1, 5);
        assert_eq!(
            (0..4).map(|_| p.take()).collect::<Vec<_>>(),
            [Some(1), Some(2), Some(3), Some(4)]
        );
        assert_eq!(p.take(), None, "limit is exclusive");
        p.give(3);
        p.give(2);
        assert_eq!(p.take(), Some(2));
        assert_eq!(p.take(), Some(3));
        assert_eq!(p.take(), None);
    }

    #[test]
    fn adopted_ids_stay_taken() {
        let used: BTreeSet<u32> = [0, 2, 5].into();
        let mut p = IdPool::with_used(0, 8, &used);
        let got: Vec<_> = (0..6).map(|_| p.take()).collect();
        assert_eq!(got, [Some(1), Some(3), Some(4), Some(6), Some(7), None]);
        let mut empty = IdPool::with_used(1, 3, &BTreeSet::new());
        assert_eq!(empty.take(), Some(1));
    }
}
