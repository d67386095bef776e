//! When the background task runs next.
//!
//! On a current-thread runtime (the only kind whose clock tokio can pause, as the simulations and
//! tests do) the task sleeps on tokio's timer. On any other runtime one thread for the whole
//! process, `blossom-alarm`, keeps every client's time and wakes its task: the task's next wake-up
//! is always set while any call is in flight (its deadline is), and as a tokio timer it made every
//! idle worker park with a timeout, which costs the kernel a timer per park: 2 to 4 % of a request
//! at one in flight over loopback. The first client starts the thread; it then waits, parked,
//! for the next.

use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock};
use std::thread;
use std::time::{Duration, Instant};

use tokio::runtime::{Handle, RuntimeFlavor};
use tokio::sync::Notify;

/// The background task's clock.
pub(crate) enum Alarm {
    Tokio,
    Thread(AlarmHandle),
}

impl Alarm {
    /// The clock for the current runtime; tokio's if the thread cannot be started.
    pub(crate) fn for_current_runtime(wake: &Arc<Notify>) -> Alarm {
        match Handle::current().runtime_flavor() {
            RuntimeFlavor::CurrentThread => Alarm::Tokio,
            _ => match alarms() {
                Some(alarms) => Alarm::Thread(alarms.register(wake.clone())),
                None => Alarm::Tokio,
            },
        }
    }

    /// Returns when `wake` is notified or `at` comes, whichever is first.
    pub(crate) async fn wait(&self, wake: &Notify, at: tokio::time::Instant) {
        match self {
            Alarm::Tokio => {
                tokio::select! {
                    biased;
                    _ = wake.notified() => {}
                    _ = tokio::time::sleep_until(at) => {}
                }
            }
            Alarm::Thread(handle) => {
                handle.set(at.into_std());
                wake.notified().await;
            }
        }
    }
}

/// One client's time.
struct Entry {
    id: u64,
    /// Cleared when it rings: a client is woken once per time set.
    at: Option<Instant>,
    wake: Arc<Notify>,
}

/// Every client's time.
#[derive(Default)]
struct Table {
    next_id: u64,
    entries: Vec<Entry>,
}

impl Table {
    fn register(&mut self, wake: Arc<Notify>) -> u64 {
        self.next_id += 1;
        self.entries.push(Entry { id: self.next_id, at: None, wake });
        self.next_id
    }

    fn remove(&mut self, id: u64) {
        self.entries.retain(|entry| entry.id != id);
    }

    /// The earliest time set.
    fn next(&self) -> Option<Instant> {
        self.entries.iter().filter_map(|entry| entry.at).min()
    }

    /// Rings `id` at `at` instead of the time it set before. Returns whether the thread must be
    /// told: only a time earlier than every other needs it, as the thread wakes at the earliest
    /// and then waits on for the rest.
    fn set(&mut self, id: u64, at: Instant) -> bool {
        let earlier = self.next().is_none_or(|next| at < next);
        if let Some(entry) = self.entries.iter_mut().find(|entry| entry.id == id) {
            entry.at = Some(at);
        }
        earlier
    }

    /// Rings every client whose time has come at `now` (its time is cleared), and returns how
    /// long to wait for the next one (`None`: until told).
    fn ring_due(&mut self, now: Instant, mut ring: impl FnMut(&Arc<Notify>)) -> Option<Duration> {
        for entry in &mut self.entries {
            if entry.at.is_some_and(|at| at <= now) {
                entry.at = None;
                ring(&entry.wake);
            }
        }
        self.next().map(|next| next.saturating_duration_since(now))
    }
}

/// The thread's table and how it is told of an earlier time.
#[derive(Default)]
struct Alarms {
    table: Mutex<Table>,
    changed: Condvar,
}

impl Alarms {
    fn lock(&self) -> MutexGuard<'_, Table> {
        self.table.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn register(&'static self, wake: Arc<Notify>) -> AlarmHandle {
        AlarmHandle { id: self.lock().register(wake), alarms: self }
    }
}

/// The process's alarm thread, started by the first client that needs it; `None` if it could
/// not be started (the clients then use tokio's timer).
fn alarms() -> Option<&'static Alarms> {
    static ALARMS: OnceLock<Option<&'static Alarms>> = OnceLock::new();
    *ALARMS.get_or_init(|| {
        // Lives as long as the process, as its thread does.
        let alarms: &'static Alarms = Box::leak(Box::default());
        match thread::Builder::new().name("blossom-alarm".into()).spawn(move || ring(alarms)) {
            Ok(_detached) => Some(alarms),
            Err(error) => {
                tracing::debug!(%error, "no thread for the clients' timers: using tokio's");
                None
            }
        }
    })
}

fn ring(alarms: &Alarms) {
    let mut due: Vec<Arc<Notify>> = Vec::new();
    let mut table = alarms.lock();
    loop {
        let wait = table.ring_due(Instant::now(), |wake| due.push(wake.clone()));
        if !due.is_empty() {
            // Rung with the table free, so no client's `set` waits on a wake-up; then the table
            // is read again (a time set meanwhile told nobody waiting).
            drop(table);
            due.drain(..).for_each(|wake| wake.notify_one());
            table = alarms.lock();
            continue;
        }
        table = match wait {
            None => alarms.changed.wait(table).unwrap_or_else(|poisoned| poisoned.into_inner()),
            Some(left) => alarms.changed.wait_timeout(table, left).unwrap_or_else(|poisoned| poisoned.into_inner()).0,
        };
    }
}

/// A client's place in the alarm thread's table; dropped, the client is forgotten.
pub(crate) struct AlarmHandle {
    id: u64,
    alarms: &'static Alarms,
}

