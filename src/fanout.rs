//! The in-process fan-out of live feeds: the registry of the feeds running on this replica, and
//! the hub each one sends through.
//!
//! A feed is one JetStream ordered consumer (run by [`crate::ops::feed`]) whose messages every
//! live subscriber with the same [`FeedKey`] receives. The hub is a bounded ring
//! ([`tokio::sync::broadcast`], [`FEED_BUFFER`] items): the feed never waits for a subscriber,
//! a subscriber that falls more than the ring behind finds out (`Lagged`) and catches up on its
//! own consumer. Items are shared (`Arc`), so a message is decoded and rendered once per feed,
//! not once per subscriber.
//!
//! Every item carries the stream sequence it covers and the one before it (`prev`): a
//! subscriber that has delivered everything up to sequence `L` can take over from any item with
//! `prev <= L < seq` without a gap or a duplicate. The hub's position (the last sequence sent)
//! lets a subscriber that is already ahead of the feed take over at once.
//!
//! The ring is bounded twice: by entries ([`FEED_BUFFER`]) and by bytes ([`FEED_BUFFER_BYTES`]):
//! once the entries sent since the oldest one still held exceed the byte bound, the oldest
//! entries give up their message, and a subscriber that reaches such an entry has fallen too far
//! behind, as if it had lagged.
//!
//! Membership is counted under the registry's lock: the first member creates the hub, the last
//! one to leave removes it and stops its feed, which deletes the consumer.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};

use bytes::Bytes;
use tokio::sync::{broadcast, watch};
use tokio_util::sync::CancellationToken;

use crate::message::{EncodingChoice, Message};
use crate::metrics::Metrics;

/// Items a feed's ring holds: how far (in messages) a subscriber may fall behind its feed before
/// it is moved to a catch-up consumer of its own.
pub const FEED_BUFFER: usize = 1024;

/// Bytes of rendered messages a feed's ring keeps for subscribers behind it: large messages
/// move a slow subscriber to its own consumer after fewer than [`FEED_BUFFER`] of them.
pub const FEED_BUFFER_BYTES: usize = 16 << 20;

/// The hub's position while its feed has not started yet: no subscriber is ahead of it.
const NOT_STARTED: u64 = u64::MAX;

/// What makes two live subscriptions the same feed: the stream, the subjects delivered (the
/// filters as JetStream applies them, a tenant's namespace included), how payloads are encoded
/// and how subjects are shown (a tenant sees them without its prefix). Everything else a frame
/// holds (a subscription id) is added per subscriber.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct FeedKey {
    pub stream: String,
    /// Sorted; order does not change what JetStream delivers.
    pub filters: Vec<String>,
    pub base64: bool,
    /// WebSocket binary frames (the payload as it is, not rendered).
    pub binary: bool,
    /// The tenant prefix removed from subjects when shown.
    pub prefix: Option<String>,
}

impl FeedKey {
    pub fn new(
        stream: &str,
        filters: &[String],
        encoding: EncodingChoice,
        prefix: Option<&str>,
    ) -> Self {
        let mut filters = filters.to_vec();
        filters.sort();
        Self {
            stream: stream.to_owned(),
            filters,
            base64: encoding == EncodingChoice::Base64,
            binary: false,
            prefix: prefix.map(str::to_owned),
        }
    }

    /// The same feed in WebSocket binary frames (a feed of its own).
    pub fn with_binary(mut self, binary: bool) -> Self {
        self.binary = binary;
        self
    }

    pub fn encoding(&self) -> EncodingChoice {
        if self.base64 {
            EncodingChoice::Base64
        } else {
            EncodingChoice::Auto
        }
    }
}

/// A message as a subscriber is shown it, rendered once: as JSON, or, when it carries its
/// payload as it is, as a WebSocket binary frame.
#[derive(Debug)]
pub struct Shown {
    /// Its stream sequence.
    pub seq: u64,
    /// The message as a JSON object (empty for a binary one).
    pub json: String,
    /// The binary frame of a message that carries its payload as it is (see
    /// [`binary_frame`]), without a subscription id.
    pub binary: Option<Bytes>,
}

