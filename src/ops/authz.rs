//! Authorization that needs JetStream's view of a resource, not only the token.
//!
//! A tenant (a token with a `prefix`) reads only subjects under `<prefix>.`. Subject filters the
//! tenant names are placed in its namespace by [`Principal::filters_in`], but a durable consumer
//! is created by an administrator and may deliver any subject of its stream: consuming or acking
//! through it would hand another tenant's messages over (and take them away from their owner).
//! So every path that uses a durable consumer — fetch, acks, WebSocket and SSE `consumer=`,
//! multiplexed `subscribe` with a consumer, consumer info — asks here first.

use std::collections::HashMap;
use std::time::Duration;

use tokio::time::Instant;

use crate::auth::Principal;
use crate::error::ApiError;
use crate::nats::Nats;
use crate::nats::consumers::filter_subjects;

/// Checks that `principal` may use the durable consumer `stream`/`consumer`: always, without a
/// tenant prefix (no JetStream request then); with one, only when every filter of the consumer
/// lies inside the tenant's namespace.
pub async fn use_consumer(
    nats: &Nats,
    principal: &Principal,
    stream: &str,
    consumer: &str,
) -> Result<(), ApiError> {
    if principal.permissions.prefix.is_none() {
        return Ok(());
    }
    let info = nats.consumer_info(stream, consumer).await?;
    principal.check_consumer(stream, consumer, &filter_subjects(&info.config))
}

/// How long a WebSocket session trusts a consumer check before asking again.
pub const CONSUMER_CHECK_TTL: Duration = Duration::from_secs(10);

/// The consumer checks of one long-lived session (a WebSocket): a tenant's answer is
/// remembered for [`CONSUMER_CHECK_TTL`], so acks do not each cost a JetStream request.
#[derive(Debug, Default)]
pub struct ConsumerGrants {
    checked: HashMap<(String, String), Instant>,
}

impl ConsumerGrants {
    /// [`use_consumer`], answered from the session's memory while fresh.
    pub async fn check(
        &mut self,
        nats: &Nats,
        principal: &Principal,
        stream: &str,
        consumer: &str,
    ) -> Result<(), ApiError> {
        if principal.permissions.prefix.is_none() {
            return Ok(());
        }
        let key = (stream.to_owned(), consumer.to_owned());
        let fresh = self
            .checked
            .get(&key)
            .is_some_and(|at| at.elapsed() < CONSUMER_CHECK_TTL);
        if fresh {
            return Ok(());
        }
        use_consumer(nats, principal, stream, consumer).await?;
        // Bounded: at most as many entries as consumers the tenant may use.
        if self.checked.len() >= 1024 {
            self.checked.clear();
        }
        self.checked.insert(key, Instant::now());
        Ok(())
    }
}
