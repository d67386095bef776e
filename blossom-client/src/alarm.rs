//! When the background task runs next.
//!
//! On a current-thread runtime (the only kind whose clock tokio can pause, as the simulations and
//! tests do) the task sleeps on tokio's timer. On any other runtime a thread of the client's own
//! keeps the time and wakes the task: the task's next wake-up is always set while any call is in
//! flight (its deadline is), and as a tokio timer it made every idle worker park with a timeout,
//! which costs the kernel a timer per park: 2 to 4 % of a request at one in flight over loopback.

use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread;
use std::time::Instant;

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
                Ok(thread) => Alarm::Thread(thread),
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
    fn spawn(wake: Arc<Notify>) -> std::io::Result<AlarmThread> {
        let state = Arc::new(State { setting: Mutex::default(), changed: Condvar::new() });
        let theirs = state.clone();
        thread::Builder::new().name("blossom-alarm".into()).spawn(move || ring(&theirs, &wake))?;
        Ok(AlarmThread { state })
    }

    /// Notifies at `at` (replacing the time set before), or at once if it has passed.
    fn set(&self, at: Instant) {
        let mut setting = self.state.lock();
        let earlier = setting.at.is_none_or(|old| at < old);
        setting.at = Some(at);
        drop(setting);
        // A later time needs no signal: the thread wakes at the old one and waits on.
        if earlier {
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
        setting = match setting.at {
            None => state.changed.wait(setting).unwrap_or_else(|poisoned| poisoned.into_inner()),
            Some(at) => match at.checked_duration_since(Instant::now()) {
                Some(left) if !left.is_zero() => {
                    state.changed.wait_timeout(setting, left).unwrap_or_else(|poisoned| poisoned.into_inner()).0
                }
                _ => {
                    setting.at = None;
                    wake.notify_one();
                    setting
                }
            },
        };
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn alarm() -> (Arc<Notify>, AlarmThread) {
        let wake = Arc::new(Notify::new());
        let thread = AlarmThread::spawn(wake.clone()).expect("thread");
        (wake, thread)
    }

    /// Waits for a notification for at most `limit` of real time.
    fn rings_within(wake: &Notify, limit: Duration) -> bool {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_time().build().expect("runtime");
        runtime.block_on(async { tokio::time::timeout(limit, wake.notified()).await.is_ok() })
    }

    #[test]
    fn rings_once_at_the_time_set() {
        let (wake, alarm) = alarm();
        assert!(!rings_within(&wake, Duration::from_millis(20)), "nothing set, nothing rings");
        alarm.set(Instant::now() + Duration::from_millis(5));
        assert!(rings_within(&wake, Duration::from_secs(10)));
        assert!(!rings_within(&wake, Duration::from_millis(30)), "it rang twice");
    }

    #[test]
    fn an_earlier_time_replaces_a_later_one() {
        let (wake, alarm) = alarm();
        alarm.set(Instant::now() + Duration::from_secs(3600));
        alarm.set(Instant::now() + Duration::from_millis(10));
        assert!(rings_within(&wake, Duration::from_secs(10)));
    }

    #[test]
    fn a_later_time_replaces_an_earlier_one() {
        let (wake, alarm) = alarm();
        alarm.set(Instant::now() + Duration::from_millis(30));
        alarm.set(Instant::now() + Duration::from_secs(3600));
        assert!(!rings_within(&wake, Duration::from_millis(100)));
    }

    #[test]
    fn a_time_past_rings_at_once_and_a_dropped_alarm_stops_its_thread() {
        let (wake, alarm) = alarm();
        let state = Arc::downgrade(&alarm.state);
        alarm.set(Instant::now());
        assert!(rings_within(&wake, Duration::from_secs(10)));
        drop(alarm);
        // The thread holds the state's other reference until it returns.
        let started = Instant::now();
        while state.upgrade().is_some() {
            assert!(started.elapsed() < Duration::from_secs(10), "the thread did not stop");
            thread::sleep(Duration::from_millis(1));
        }
    }
}
