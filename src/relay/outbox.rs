//! A relay connection's outbound queue, bounded in messages and in bytes (strfry's
//! `maxPendingOutboundBytes`): a live event that would pass the byte bound cuts the client at
//! once; replies to its own requests wait for room, a bounded time.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tokio::sync::{Notify, mpsc};
use tokio_tungstenite::tungstenite::Message;
use tokio_util::sync::CancellationToken;

/// A client whose queue has no room for a reply this long has stopped reading.
const SLOW_CLIENT: Duration = Duration::from_secs(5);
/// Bytes charged per message beside its text (the allocation and the channel slot), so that a
/// flood of tiny messages is bounded by bytes too.
const MESSAGE_OVERHEAD: usize = 64;

/// Bytes queued and not yet written, and a wake-up for senders waiting for room.
#[derive(Default)]
struct Pending {
    bytes: AtomicUsize,
    room: Notify,
}

/// The sending side, shared by the connection's reader and its OK answers.
#[derive(Clone)]
pub struct Outbox {
    tx: mpsc::Sender<Message>,
    pending: Arc<Pending>,
    max_bytes: usize,
    /// How long a reply waits for room ([`SLOW_CLIENT`]).
    patience: Duration,
    gone: CancellationToken,
}

/// The writer's side: messages in order; [`Drain::written`] frees their bytes.
pub struct Drain {
    rx: mpsc::Receiver<Message>,
    pending: Arc<Pending>,
}

fn cost(message: &Message) -> usize {
    match message {
        Message::Text(t) => t.len() + MESSAGE_OVERHEAD,
        _ => 0,
    }
}

impl Outbox {
    /// A queue of at most `messages` messages and `max_bytes` bytes; cutting cancels `gone`.
    pub fn new(messages: usize, max_bytes: usize, gone: CancellationToken) -> (Outbox, Drain) {
        let (tx, rx) = mpsc::channel(messages.max(1));
        let pending = Arc::new(Pending::default());
        let outbox = Outbox {
            tx,
            pending: pending.clone(),
            max_bytes,
            patience: SLOW_CLIENT,
            gone,
        };
        (outbox, Drain { rx, pending })
    }

    /// Take room for `len` bytes; a message always fits an empty queue (one event larger than
    /// the bound must not wedge the connection).
    fn reserve(&self, len: usize) -> bool {
        self.pending
            .bytes
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |queued| {
                (queued == 0 || queued.saturating_add(len) <= self.max_bytes)
                    .then_some(queued.saturating_add(len))
            })
            .is_ok()
    }

    fn release(&self, len: usize) {
        self.pending.bytes.fetch_sub(len, Ordering::AcqRel);
        self.pending.room.notify_waiters();
    }

    fn cut(&self, why: &str) {
        tracing::warn!("relay client {why}; disconnecting");
        self.gone.cancel();
    }

    /// Queue a live event without waiting: no room means the client is cut at once.
    pub fn push(&self, text: String) -> bool {
        let message = Message::text(text);
        let len = cost(&message);
        if !self.reserve(len) {
            self.cut(&format!(
                "has more than {} bytes waiting to be read",
                self.max_bytes
            ));
            return false;
        }
        match self.tx.try_send(message) {
            Ok(()) => true,
            Err(e) => {
                self.release(len);
                if matches!(e, mpsc::error::TrySendError::Full(_)) {
                    self.cut("has too many messages waiting to be read");
                }
                false
            }
        }
    }

    /// Queue a reply, waiting for room; a client that makes none for `SLOW_CLIENT` is cut.
    pub async fn send(&self, text: String) -> bool {
        let mut message = Message::text(text);
        let len = cost(&message);
        // Room now, in bytes and in slots (a REQ's answer, nearly always): queued at once,
        // without the timer and the wake-up registration the waiting path sets up per message.
        if self.reserve(len) {
            match self.tx.try_send(message) {
                Ok(()) => return true,
                Err(mpsc::error::TrySendError::Closed(_)) => {
                    self.release(len);
                    return false;
                }
                Err(mpsc::error::TrySendError::Full(back)) => {
                    self.release(len);
                    message = back;
                }
            }
        }
        let queued = async {
            loop {
                let room = self.pending.room.notified();
                tokio::pin!(room);
                room.as_mut().enable();
                if self.reserve(len) {
                    break;
                }
                room.await;
            }
            if self.tx.send(message).await.is_ok() {
                true
            } else {
                self.release(len);
                false
            }
        };
        match tokio::time::timeout(self.patience, queued).await {
            Ok(sent) => sent,
            Err(_) => {
                self.cut("stopped reading");
                false
            }
        }
    }

    /// Ask the writer to close, if there is room for it; nothing is charged.
    pub fn close(&self) {
        let _ = self.tx.try_send(Message::Close(None));
    }
}

impl Drain {
    pub async fn recv(&mut self) -> Option<Message> {
        self.rx.recv().await
    }

    /// The next message if one is queued now (the writer batches what is already there).
    pub fn try_recv(&mut self) -> Option<Message> {
        self.rx.try_recv().ok()
    }

    /// `message` is in the socket's hands: its bytes no longer count.
    pub fn written(&self, message_cost: usize) {
        self.pending.bytes.fetch_sub(message_cost, Ordering::AcqRel);
        self.pending.room.notify_waiters();
    }

    pub fn cost(message: &Message) -> usize {
        cost(message)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_live_event_past_the_byte_bound_cuts_at_once() {
        let gone = CancellationToken::new();
        let (outbox, mut drain) = Outbox::new(1_000, 1_000, gone.clone());
        assert!(outbox.push("x".repeat(600)));
        assert!(!gone.is_cancelled());
        assert!(!outbox.push("y".repeat(600)), "1,328 bytes > 1,000");
        assert!(gone.is_cancelled());
        let first = drain.recv().await.expect("the first is queued");
        assert_eq!(first.len(), 600);
    }

    #[tokio::test]
    async fn an_oversized_message_fits_an_empty_queue_and_replies_wait_for_room() {
        let gone = CancellationToken::new();
        let (outbox, mut drain) = Outbox::new(1_000, 100, gone.clone());
        assert!(outbox.push("z".repeat(500)));
        let waiting = tokio::spawn({
            let outbox = outbox.clone();
            async move { outbox.send("reply".into()).await }
        });
        tokio::task::yield_now().await;
        assert!(!waiting.is_finished(), "no room until the writer drains");
        let m = drain.recv().await.expect("queued");
        drain.written(Drain::cost(&m));
        assert!(waiting.await.expect("task"), "room was made");
        assert!(!gone.is_cancelled());
    }

    #[tokio::test]
    async fn a_reply_that_finds_no_room_in_time_cuts_the_client() {
        let gone = CancellationToken::new();
        let (mut outbox, _drain) = Outbox::new(1_000, 100, gone.clone());
        outbox.patience = Duration::from_millis(50);
        assert!(outbox.push("z".repeat(500)));
        assert!(!outbox.send("reply".into()).await);
        assert!(gone.is_cancelled());
    }
}
