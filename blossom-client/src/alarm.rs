//! When the background task runs next.
//!
//! On a current-thread runtime (the only kind whose clock tokio can pause, as the simulations and
//! tests do) the task sleeps on tokio's timer. On any other runtime a thread of the client's own
//! keeps the time and wakes the task: the task's next wake-up is always set while any call is in
//! flight (its deadline is), and as a tokio timer it made every idle worker park with a timeout,
//! which costs the kernel a timer per park: 2 to 4 % of a request at one in flight over loopback.

use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread;
use std::time::{Duration, Instant};

use tokio::runtime::{Handle, RuntimeFlavor};
use tokio::sync::Notify;

/// The background task's clock.
pub(crate) enum Alarm {
    Tokio,
    Thread(AlarmThread),
}

impl Alarm {
    /// The clock for the current runtime; tokio's if no thread can be started.
    pub(crate) fn for_current_runtime(wake: &Arc<Notify>) -> Alarm {
        match Handle::current().runtime_flavor() {
            RuntimeFlavor::CurrentThread => Alarm::Tokio,
            _ => match AlarmThread::spawn(wake.clone()) {
                Ok((thread, _detached)) => Alarm::Thread(thread),
                Err(error) => {
                    tracing::debug!(%error, "no thread for the client's timers: using tokio's");
                    Alarm::Tokio
                }
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
            Alarm::Thread(thread) => {
                thread.set(at.into_std());
                wake.notified().await;
            }
        }
    }
}

#[derive(Default)]
struct Setting {
    at: Option<Instant>,
    stopped: bool,
}

/// What the thread does next.
#[derive(Debug, PartialEq)]
enum Next {
    Ring,
    /// Until told, or for at most this long.
    Wait(Option<Duration>),
}

impl Setting {
    /// Rings at `at` instead of the time set before. Returns whether the thread must be told: a
    /// later time needs no signal, as the thread wakes at the old one and waits on.
    fn set(&mut self, at: Instant) -> bool {
        let earlier = self.at.is_none_or(|old| at < old);
        self.at = Some(at);
        earlier
    }

    /// What to do at `now`: ring once (the time is cleared), or wait for what is left of it.
    fn next(&mut self, now: Instant) -> Next {
        match self.at.map(|at| at.saturating_duration_since(now)) {
            None => Next::Wait(None),
            Some(left) if !left.is_zero() => Next::Wait(Some(left)),
            Some(_) => {
                self.at = None;
                Next::Ring
            }
        }
    }
}

struct State {
    setting: Mutex<Setting>,
    changed: Condvar,
}

impl State {
    fn lock(&self) -> MutexGuard<'_, Setting> {
        self.setting.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// A thread that notifies once when the time set comes; stopped when dropped.
pub(crate) struct AlarmThread {
    state: Arc<State>,
}

impl AlarmThread {
    /// The alarm, and its thread's handle (dropped, it detaches).
    fn spawn(wake: Arc<Notify>) -> std::io::Result<(AlarmThread, thread::JoinHandle<()>)> {
        let state = Arc::new(State { setting: Mutex::default(), changed: Condvar::new() });
        let theirs = state.clone();
        let handle = thread::Builder::new().name("blossom-alarm".into()).spawn(move || ring(&theirs, &wake))?;
        Ok((AlarmThread { state }, handle))
    }

    /// Notifies at `at` (replacing the time set before), or at once if it has passed.
    fn set(&self, at: Instant) {
        if self.state.lock().set(at) {
            self.state.changed.notify_one();
        }
    }
}

impl Drop for AlarmThread {
    fn drop(&mut self) {
        self.state.lock().stopped = true;
        self.state.changed.notify_one();
    }
}

fn ring(state: &State, wake: &Notify) {
    let mut setting = state.lock();
    while !setting.stopped {
        setting = match setting.next(Instant::now()) {
            Next::Ring => {
                wake.notify_one();
                setting
            }
            Next::Wait(None) => state.changed.wait(setting).unwrap_or_else(|poisoned| poisoned.into_inner()),
            Next::Wait(Some(left)) => {
                state.changed.wait_timeout(setting, left).unwrap_or_else(|poisoned| poisoned.into_inner()).0
            }
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    /// Decisions are taken on made-up instants: no test below waits for time to pass.
    #[test]
    fn rings_once_at_the_time_set() {
        let now = Instant::now();
        let mut setting = Setting::default();
        assert_eq!(setting.next(now), Next::Wait(None), "nothing set, nothing rings");
        assert!(setting.set(now + 5 * MS), "the first time set is told");
        assert_eq!(setting.next(now), Next::Wait(Some(5 * MS)));
        assert_eq!(setting.next(now + 5 * MS), Next::Ring);
        assert_eq!(setting.next(now + 6 * MS), Next::Wait(None), "it rang twice");
    }

    #[test]
    fn an_earlier_time_replaces_a_later_one() {
        let now = Instant::now();
        let mut setting = Setting::default();
        setting.set(now + 3_600_000 * MS);
        assert!(setting.set(now + 10 * MS), "an earlier time is told");
        assert_eq!(setting.next(now), Next::Wait(Some(10 * MS)));
    }

    #[test]
    fn a_later_time_replaces_an_earlier_one() {
        let now = Instant::now();
        let mut setting = Setting::default();
        setting.set(now + 30 * MS);
        assert!(!setting.set(now + 3_600_000 * MS), "a later time needs no signal");
        assert_eq!(setting.next(now + 30 * MS), Next::Wait(Some(3_599_970 * MS)), "nothing rings at the old time");
    }

    #[test]
    fn a_time_past_rings_at_once() {
        let now = Instant::now();
        let mut setting = Setting::default();
        setting.set(now);
        assert_eq!(setting.next(now + MS), Next::Ring);
    }

    /// The thread itself: it rings for a time already past, and stops when the alarm is dropped.
    /// Each wait ends on the event; the 10 s bounds only turn a hang into a failure.
    #[test]
    fn the_thread_rings_and_stops_when_dropped() {
        let wake = Arc::new(Notify::new());
        let (alarm, thread) = AlarmThread::spawn(wake.clone()).expect("thread");
        alarm.set(Instant::now());
        let runtime = tokio::runtime::Builder::new_current_thread().enable_time().build().expect("runtime");
        let rang = runtime.block_on(async { tokio::time::timeout(Duration::from_secs(10), wake.notified()).await });
        assert!(rang.is_ok(), "the alarm did not ring");
        drop(alarm);
        let (stopped, joined) = std::sync::mpsc::channel();
        thread::spawn(move || stopped.send(thread.join()));
        let joined = joined.recv_timeout(Duration::from_secs(10)).expect("the thread did not stop");
        assert!(joined.is_ok(), "the thread panicked");
    }
}
