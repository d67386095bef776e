//! Deadlines of in-flight attempts, kept under the client's lock and served by its background
//! task, so a request sets no timer of its own.
//!
//! An attempt is armed with its deadline and its task's waker, under the lock `begin` takes
//! anyway, and disarmed under the lock its completion takes. The background task sleeps until
//! the earliest armed deadline (or its usual tick) and wakes the attempts whose deadline has
//! come; each one then sees the time and fails with its timeout. Armed deadlines are far off
//! (seconds) compared with a request (microseconds), so the background task rarely wakes for
//! them, and never for an attempt that already ended.

use std::task::Waker;

use pool_core::Time;

/// Where an attempt is armed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct WatchKey(usize);

impl WatchKey {
    #[cfg(test)]
    pub(crate) fn for_test(index: usize) -> WatchKey {
        WatchKey(index)
    }
}

#[derive(Debug)]
struct Slot {
    deadline: Time,
    /// Taken when the deadline comes: an attempt is woken once per arming.
    waker: Option<Waker>,
}

/// The armed attempts.
#[derive(Debug, Default)]
pub(crate) struct Watchlist {
    slots: Vec<Option<Slot>>,
    free: Vec<usize>,
}

impl Watchlist {
    /// Arms `key` (or a new slot) to wake `waker` at `deadline`.
    pub(crate) fn arm(&mut self, key: Option<WatchKey>, deadline: Time, waker: &Waker) -> WatchKey {
        if let Some(WatchKey(index)) = key {
            if let Some(Some(slot)) = self.slots.get_mut(index) {
                slot.deadline = deadline;
                match &mut slot.waker {
                    Some(armed) if armed.will_wake(waker) => {}
                    other => *other = Some(waker.clone()),
                }
                return WatchKey(index);
            }
        }
        let slot = Some(Slot { deadline, waker: Some(waker.clone()) });
        match self.free.pop() {
            Some(index) => {
                self.slots[index] = slot;
                WatchKey(index)
            }
            None => {
                self.slots.push(slot);
                WatchKey(self.slots.len() - 1)
            }
        }
    }

    /// Frees `key`'s slot.
    pub(crate) fn disarm(&mut self, key: WatchKey) {
        if let Some(slot) = self.slots.get_mut(key.0) {
            if slot.take().is_some() {
                self.free.push(key.0);
            }
        }
    }

    /// Hands over the waker of every attempt whose deadline is at or before `now`.
    pub(crate) fn expire(&mut self, now: Time, mut wake: impl FnMut(Waker)) {
        for slot in self.slots.iter_mut().flatten() {
            if slot.deadline <= now {
                if let Some(waker) = slot.waker.take() {
                    wake(waker);
                }
            }
        }
    }

    /// The earliest deadline still to serve.
    pub(crate) fn next_deadline(&self) -> Option<Time> {
        self.slots.iter().flatten().filter(|s| s.waker.is_some()).map(|s| s.deadline).min()
    }

    /// Slots armed (served or not).
    #[cfg(test)]
    fn armed(&self) -> usize {
        self.slots.iter().flatten().count()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::task::Wake;

    use super::*;

    struct Counter(AtomicUsize);

    impl Wake for Counter {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    fn counter() -> (Arc<Counter>, Waker) {
        let counter = Arc::new(Counter(AtomicUsize::new(0)));
        (counter.clone(), Waker::from(counter))
    }

    fn at(ms: u64) -> Time {
        Time::from_nanos(ms * 1_000_000)
    }

    #[test]
    fn wakes_only_what_is_due_and_only_once() {
        let mut list = Watchlist::default();
        let (early, early_waker) = counter();
        let (late, late_waker) = counter();
        list.arm(None, at(10), &early_waker);
        list.arm(None, at(20), &late_waker);
        assert_eq!(list.next_deadline(), Some(at(10)));
        list.expire(at(9), Waker::wake);
        assert_eq!(early.0.load(Ordering::SeqCst), 0);
        list.expire(at(10), Waker::wake);
        list.expire(at(15), Waker::wake);
        assert_eq!(early.0.load(Ordering::SeqCst), 1, "woken once");
        assert_eq!(late.0.load(Ordering::SeqCst), 0);
        assert_eq!(list.next_deadline(), Some(at(20)), "a served deadline is no longer waited for");
    }

    #[test]
    fn rearming_moves_the_deadline_and_disarming_frees_the_slot() {
        let mut list = Watchlist::default();
        let (woken, waker) = counter();
        let key = list.arm(None, at(10), &waker);
        assert_eq!(list.arm(Some(key), at(30), &waker), key, "same slot");
        list.expire(at(20), Waker::wake);
        assert_eq!(woken.0.load(Ordering::SeqCst), 0, "moved past 20");
        list.disarm(key);
        list.disarm(key);
        assert_eq!((list.armed(), list.next_deadline()), (0, None));
        let again = list.arm(None, at(5), &waker);
        assert_eq!(again, key, "a freed slot is reused");
        assert_eq!(list.armed(), 1);
    }

    #[test]
    fn a_served_slot_rearmed_is_served_again() {
        let mut list = Watchlist::default();
        let (woken, waker) = counter();
        let key = list.arm(None, at(10), &waker);
        list.expire(at(10), Waker::wake);
        list.arm(Some(key), at(40), &waker);
        assert_eq!(list.next_deadline(), Some(at(40)));
        list.expire(at(40), Waker::wake);
        assert_eq!(woken.0.load(Ordering::SeqCst), 2);
    }
}