impl Shown {
    pub fn new(message: &Message) -> Self {
        if let Some(raw) = &message.raw {
            return Self {
                seq: message.seq,
                json: String::new(),
                binary: Some(binary_frame(message, raw)),
            };
        }
        Self {
            seq: message.seq,
            json: message.to_json(),
            binary: None,
        }
    }
}

/// The JSON header of a binary `msg` frame: the message's fields but `data` and `encoding`.
#[derive(serde::Serialize)]
struct BinaryHeader<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    stream: &'a str,
    subject: &'a str,
    seq: u64,
    time: &'a str,
    headers: &'a std::collections::BTreeMap<String, String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    delivered: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    consumer_seq: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pending: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    ack_id: Option<&'a str>,
}

/// A WebSocket binary `msg` frame: the length of the header (4 bytes, big-endian), the header
/// (a JSON object starting `{"type":"msg"`), then the payload as it is.
pub fn binary_frame(message: &Message, payload: &[u8]) -> Bytes {
    let header = BinaryHeader {
        kind: "msg",
        stream: &message.stream,
        subject: &message.subject,
        seq: message.seq,
        time: &message.time,
        headers: &message.headers,
        delivered: message.delivered,
        consumer_seq: message.consumer_seq,
        pending: message.pending,
        ack_id: message.ack_id.as_deref(),
    };
    let mut frame = Vec::with_capacity(4 + 160 + payload.len());
    frame.extend_from_slice(&[0; 4]);
    if serde_json::to_writer(&mut frame, &header).is_err() {
        frame.truncate(4);
        frame.extend_from_slice(br#"{"type":"msg"}"#);
    }
    let header_len = u32::try_from(frame.len() - 4).unwrap_or(u32::MAX);
    frame[..4].copy_from_slice(&header_len.to_be_bytes());
    frame.extend_from_slice(payload);
    Bytes::from(frame)
}

/// What a feed sends.
#[derive(Debug)]
pub enum Item {
    /// The next message; `prev` is the sequence of the item before it (or where the feed
    /// started). The message is taken away when the ring holds too many bytes.
    Message {
        prev: u64,
        seq: u64,
        shown: Mutex<Option<Arc<Shown>>>,
    },
    /// Sequences `from..=to` will never be delivered.
    Gap { prev: u64, from: u64, to: u64 },
    /// The feed stopped (it could not recover its consumer): subscribers carry on without it.
    End,
}

impl Item {
    pub fn message(prev: u64, shown: Shown) -> Self {
        Self::Message {
            prev,
            seq: shown.seq,
            shown: Mutex::new(Some(Arc::new(shown))),
        }
    }

    /// The message of a message item, unless the ring gave it up.
    pub fn shown(&self) -> Option<Arc<Shown>> {
        match self {
            Self::Message { shown, .. } => {
                shown.lock().unwrap_or_else(PoisonError::into_inner).clone()
            }
            _ => None,
        }
    }

    fn evict(&self) {
        if let Self::Message { shown, .. } = self {
            shown.lock().unwrap_or_else(PoisonError::into_inner).take();
        }
    }

    fn bytes(&self) -> usize {
        self.shown().map_or(0, |shown| {
            shown.json.len() + shown.binary.as_ref().map_or(0, Bytes::len)
        })
    }

    /// The last stream sequence this item covers (`None` for `End`).
    pub fn seq(&self) -> Option<u64> {
        match self {
            Self::Message { seq, .. } => Some(*seq),
            Self::Gap { to, .. } => Some(*to),
            Self::End => None,
        }
    }

    /// The sequence covered by the item before it.
    pub fn prev(&self) -> Option<u64> {
        match self {
            Self::Message { prev, .. } | Self::Gap { prev, .. } => Some(*prev),
            Self::End => None,
        }
    }
}

/// The items a hub sent that may still be held, oldest first, with their bytes; and the sum.
type Window = (VecDeque<(Weak<Item>, usize)>, usize);

/// Where a hub's feed is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    Starting,
    Running,
    Ended,
}

