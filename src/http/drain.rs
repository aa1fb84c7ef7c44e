//! Requests under way, and the gate a stopping node closes on new ones.
//!
//! A graceful stop closes the gate first: new requests (on connections kept alive or new ones,
//! which are still accepted) get 503 with `Connection: close` and `Retry-After`, telling their
//! clients nothing ran, and the ones under way finish while every actor
//! they need still runs. Only then are the actor hosts drained and the HTTP workers stopped:
//! actors live on the worker that activated them, and a request whose second command (a
//! session's tokens after a code's redemption) met a closed host would have spent the code
//! and given nothing.
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

#[derive(Default)]
pub struct RequestGate {
    inflight: AtomicUsize,
    closed: AtomicBool,
    idle: tokio::sync::Notify,
}

/// One admitted request; leaving (or being dropped with its connection) counts it out.
pub struct Admitted<'a>(&'a RequestGate);

impl Drop for Admitted<'_> {
    fn drop(&mut self) {
        if self.0.inflight.fetch_sub(1, Ordering::SeqCst) == 1 {
            self.0.idle.notify_waiters();
        }
    }
}

impl RequestGate {
    /// Admits a request, unless the gate is closed. SeqCst on both sides: a request that
    /// passed the check is always seen by [`RequestGate::close`]'s wait.
    pub fn admit(&self) -> Option<Admitted<'_>> {
        self.inflight.fetch_add(1, Ordering::SeqCst);
        let admitted = Admitted(self);
        (!self.closed.load(Ordering::SeqCst)).then_some(admitted)
    }

    /// Closes the gate and waits (at most `deadline`) until no admitted request is under way.
    /// Returns how many still were when it gave up.
    pub async fn close(&self, deadline: Duration) -> usize {
        self.closed.store(true, Ordering::SeqCst);
        let until = tokio::time::Instant::now() + deadline;
        loop {
            let left = self.inflight.load(Ordering::SeqCst);
            if left == 0 || tokio::time::Instant::now() >= until {
                return left;
            }
            let _ = tokio::time::timeout(Duration::from_millis(20), self.idle.notified()).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[tokio::test]
    async fn given_a_request_under_way_when_the_gate_closes_then_new_ones_are_refused_and_the_close_waits_for_it() {
        let gate = Arc::new(RequestGate::default());
        let (release, released) = tokio::sync::oneshot::channel::<()>();
        let running = gate.clone();
        let (entered, admitted) = tokio::sync::oneshot::channel();
        let request = tokio::spawn(async move {
            let _in = running.admit().expect("admitted while open");
            let _ = entered.send(());
            let _ = released.await;
        });
        admitted.await.unwrap();
        let closing = gate.clone();
        let close = tokio::spawn(async move { closing.close(Duration::from_secs(10)).await });
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(gate.admit().is_none(), "closed: a new request is refused");
        assert!(!close.is_finished(), "the close waits for the request under way");
        release.send(()).unwrap();
        request.await.unwrap();
        assert_eq!(close.await.unwrap(), 0, "and returns once it is done");
    }

    #[tokio::test]
    async fn given_a_request_that_never_ends_when_the_gate_closes_then_the_wait_gives_up_at_the_deadline() {
        let gate = RequestGate::default();
        let _stuck = gate.admit().unwrap();
        assert_eq!(gate.close(Duration::from_millis(50)).await, 1);
    }
}
