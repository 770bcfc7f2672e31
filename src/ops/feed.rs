//! Live fan-out: every live subscriber on this replica with the same stream, filters, encoding
//! and namespace ([`FeedKey`]) reads one shared JetStream ordered consumer, the *feed*, instead
//! of one consumer each. The hub that spreads a feed's messages is [`crate::fanout`]; this
//! module runs the feeds and each subscriber's [`Tail`].
//!
//! A subscriber is in one of two states:
//! - **own consumer**: a replay from where it asked to start (or a catch-up, below), through its
//!   own ordered consumer. Once that replay is caught up it subscribes to the feed and keeps
//!   replaying until it can take over without a gap or a duplicate: when it has delivered
//!   everything up to the feed's position when it subscribed, or when the next feed item follows
//!   what it delivered (`prev <= last < seq`). Its own consumer is then deleted.
//! - **following** the feed: feed items with a sequence past the last one delivered are passed
//!   on. A subscriber that falls more than the feed's ring behind (its client reads slower than
//!   the stream is written) is moved to a catch-up consumer of its own from the next sequence it
//!   owes, reads as fast as its client allows (pull-based, as every replay), and hands over again
//!   once caught up. The feed itself never waits for anyone.
//!
//! `deliver=new` subscribers join the feed directly: the feed's position at subscribe time is at
//! most the stream's last sequence read after it, so everything after that sequence reaches them.
//! Ack mode (`consumer=`) does not fan out: a durable consumer is shared by JetStream itself.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::broadcast::{self, error::RecvError, error::TryRecvError};
use tokio::time::Instant;

use super::replay::{self, Replay, ReplaySpec, Start};
use crate::auth::Principal;
use crate::error::ApiError;
use crate::fanout::{FeedKey, Hub, Item, Member, Phase, Shown};
use crate::message::Message;
use crate::state::AppState;

/// What a subscriber receives.
#[derive(Debug, Clone)]
pub enum Event {
    /// A message, shown as the subscriber names things (shared with every subscriber of a feed).
    Message(Arc<Shown>),
    /// Sequences that will never be delivered.
    Gap { from: u64, to: u64 },
    /// The end of the stream as it was at subscribe time was reached; sent once.
    CaughtUp { seq: u64 },
}

/// First wait before joining a feed again after one ended or failed to start.
const JOIN_BACKOFF: Duration = Duration::from_secs(1);
/// Longest wait between attempts to join a feed.
const MAX_JOIN_BACKOFF: Duration = Duration::from_secs(30);

/// One subscription's deliveries. Dropping it stops them; [`Tail::close`] also deletes an own
/// ordered consumer right away.
pub struct Tail(Mode);

enum Mode {
    /// Ack mode: a durable consumer, unchanged by fan-out.
    Durable {
        replay: Box<Replay>,
        principal: Principal,
    },
    Live(Box<Live>),
    /// An ordered replay whose messages are shown by a function of the operation that started
    /// it (a key-value watch shows entries); a message it shows as nothing is skipped.
    Mapped {
        replay: Box<Replay>,
        show: ShowFn,
    },
}

/// How a [`Tail::shown`] subscription shows a message.
pub type ShowFn = Arc<dyn Fn(Message) -> Option<Shown> + Send + Sync>;

impl Tail {
    /// Starts the deliveries `spec` describes for `principal` (whose read permission and
    /// namespace the caller checked and applied).
    pub async fn start(
        state: &AppState,
        principal: &Principal,
        spec: ReplaySpec,
    ) -> Result<Self, ApiError> {
        if spec.consumer.is_some() {
            let replay = Replay::start(state.nats.clone(), state.ack_keys.clone(), spec).await?;
            return Ok(Self(Mode::Durable {
                replay: Box::new(replay),
                principal: principal.clone(),
            }));
        }
        crate::validate::name("stream", &spec.stream)?;
        for filter in &spec.filters {
            crate::validate::subject_filter(filter)?;
        }
        let key = FeedKey::new(
            &spec.stream,
            &spec.filters,
            spec.encoding,
            principal.tenant(),
        )
        .with_binary(spec.binary);
        let mut live = Live {
            state: state.clone(),
            principal: principal.clone(),
            key,
            last: match spec.start {
                Start::Sequence(seq) => seq.saturating_sub(1),
                _ => 0,
            },
            delivered_any: false,
            caught_up_sent: false,
            own: None,
            own_caught_up: false,
            member: None,
            rx: None,
            pending: None,
            queue: VecDeque::new(),
            join_after: Instant::now(),
            join_backoff: JOIN_BACKOFF,
            spec,
        };
        if live.spec.start == Start::New && live.follow_from_now().await? {
            return Ok(Self(Mode::Live(Box::new(live))));
        }
        live.own = Some(Box::new(
            Replay::start(
                state.nats.clone(),
                state.ack_keys.clone(),
                live.spec.clone(),
            )
            .await?,
        ));
        Ok(Self(Mode::Live(Box::new(live))))
    }

