//! A fixed pool of buffers handed between threads, newest wins.
//!
//! Like embassy's zero-copy channel, buffers are allocated once and recycled: a producer
//! borrows a free slot, fills it in place and publishes it as the newest; consumers borrow
//! the newest slot (shared) and give it back. Nothing queues up: a slot that is overtaken
//! before anyone reads it is simply reused, and that is counted as a skip by the caller.
//! All bookkeeping is fixed-size under one mutex; waiting uses a condition variable. No
//! operation allocates.

use std::ops::{Deref, DerefMut};
use std::sync::{Condvar, Mutex, MutexGuard, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::Duration;

/// Most slots a pool can have.
pub const MAX_SLOTS: usize = 8;

#[derive(Debug)]
struct State {
    /// Readers (and the writer, counted as 1) per slot.
    refs: [u16; MAX_SLOTS],
    /// Slot being written.
    writing: [bool; MAX_SLOTS],
    /// Newest published slot and its sequence number.
    newest: Option<(usize, u64)>,
    closed: bool,
}

/// A pool of `T` buffers.
#[derive(Debug)]
pub struct SlotPool<T> {
    slots: Vec<RwLock<T>>,
    state: Mutex<State>,
    published: Condvar,
}

/// A slot borrowed for writing; publish it or drop it to give it back unpublished.
pub struct WriteSlot<'a, T> {
    pool: &'a SlotPool<T>,
    index: usize,
    guard: Option<RwLockWriteGuard<'a, T>>,
}

/// A published slot borrowed for reading.
pub struct ReadSlot<'a, T> {
    pool: &'a SlotPool<T>,
    index: usize,
    sequence: u64,
    guard: Option<RwLockReadGuard<'a, T>>,
}

impl<T> SlotPool<T> {
    /// Builds a pool of `count` slots (2..=MAX_SLOTS) with `make`.
    ///
    /// # Panics
    /// If `count` is outside `2..=MAX_SLOTS` (a configuration bug caught at start-up).
    pub fn new(count: usize, mut make: impl FnMut() -> T) -> Self {
        assert!(
            (2..=MAX_SLOTS).contains(&count),
            "slot pool needs 2..={MAX_SLOTS} slots, got {count}"
        );
        SlotPool {
            slots: (0..count).map(|_| RwLock::new(make())).collect(),
            state: Mutex::new(State {
                refs: [0; MAX_SLOTS],
                writing: [false; MAX_SLOTS],
                newest: None,
                closed: false,
            }),
            published: Condvar::new(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding this lock can only come from a bug in this module; the
        // state stays consistent (plain counters), so recover it rather than propagate.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Number of slots.
    pub fn len(&self) -> usize {
        self.slots.len()
    }

    /// Whether the pool has no slots (never: a pool has at least 2).
    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    /// Borrows a slot nobody reads and that is not the newest, or `None` if all are busy.
    pub fn try_acquire_free(&self) -> Option<WriteSlot<'_, T>> {
        let mut st = self.lock();
        let newest = st.newest.map(|(i, _)| i);
        let index = (0..self.slots.len())
            .find(|&i| st.refs[i] == 0 && !st.writing[i] && Some(i) != newest)?;
        st.writing[index] = true;
        drop(st);
        let guard = self.slots[index].write().unwrap_or_else(|p| p.into_inner());
        Some(WriteSlot {
            pool: self,
            index,
            guard: Some(guard),
        })
    }

    /// Waits until a slot newer than `after` is published (or the pool is closed, or the
    /// timeout passes) and borrows it.
    pub fn wait_newer(&self, after: Option<u64>, timeout: Duration) -> Option<ReadSlot<'_, T>> {
        let mut st = self.lock();
        let is_newer = |st: &State| match (st.newest, after) {
            (Some((_, s)), Some(a)) => s > a,
            (Some(_), None) => true,
            (None, _) => false,
        };
        if !is_newer(&st) && !st.closed {
            let (guard, _) = self
                .published
                .wait_timeout_while(st, timeout, |s| !is_newer(s) && !s.closed)
                .unwrap_or_else(|p| p.into_inner());
            st = guard;
        }
        if !is_newer(&st) {
            return None;
        }
        let (index, sequence) = st.newest?;
        Some(self.borrow_read(st, index, sequence))
    }

    /// Borrows the newest slot without waiting, whatever its sequence.
    pub fn newest(&self) -> Option<ReadSlot<'_, T>> {
        let st = self.lock();
        let (index, sequence) = st.newest?;
        Some(self.borrow_read(st, index, sequence))
    }

