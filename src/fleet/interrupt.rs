//! Ctrl-C, or SIGTERM (what a cancelled CI job gets first). Before the switch it ends the run
//! like a failure (nothing switches, locks released). During a switch (of the release links, of
//! the traffic, or back after a failure) it waits for that switch to end, since dropping it half
//! way would leave some hosts or routers switched and others not; the run then stops, and what
//! switched stays live, as after an interrupt once the switch is over. A switch not yet begun
//! does not begin (see [`Interrupts::check`]). A second interrupt stops at once, for a switch
//! that hangs (a rollback's checks, say): then the switch may be left half done, and dep says so.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

use tokio::signal::unix::{signal, Signal, SignalKind};
use tokio::sync::Notify;

use crate::report::{Event, Reporter};

/// How many switches are under way (each holds a [`Shield`]), and a wake-up when none is.
#[derive(Debug, Default)]
pub struct Interrupts {
    switching: AtomicUsize,
    calm: Notify,
    /// An interrupt came: no new switch starts.
    requested: AtomicBool,
    /// A second one stopped the run during a switch: what the run recorded of the hosts may
    /// be wrong, only their links tell.
    forced: AtomicBool,
}

/// Ctrl-C waits while this lives.
#[must_use = "Ctrl-C is held off only while the shield lives"]
pub struct Shield(Arc<Interrupts>);

impl Interrupts {
    /// Hold Ctrl-C off until the shield is dropped (shields nest).
    pub fn shield(self: &Arc<Self>) -> Shield {
        self.switching.fetch_add(1, Ordering::SeqCst);
        Shield(Arc::clone(self))
    }

    /// Resolves after Ctrl-C or SIGTERM, once no switch is under way (or at a second
    /// interrupt): where the run may be dropped.
    pub async fn requested(&self, reporter: &Reporter) {
        let mut signals = Signals::new();
        signals.next().await;
        self.requested.store(true, Ordering::SeqCst);
        tokio::select! {
            // With no switch under way, stop now, whatever else is queued.
            biased;
            () = self.calm(|| reporter.emit(Event::InterruptDeferred)) => {}
            () = signals.next() => {
                self.forced.store(true, Ordering::SeqCst);
                reporter.emit(Event::InterruptForced);
            }
        }
    }

    /// The run was stopped in the middle of a switch (a second interrupt).
    pub fn forced(&self) -> bool {
        self.forced.load(Ordering::SeqCst)
    }

    /// Once the run was interrupted, its clean-up (unlock, the releases log, webhooks) takes a
    /// moment: a further interrupt during it ends dep at once (exit 130), as one expects.
    pub fn exit_on_next_signal() {
        tokio::spawn(async {
            Signals::new().next().await;
            eprintln!("interrupted again: exiting without cleaning up (`dep unlock` clears a lock left behind)");
            std::process::exit(130);
        });
    }

    /// Before a switch that moves forward (never one that goes back): refused once an interrupt
    /// came, so that a switch that had not begun does not begin.
    pub fn check(&self) -> crate::error::Result<()> {
        if self.requested.load(Ordering::SeqCst) {
            return Err(crate::error::Error::Interrupted);
        }
        Ok(())
    }

    /// Resolves once no switch is under way; `waiting` is called first if one is.
    async fn calm(&self, waiting: impl FnOnce()) {
        let mut waiting = Some(waiting);
        loop {
            // Made before the check, so a shield dropped in between still wakes it.
            let calm = self.calm.notified();
            if self.switching.load(Ordering::SeqCst) == 0 {
                return;
            }
            if let Some(waiting) = waiting.take() {
                waiting();
            }
            calm.await;
        }
    }
}

/// Ctrl-C (SIGINT) and SIGTERM, listened to from creation on: a second one is not missed.
struct Signals {
    interrupt: Option<Signal>,
    terminate: Option<Signal>,
}

impl Signals {
    fn new() -> Signals {
        Signals {
            interrupt: signal(SignalKind::interrupt()).ok(),
            terminate: signal(SignalKind::terminate()).ok(),
        }
    }

    /// The next of either. Where a handler cannot be had (never on a normal system), that
    /// signal never comes.
    async fn next(&mut self) {
        async fn one(stream: &mut Option<Signal>) {
            match stream {
                Some(stream) => {
                    stream.recv().await;
                }
                None => std::future::pending::<()>().await,
            }
        }
        tokio::select! {
            () = one(&mut self.interrupt) => {}
            () = one(&mut self.terminate) => {}
        }
    }
}

impl Drop for Shield {
    fn drop(&mut self) {
        if self.0.switching.fetch_sub(1, Ordering::SeqCst) == 1 {
            self.0.calm.notify_waiters();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn once_interrupted_no_switch_begins() {
        let interrupts = Interrupts::default();
        assert!(interrupts.check().is_ok());
        interrupts.requested.store(true, Ordering::SeqCst);
        assert!(matches!(
            interrupts.check(),
            Err(crate::error::Error::Interrupted)
        ));
    }

    #[tokio::test]
    async fn the_last_shield_dropped_wakes_a_waiter() {
        let interrupts = Arc::new(Interrupts::default());
        let outer = interrupts.shield();
        let inner = interrupts.shield();
        let waiting = {
            let interrupts = Arc::clone(&interrupts);
            tokio::spawn(async move { interrupts.calm(|| {}).await })
        };
        drop(inner);
        tokio::task::yield_now().await;
        assert!(!waiting.is_finished(), "woke with a switch still under way");
        drop(outer);
        tokio::time::timeout(std::time::Duration::from_secs(5), waiting)
            .await
            .expect("the waiter was never woken")
            .unwrap();
    }
}