/// One feed's fan-out point.
pub struct Hub {
    pub key: FeedKey,
    tx: broadcast::Sender<Arc<Item>>,
    /// The last sequence sent ([`NOT_STARTED`] before the feed runs). Written before the item
    /// is sent, so a subscriber that reads it after subscribing misses nothing after it.
    pos: AtomicU64,
    phase: watch::Sender<Phase>,
    /// Changed only under the registry's lock.
    members: AtomicUsize,
    /// The items sent that may still be held, oldest first, and their bytes.
    window: Mutex<Window>,
    /// Cancelled when the last member leaves: the feed stops and deletes its consumer.
    pub stop: CancellationToken,
}

impl Hub {
    fn new(key: FeedKey) -> Self {
        Self {
            key,
            tx: broadcast::channel(FEED_BUFFER).0,
            pos: AtomicU64::new(NOT_STARTED),
            phase: watch::channel(Phase::Starting).0,
            members: AtomicUsize::new(0),
            window: Mutex::new((VecDeque::new(), 0)),
            stop: CancellationToken::new(),
        }
    }

    /// The feed runs: everything after `pos` will be sent.
    pub fn running(&self, pos: u64) {
        self.pos.store(pos, Ordering::SeqCst);
        self.phase.send_replace(Phase::Running);
    }

    /// The last sequence sent.
    pub fn pos(&self) -> u64 {
        self.pos.load(Ordering::SeqCst)
    }

    /// Sends an item to every subscriber; never waits. Past [`FEED_BUFFER_BYTES`] of messages
    /// sent since the oldest one still held, the oldest give up their message.
    pub fn send(&self, item: Item) {
        if let Some(seq) = item.seq() {
            self.pos.store(seq, Ordering::SeqCst);
        }
        let item = Arc::new(item);
        let bytes = item.bytes();
        if bytes > 0 {
            let mut window = self.window.lock().unwrap_or_else(PoisonError::into_inner);
            let (items, held) = &mut *window;
            items.push_back((Arc::downgrade(&item), bytes));
            *held += bytes;
            loop {
                // The newest item always keeps its message.
                let over_bytes = *held > FEED_BUFFER_BYTES && items.len() > 1;
                if !over_bytes && items.len() <= FEED_BUFFER {
                    break;
                }
                let Some((oldest, size)) = items.pop_front() else {
                    break;
                };
                *held -= size;
                // Past the entry bound the ring itself has dropped it.
                if over_bytes && let Some(oldest) = oldest.upgrade() {
                    oldest.evict();
                }
            }
        }
        // No receiver right now is fine: members subscribe again when they need the feed.
        let _ = self.tx.send(item);
    }

    /// A receiver of every item sent from now on, and the position before them: every item
    /// with a sequence after the returned position reaches the receiver (unless it lags).
    pub fn subscribe(&self) -> (broadcast::Receiver<Arc<Item>>, u64) {
        let rx = self.tx.subscribe();
        (rx, self.pos())
    }

    /// Waits until the feed runs (`true`) or failed to start (`false`).
    pub async fn started(&self) -> bool {
        let mut phase = self.phase.subscribe();
        matches!(
            phase.wait_for(|p| *p != Phase::Starting).await.map(|p| *p),
            Ok(Phase::Running)
        )
    }

    pub fn phase(&self) -> Phase {
        *self.phase.borrow()
    }

    /// Members right now.
    pub fn members(&self) -> usize {
        self.members.load(Ordering::SeqCst)
    }
}

/// The feeds of one gateway. Cheap to clone.
#[derive(Clone)]
pub struct Feeds(Arc<Registry>);

struct Registry {
    hubs: Mutex<HashMap<FeedKey, Arc<Hub>>>,
    metrics: Metrics,
}

/// A subscriber's membership of a feed; leaving is dropping it.
pub struct Member {
    pub hub: Arc<Hub>,
    feeds: Feeds,
}