    /// Counts a reader of `index` under the lock, then takes the slot's read guard.
    fn borrow_read(
        &self,
        mut st: MutexGuard<'_, State>,
        index: usize,
        sequence: u64,
    ) -> ReadSlot<'_, T> {
        st.refs[index] += 1;
        drop(st);
        let guard = self.slots[index].read().unwrap_or_else(|p| p.into_inner());
        ReadSlot {
            pool: self,
            index,
            sequence,
            guard: Some(guard),
        }
    }

    /// Sequence number of the newest published slot.
    pub fn newest_sequence(&self) -> Option<u64> {
        self.lock().newest.map(|(_, s)| s)
    }

    /// Marks the stream finished: waiters wake up and get what is left.
    pub fn close(&self) {
        self.lock().closed = true;
        self.published.notify_all();
    }

    /// Whether [`SlotPool::close`] was called.
    pub fn is_closed(&self) -> bool {
        self.lock().closed
    }
}

impl<'a, T> WriteSlot<'a, T> {
    /// Publishes the slot as the newest with `sequence` and wakes the waiters.
    pub fn publish(mut self, sequence: u64) {
        drop(self.guard.take());
        let mut st = self.pool.lock();
        st.writing[self.index] = false;
        st.newest = Some((self.index, sequence));
        drop(st);
        self.pool.published.notify_all();
    }
}

impl<T> Drop for WriteSlot<'_, T> {
    fn drop(&mut self) {
        if self.guard.take().is_some() {
            self.pool.lock().writing[self.index] = false;
        }
    }
}

impl<T> Deref for WriteSlot<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        // The guard is only taken in `publish`, which consumes `self`.
        self.guard
            .as_deref()
            .expect("write slot guard present until publish")
    }
}

impl<T> DerefMut for WriteSlot<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        self.guard
            .as_deref_mut()
            .expect("write slot guard present until publish")
    }
}

impl<T> ReadSlot<'_, T> {
    /// The sequence number it was published with.
    pub fn sequence(&self) -> u64 {
        self.sequence
    }
}

impl<T> Deref for ReadSlot<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        self.guard
            .as_deref()
            .expect("read slot guard present until drop")
    }
}

impl<T> Drop for ReadSlot<'_, T> {
    fn drop(&mut self) {
        drop(self.guard.take());
        self.pool.lock().refs[self.index] -= 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn newest_wins_and_slots_recycle() {
        let pool = SlotPool::new(3, || 0u32);
        let mut w = pool.try_acquire_free().expect("free");
        *w = 10;
        w.publish(1);
        let r = pool.wait_newer(None, Duration::ZERO).expect("published");
        assert_eq!((*r, r.sequence()), (10, 1));
        // Slot 0 is read and newest: two others are free.
        let a = pool.try_acquire_free().expect("free 1");
        let b = pool.try_acquire_free().expect("free 2");
        assert!(pool.try_acquire_free().is_none(), "all busy");
        drop(a);
        b.publish(2);
        drop(r);
        // Nothing newer than 2 yet.
        assert!(pool.wait_newer(Some(2), Duration::from_millis(1)).is_none());
        let r2 = pool.wait_newer(Some(1), Duration::ZERO).expect("seq 2");
        assert_eq!(r2.sequence(), 2);
    }

    #[test]
    fn close_wakes_waiters() {
        let pool = std::sync::Arc::new(SlotPool::new(2, || 0u8));
        let p = pool.clone();
        let t = std::thread::spawn(move || p.wait_newer(None, Duration::from_secs(10)).is_none());
        std::thread::sleep(Duration::from_millis(20));
        pool.close();
        assert!(t.join().expect("join"));
    }
}