    /// Deliveries of an ordered replay of its own, each message shown by `show` (no feed: the
    /// replay's messages are not stream messages as subscribers see them).
    pub fn mapped(replay: Replay, show: ShowFn) -> Self {
        Self(Mode::Mapped {
            replay: Box::new(replay),
            show,
        })
    }

    /// The next event. `want` is how many messages the caller could take now (its credit); it
    /// sizes pulls from a consumer of the subscription's own.
    pub async fn next(&mut self, want: usize) -> Result<Event, ApiError> {
        // The futures of a consumer of the subscription's own (pull, recovery, recreation) are
        // boxed: every open subscription's task is as large as its largest future, and most
        // subscriptions only wait on their feed.
        match &mut self.0 {
            Mode::Durable { replay, principal } => {
                let event = match replay.ready(want) {
                    Some(event) => event,
                    None => Box::pin(replay.next(want)).await?,
                };
                Ok(durable_event(principal, event))
            }
            Mode::Live(live) => live.next(want).await,
            Mode::Mapped { replay, show } => loop {
                let event = match replay.ready(want) {
                    Some(event) => event,
                    None => Box::pin(replay.next(want)).await?,
                };
                if let Some(event) = mapped_event(show, event) {
                    return Ok(event);
                }
            },
        }
    }

    /// The next event if it is at hand without waiting (see [`Replay::ready`]): only while the
    /// subscription reads through a consumer of its own, before it is caught up. `None` when
    /// [`Tail::next`] has to be called.
    pub fn ready(&mut self, want: usize) -> Option<Event> {
        match &mut self.0 {
            Mode::Durable { replay, principal } => {
                Some(durable_event(principal, replay.ready(want)?))
            }
            Mode::Live(live) => live.ready(want),
            Mode::Mapped { replay, show } => loop {
                if let Some(event) = mapped_event(show, replay.ready(want)?) {
                    return Some(event);
                }
            },
        }
    }

    /// Stops, deleting an own ordered consumer now (it expires by itself otherwise); leaves the
    /// feed (the last subscriber to leave stops it).
    pub async fn close(self) {
        match self.0 {
            Mode::Durable { replay, .. } | Mode::Mapped { replay, .. } => {
                Box::pin(replay.close()).await;
            }
            Mode::Live(mut live) => {
                if let Some(own) = live.own.take() {
                    Box::pin(own.close()).await;
                }
            }
        }
    }
}

/// An event of a durable consumer's replay, as the subscriber sees it.
fn durable_event(principal: &Principal, event: replay::Event) -> Event {
    match event {
        replay::Event::Message(message) => Event::Message(Arc::new(show(principal, *message))),
        replay::Event::Gap { from, to } => Event::Gap { from, to },
        replay::Event::CaughtUp { seq } => Event::CaughtUp { seq },
    }
}

/// An event of a mapped replay; `None` for a message its function shows as nothing.
fn mapped_event(show: &ShowFn, event: replay::Event) -> Option<Event> {
    Some(match event {
        replay::Event::Message(message) => Event::Message(Arc::new(show(*message)?)),
        replay::Event::Gap { from, to } => Event::Gap { from, to },
        replay::Event::CaughtUp { seq } => Event::CaughtUp { seq },
    })
}

fn show(principal: &Principal, mut message: Message) -> Shown {
    principal.present(&mut message);
    Shown::new(&message)
}