impl Drop for Member {
    fn drop(&mut self) {
        self.feeds.leave(&self.hub);
    }
}

impl Feeds {
    pub fn new(metrics: Metrics) -> Self {
        Self(Arc::new(Registry {
            hubs: Mutex::new(HashMap::new()),
            metrics,
        }))
    }

    fn hubs(&self) -> MutexGuard<'_, HashMap<FeedKey, Arc<Hub>>> {
        self.0.hubs.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Joins the feed for `key`, creating its hub when there is none (or only one that ended);
    /// `true` with a new hub, whose feed the caller must start.
    pub fn join(&self, key: &FeedKey) -> (Member, bool) {
        let mut hubs = self.hubs();
        let existing = hubs
            .get(key)
            .filter(|hub| hub.phase() != Phase::Ended)
            .cloned();
        let (hub, created) = match existing {
            Some(hub) => (hub, false),
            None => {
                let hub = Arc::new(Hub::new(key.clone()));
                if let Some(old) = hubs.insert(key.clone(), hub.clone()) {
                    // An ended hub still listed: it is replaced, and no longer counted.
                    self.0.metrics.feed_closed(&old.key.stream);
                }
                self.0.metrics.feed_opened(&key.stream);
                (hub, true)
            }
        };
        hub.members.fetch_add(1, Ordering::SeqCst);
        self.0.metrics.feed_member(&key.stream, 1);
        (
            Member {
                hub,
                feeds: self.clone(),
            },
            created,
        )
    }

    fn leave(&self, hub: &Arc<Hub>) {
        let mut hubs = self.hubs();
        self.0.metrics.feed_member(&hub.key.stream, -1);
        if hub.members.fetch_sub(1, Ordering::SeqCst) == 1 {
            hub.stop.cancel();
            if hubs.get(&hub.key).is_some_and(|h| Arc::ptr_eq(h, hub)) {
                hubs.remove(&hub.key);
                self.0.metrics.feed_closed(&hub.key.stream);
            }
        }
    }

    /// The feed behind `hub` stopped: new subscribers get a new feed; with `announce`, current
    /// ones are told (`End`) and carry on without it.
    pub fn retire(&self, hub: &Arc<Hub>, announce: bool) {
        {
            let mut hubs = self.hubs();
            if hubs.get(&hub.key).is_some_and(|h| Arc::ptr_eq(h, hub)) {
                hubs.remove(&hub.key);
                self.0.metrics.feed_closed(&hub.key.stream);
            }
        }
        hub.phase.send_replace(Phase::Ended);
        if announce {
            hub.send(Item::End);
        }
    }