impl AlarmHandle {
    /// Notifies at `at` (replacing the time set before), or at once if it has passed.
    fn set(&self, at: Instant) {
        if self.alarms.lock().set(self.id, at) {
            self.alarms.changed.notify_one();
        }
    }
}

impl Drop for AlarmHandle {
    fn drop(&mut self) {
        self.alarms.lock().remove(self.id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    /// A table with `n` clients: their ids and their notifiers.
    fn table(n: usize) -> (Table, Vec<u64>, Vec<Arc<Notify>>) {
        let mut table = Table::default();
        let wakes: Vec<Arc<Notify>> = (0..n).map(|_| Arc::new(Notify::new())).collect();
        let ids = wakes.iter().map(|wake| table.register(wake.clone())).collect();
        (table, ids, wakes)
    }

    /// Which clients `ring_due` rang at `now`, by index, and the wait it returned.
    fn due(table: &mut Table, wakes: &[Arc<Notify>], now: Instant) -> (Vec<usize>, Option<Duration>) {
        let mut rung = Vec::new();
        let wait = table.ring_due(now, |wake| {
            rung.push(wakes.iter().position(|w| Arc::ptr_eq(w, wake)).expect("a known client"));
        });
        (rung, wait)
    }

    /// Decisions are taken on made-up instants: no test below waits for time to pass.
    #[test]
    fn rings_once_at_the_time_set() {
        let now = Instant::now();
        let (mut table, ids, wakes) = table(1);
        assert_eq!(due(&mut table, &wakes, now), (vec![], None), "nothing set, nothing rings");
        assert!(table.set(ids[0], now + 5 * MS), "the first time set is told");
        assert_eq!(due(&mut table, &wakes, now), (vec![], Some(5 * MS)));
        assert_eq!(due(&mut table, &wakes, now + 5 * MS), (vec![0], None));
        assert_eq!(due(&mut table, &wakes, now + 6 * MS), (vec![], None), "it rang twice");
    }

    #[test]
    fn an_earlier_time_replaces_a_later_one() {
        let now = Instant::now();
        let (mut table, ids, wakes) = table(1);
        table.set(ids[0], now + 3_600_000 * MS);
        assert!(table.set(ids[0], now + 10 * MS), "an earlier time is told");
        assert_eq!(due(&mut table, &wakes, now), (vec![], Some(10 * MS)));
    }

    #[test]
    fn a_later_time_replaces_an_earlier_one() {
        let now = Instant::now();
        let (mut table, ids, wakes) = table(1);
        table.set(ids[0], now + 30 * MS);
        assert!(!table.set(ids[0], now + 3_600_000 * MS), "a later time needs no signal");
        let (rung, wait) = due(&mut table, &wakes, now + 30 * MS);
        assert_eq!((rung, wait), (vec![], Some(3_599_970 * MS)), "nothing rings at the old time");
    }

    #[test]
    fn a_time_past_rings_at_once() {
        let now = Instant::now();
        let (mut table, ids, wakes) = table(1);
        table.set(ids[0], now);
        assert_eq!(due(&mut table, &wakes, now + MS).0, vec![0]);
    }

    #[test]
    fn each_client_rings_at_its_own_time_and_a_removed_one_not_at_all() {
        let now = Instant::now();
        let (mut table, ids, wakes) = table(3);
        table.set(ids[0], now + 20 * MS);
        assert!(table.set(ids[1], now + 10 * MS), "earlier than every other: told");
        assert!(!table.set(ids[2], now + 30 * MS), "later than another: the thread wakes before it anyway");
        assert_eq!(due(&mut table, &wakes, now + 10 * MS), (vec![1], Some(10 * MS)));
        table.remove(ids[0]);
        assert_eq!(due(&mut table, &wakes, now + 20 * MS), (vec![], Some(10 * MS)), "the removed one is gone");
        assert_eq!(due(&mut table, &wakes, now + 30 * MS), (vec![2], None));
    }

    /// The thread itself: it rings for every client, and one thread serves them all. Each wait
    /// ends on the event; the 10 s bound only turns a hang into a failure.
    #[test]
    fn one_thread_rings_for_every_client() {
        let shared = alarms().expect("the alarm thread");
        let wakes: Vec<Arc<Notify>> = (0..3).map(|_| Arc::new(Notify::new())).collect();
        let handles: Vec<AlarmHandle> = wakes.iter().map(|wake| shared.register(wake.clone())).collect();
        assert!(alarms().is_some_and(|again| std::ptr::eq(again, shared)), "one table for the process");
        let runtime = tokio::runtime::Builder::new_current_thread().enable_time().build().expect("runtime");
        let mut rang = 0;
        for (handle, wake) in handles.iter().zip(&wakes) {
            handle.set(Instant::now() + 2 * MS);
            let waited =
                runtime.block_on(async { tokio::time::timeout(Duration::from_secs(10), wake.notified()).await });
            rang += usize::from(waited.is_ok());
        }
        assert_eq!(rang, 3, "every client was rung");
        #[cfg(target_os = "linux")]
        {
            let named = std::fs::read_dir("/proc/self/task")
                .expect("the process's threads")
                .filter_map(Result::ok)
                .filter(|task| {
                    std::fs::read_to_string(task.path().join("comm")).is_ok_and(|name| name.trim() == "blossom-alarm")
                })
                .count();
            assert_eq!(named, 1, "one alarm thread for every client");
        }
        let ids: Vec<u64> = handles.iter().map(|handle| handle.id).collect();
        drop(handles);
        let table = shared.lock();
        assert!(table.entries.iter().all(|entry| !ids.contains(&entry.id)), "a dropped client is forgotten");
    }
}