/// A live (ordered, ack-less) subscription.
struct Live {
    state: AppState,
    principal: Principal,
    /// The subscription, for consumers of its own (the start is replaced for catch-ups).
    spec: ReplaySpec,
    key: FeedKey,
    /// Every message the subscription should see up to this stream sequence was delivered (or
    /// reported in a gap).
    last: u64,
    delivered_any: bool,
    caught_up_sent: bool,
    /// The consumer of its own (replay or catch-up), while not following the feed.
    own: Option<Box<Replay>>,
    /// The own consumer reached the end of the stream as it was when it started.
    own_caught_up: bool,
    member: Option<Member>,
    /// Subscribed to the feed: every item sent after the hub's position at that moment (any
    /// later position too) reaches it, unless it lags.
    rx: Option<broadcast::Receiver<Arc<Item>>>,
    /// A feed item read while still on the own consumer, not yet delivered.
    pending: Option<Arc<Item>>,
    queue: VecDeque<Event>,
    join_after: Instant,
    join_backoff: Duration,
}

impl Live {
    /// Joins the feed for a `deliver=new` subscription; `false` when no feed could start, and
    /// the subscription should use a consumer of its own (which reports why, if it cannot either).
    async fn follow_from_now(&mut self) -> Result<bool, ApiError> {
        let wait = self.state.config.api_timeout * 3;
        let member = self.join();
        // Subscribed before the stream's last sequence is read: nothing after it is missed.
        let (rx, _) = member.hub.subscribe();
        let hub = member.hub.clone();
        self.member = Some(member);
        if !matches!(tokio::time::timeout(wait, hub.started()).await, Ok(true)) {
            self.member = None;
            return Ok(false);
        }
        let last = replay::last_sequence(&self.state.nats, &self.spec.stream).await?;
        self.last = last;
        self.rx = Some(rx);
        self.caught_up_sent = true;
        self.queue.push_back(Event::CaughtUp { seq: last });
        Ok(true)
    }

    /// Joins (or creates, and starts) the feed for this subscription's key.
    fn join(&self) -> Member {
        let (member, created) = self.state.feeds.join(&self.key);
        if created {
            spawn_feed(&self.state, member.hub.clone());
        }
        member
    }

    async fn next(&mut self, want: usize) -> Result<Event, ApiError> {
        loop {
            if let Some(event) = self.queue.pop_front() {
                return Ok(event);
            }
            if self.own.is_some() {
                self.join_when_due();
                if self.feed_starting() {
                    Box::pin(self.feed_started()).await;
                }
                if self.hand_over() {
                    continue;
                }
                let Some(own) = self.own.as_mut() else {
                    continue;
                };
                // What has arrived is taken without a future (boxed, as large as a recovery).
                let event = match own.ready(want) {
                    Some(event) => event,
                    None => Box::pin(own.next(want)).await?,
                };
                self.take_own(event);
                continue;
            }
            let item = match self.pending.take() {
                Some(item) => item,
                None => {
                    let Some(rx) = self.rx.as_mut() else {
                        Box::pin(self.catch_up()).await?;
                        continue;
                    };
                    match rx.recv().await {
                        Ok(item) => item,
                        Err(RecvError::Lagged(_)) => {
                            // A slow client: it reads through a consumer of its own, at its pace.
                            self.state.metrics.feed_catch_up();
                            Box::pin(self.catch_up()).await?;
                            continue;
                        }
                        Err(RecvError::Closed) => {
                            Box::pin(self.catch_up()).await?;
                            continue;
                        }
                    }
                }
            };
            let (Some(seq), Some(prev)) = (item.seq(), item.prev()) else {
                // The feed stopped: carry on alone, and join a new feed once caught up.
                self.member = None;
                Box::pin(self.catch_up()).await?;
                continue;
            };
            if seq <= self.last {
                continue;
            }
            if prev > self.last {
                // Something between what was delivered and this item did not come through the
                // feed: read it through a consumer of its own.
                Box::pin(self.catch_up()).await?;
                continue;
            }
            match &*item {
                Item::Message { .. } => {
                    let Some(shown) = item.shown() else {
                        // The ring gave up the message (too many bytes behind): catch up alone.
                        self.state.metrics.feed_catch_up();
                        Box::pin(self.catch_up()).await?;
                        continue;
                    };
                    self.last = seq;
                    self.delivered_any = true;
                    return Ok(Event::Message(shown));
                }
                Item::Gap { from, to, .. } => {
                    let from = (*from).max(self.last + 1);
                    self.last = *to;
                    return Ok(Event::Gap { from, to: *to });
                }
                Item::End => continue,
            }
        }
    }