    /// Feeds listed now.
    pub fn len(&self) -> usize {
        self.hubs().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(stream: &str) -> FeedKey {
        FeedKey::new(
            stream,
            &["b.>".to_owned(), "a.>".to_owned()],
            EncodingChoice::Auto,
            None,
        )
    }

    #[test]
    fn filters_in_any_order_share_a_feed_but_encoding_and_prefix_do_not() {
        let a = key("S");
        let b = FeedKey::new(
            "S",
            &["a.>".to_owned(), "b.>".to_owned()],
            EncodingChoice::Auto,
            None,
        );
        assert_eq!(a, b);
        let base64 = FeedKey::new("S", &a.filters, EncodingChoice::Base64, None);
        assert_ne!(a, base64);
        let tenant = FeedKey::new("S", &a.filters, EncodingChoice::Auto, Some("t"));
        assert_ne!(a, tenant);
        assert_ne!(a, key("S").with_binary(true));
    }

    #[test]
    fn the_first_member_creates_the_hub_and_the_last_one_removes_it() {
        let feeds = Feeds::new(Metrics::default());
        let (first, created) = feeds.join(&key("S"));
        assert!(created);
        let (second, created) = feeds.join(&key("S"));
        assert!(!created);
        assert!(Arc::ptr_eq(&first.hub, &second.hub));
        assert_eq!(first.hub.members(), 2);
        let stop = first.hub.stop.clone();
        drop(first);
        assert_eq!(feeds.len(), 1);
        assert!(!stop.is_cancelled());
        drop(second);
        assert!(feeds.is_empty());
        assert!(stop.is_cancelled());
    }

    #[test]
    fn a_retired_hub_is_replaced_for_new_members() {
        let feeds = Feeds::new(Metrics::default());
        let (old, _) = feeds.join(&key("S"));
        feeds.retire(&old.hub, true);
        let (new, created) = feeds.join(&key("S"));
        assert!(created);
        assert!(!Arc::ptr_eq(&old.hub, &new.hub));
        drop(old);
        assert_eq!(
            feeds.len(),
            1,
            "the old hub's last member leaving keeps the new hub"
        );
    }

    #[tokio::test]
    async fn a_subscriber_gets_everything_after_the_position_it_was_given() {
        let feeds = Feeds::new(Metrics::default());
        let (member, _) = feeds.join(&key("S"));
        let hub = &member.hub;
        hub.running(10);
        let gap = |prev, from, to| Item::Gap { prev, from, to };
        hub.send(gap(10, 11, 11));
        let (mut rx, pos) = hub.subscribe();
        assert_eq!(pos, 11);
        hub.send(gap(11, 12, 12));
        let item = rx.recv().await.expect("item");
        assert_eq!((item.prev(), item.seq()), (Some(11), Some(12)));
    }

    fn big(seq: u64, bytes: usize) -> Item {
        Item::message(
            seq - 1,
            Shown {
                seq,
                json: "x".repeat(bytes),
                binary: None,
            },
        )
    }

    #[tokio::test]
    async fn past_the_byte_bound_the_oldest_messages_are_given_up_and_the_newest_kept() {
        let feeds = Feeds::new(Metrics::default());
        let (member, _) = feeds.join(&key("S"));
        let hub = &member.hub;
        hub.running(0);
        let (mut rx, _) = hub.subscribe();
        let size = FEED_BUFFER_BYTES / 4;
        for seq in 1..=6 {
            hub.send(big(seq, size));
        }
        hub.send(big(7, FEED_BUFFER_BYTES * 2));
        let mut kept = Vec::new();
        for seq in 1..=7 {
            let item = rx.recv().await.expect("item");
            assert_eq!(item.seq(), Some(seq));
            kept.push(item.shown().is_some());
        }
        assert_eq!(kept, [false, false, false, false, false, false, true]);
        let held = hub.window.lock().expect("window").1;
        assert_eq!(held, FEED_BUFFER_BYTES * 2, "only the newest is held");
    }

    #[tokio::test]
    async fn a_receiver_further_behind_than_the_byte_bound_finds_the_oldest_messages_given_up() {
        let feeds = Feeds::new(Metrics::default());
        let (member, _) = feeds.join(&key("S"));
        let hub = &member.hub;
        hub.running(0);
        let (mut rx, _) = hub.subscribe();
        let size = FEED_BUFFER_BYTES / 4;
        for seq in 1..=6 {
            hub.send(big(seq, size));
        }
        let mut kept = Vec::new();
        for _ in 1..=6 {
            kept.push(rx.recv().await.expect("item").shown().is_some());
        }
        assert_eq!(kept, [false, false, true, true, true, true]);
    }

    #[tokio::test]
    async fn a_receiver_more_than_the_ring_behind_is_told_it_lagged_and_the_feed_never_waits() {
        let feeds = Feeds::new(Metrics::default());
        let (member, _) = feeds.join(&key("S"));
        let hub = &member.hub;
        hub.running(0);
        let (mut rx, _) = hub.subscribe();
        let total = u64::try_from(FEED_BUFFER).expect("fits") + 5;
        for seq in 1..=total {
            hub.send(Item::Gap {
                prev: seq - 1,
                from: seq,
                to: seq,
            });
        }
        assert!(matches!(
            rx.recv().await,
            Err(broadcast::error::RecvError::Lagged(5))
        ));
    }
}