    /// See [`Tail::ready`]. Once the own consumer is caught up (it may hand over to the feed),
    /// or while following the feed, every event goes through [`Live::next`].
    fn ready(&mut self, want: usize) -> Option<Event> {
        if let Some(event) = self.queue.pop_front() {
            return Some(event);
        }
        if self.own_caught_up || self.rx.is_some() {
            return None;
        }
        let event = self.own.as_mut()?.ready(want)?;
        self.take_own(event);
        self.queue.pop_front()
    }

    /// Records what the own consumer delivered and queues it for the caller.
    fn take_own(&mut self, event: replay::Event) {
        match event {
            replay::Event::Message(message) => {
                self.last = self.last.max(message.seq);
                self.delivered_any = true;
                let shown = show(&self.principal, *message);
                self.queue.push_back(Event::Message(Arc::new(shown)));
            }
            replay::Event::Gap { from, to } => {
                self.last = self.last.max(to);
                self.queue.push_back(Event::Gap { from, to });
            }
            replay::Event::CaughtUp { seq } => {
                self.own_caught_up = true;
                // A catch-up after the subscription went live says nothing new to the client.
                if !self.caught_up_sent {
                    self.caught_up_sent = true;
                    self.queue.push_back(Event::CaughtUp { seq });
                }
            }
        }
    }

    /// Subscribes to the feed once the own consumer is caught up (and, for a start time, has
    /// delivered a message: a time after the last stored message says nothing about the feed's
    /// older items).
    fn join_when_due(&mut self) {
        if self.rx.is_some()
            || !self.own_caught_up
            || Instant::now() < self.join_after
            || (matches!(self.spec.start, Start::Time(_)) && !self.delivered_any)
        {
            return;
        }
        if self
            .member
            .as_ref()
            .is_none_or(|member| member.hub.phase() == Phase::Ended)
        {
            self.member = Some(self.join());
        }
        if let Some(member) = &self.member {
            self.rx = Some(member.hub.subscribe().0);
        }
    }

    /// Whether the feed just joined is still starting ([`Live::feed_started`] waits for it).
    fn feed_starting(&self) -> bool {
        self.rx.is_some()
            && self
                .member
                .as_ref()
                .is_some_and(|member| member.hub.phase() == Phase::Starting)
    }

    /// Waits (bounded) for a feed just joined to start, so that a subscription at the feed's
    /// position hands over at once instead of waiting for its own consumer's next message.
    async fn feed_started(&self) {
        let Some(member) = self.member.as_ref().filter(|_| self.rx.is_some()) else {
            return;
        };
        if member.hub.phase() == Phase::Starting {
            let wait = self.state.config.api_timeout * 3;
            let _ = tokio::time::timeout(wait, member.hub.started()).await;
        }
    }

    /// Switches from the own consumer to the feed when that loses and repeats nothing; `true`
    /// when it did.
    fn hand_over(&mut self) -> bool {
        let Some(member) = self.member.as_ref().filter(|_| self.rx.is_some()) else {
            return false;
        };
        // Every item after the feed's position reaches `rx`: nothing after `last` is lost.
        if self.last >= member.hub.pos() {
            return self.switch();
        }
        loop {
            if self.pending.is_none() {
                let Some(rx) = self.rx.as_mut() else {
                    return false;
                };
                match rx.try_recv() {
                    Ok(item) => self.pending = Some(item),
                    Err(TryRecvError::Empty) => return false,
                    Err(TryRecvError::Lagged(_)) => {
                        // The own consumer is slower than the feed: subscribe afresh.
                        let Some(member) = &self.member else {
                            return false;
                        };
                        let (rx, pos) = member.hub.subscribe();
                        self.rx = Some(rx);
                        if self.last >= pos {
                            return self.switch();
                        }
                        continue;
                    }
                    Err(TryRecvError::Closed) => {
                        self.rx = None;
                        return false;
                    }
                }
            }
            let Some(item) = self.pending.as_ref() else {
                return false;
            };
            match (item.prev(), item.seq()) {
                (Some(prev), Some(seq)) => {
                    if seq <= self.last {
                        self.pending = None; // the own consumer delivered it already
                        continue;
                    }
                    if prev <= self.last {
                        return self.switch();
                    }
                    return false; // the own consumer has to get there first
                }
                _ => {
                    // That feed ended; try another one later.
                    self.pending = None;
                    self.rx = None;
                    self.member = None;
                    self.join_after = Instant::now() + self.join_backoff;
                    self.join_backoff = (self.join_backoff * 2).min(MAX_JOIN_BACKOFF);
                    return false;
                }
            }
        }
    }

    fn switch(&mut self) -> bool {
        // Dropping the replay deletes its consumer in the background.
        self.own = None;
        self.own_caught_up = false;
        self.join_backoff = JOIN_BACKOFF;
        self.state.metrics.feed_handover();
        true
    }

    /// Leaves the feed's ring for a consumer of its own, from the first sequence not delivered.
    async fn catch_up(&mut self) -> Result<(), ApiError> {
        self.rx = None;
        self.pending = None;
        let mut spec = self.spec.clone();
        spec.start = Start::Sequence(self.last.saturating_add(1));
        let own = Replay::start(self.state.nats.clone(), self.state.ack_keys.clone(), spec).await?;
        self.own = Some(Box::new(own));
        self.own_caught_up = false;
        Ok(())
    }
}

/// Starts the feed of a new hub: one ordered consumer from the stream's current end, whose
/// messages go to every member, until the last member leaves (or the feed cannot recover).
fn spawn_feed(state: &AppState, hub: Arc<Hub>) {
    let state = state.clone();
    let tasks = state.tasks.clone();
    tasks.spawn(async move {
        let stop = hub.stop.clone();
        let shutdown = state.shutdown.clone();
        // Stopped by its last member or at shutdown, nobody needs telling; a feed that ended by
        // itself tells its subscribers, who carry on with consumers of their own.
        let ended_by_itself = tokio::select! {
            () = stop.cancelled() => false,
            () = shutdown.cancelled() => false,
            () = run_feed(&state, &hub) => true,
        };
        state.feeds.retire(&hub, ended_by_itself);
    });
}

async fn run_feed(state: &AppState, hub: &Hub) {
    let key = &hub.key;
    let spec = ReplaySpec {
        stream: key.stream.clone(),
        start: Start::New,
        filters: key.filters.clone(),
        consumer: None,
        group: None,
        pull_expires: replay::PULL_EXPIRES,
        encoding: key.encoding(),
        binary: key.binary,
        batch_messages: state.config.replay_batch,
        batch_bytes: usize::try_from(state.config.ws_max_buffered_bytes).unwrap_or(usize::MAX),
        heartbeat: state.config.replay_heartbeat,
    };
    let started = async {
        let after = replay::last_sequence(&state.nats, &key.stream).await?;
        let replay = Replay::after(state.nats.clone(), state.ack_keys.clone(), spec, after).await?;
        Ok::<_, ApiError>((replay, after))
    };
    let (mut replay, mut prev) = match started.await {
        Ok(started) => started,
        // An unknown stream is the subscriber's 404, answered by its own attempt.
        Err(err @ ApiError::StreamNotFound(_)) => {
            tracing::debug!(error = %err, stream.name = %key.stream, "live feed not started");
            return;
        }
        Err(err) => {
            tracing::warn!(error = %err, stream.name = %key.stream, "live feed not started; its subscribers use consumers of their own");
            return;
        }
    };
    hub.running(prev);
    tracing::debug!(stream.name = %key.stream, filters = ?key.filters, after = prev, "live feed started");
    let prefix = key.prefix.as_deref();
    loop {
        match replay.next(state.config.replay_batch).await {
            Ok(replay::Event::Message(message)) => {
                let mut message = *message;
                if prefix.is_some() {
                    message.subject = crate::auth::shown_under(prefix, &message.subject).to_owned();
                }
                let seq = message.seq;
                hub.send(Item::message(prev, Shown::new(&message)));
                prev = seq;
            }
            Ok(replay::Event::Gap { from, to }) => {
                hub.send(Item::Gap { prev, from, to });
                prev = to;
            }
            Ok(replay::Event::CaughtUp { .. }) => {}
            Err(err) => {
                tracing::warn!(error = %err, stream.name = %key.stream, "live feed stopped; its subscribers carry on with consumers of their own");
                break;
            }
        }
    }
    replay.close().await;
}
