//! Consumer gauges: the lag of consumers created through jetway, refreshed in the background
//! and exported by [`crate::metrics`].

use std::time::Duration;

use crate::error::ApiError;
use crate::metrics::ConsumerGauge;
use crate::nats::Nats;
use crate::nats::consumers::MANAGED_METADATA_KEY;

/// Refreshes the consumer gauges of consumers created through jetway, until shutdown.
pub fn spawn_consumer_gauges(
    nats: Nats,
    every: Duration,
    max: usize,
    tasks: &tokio_util::task::TaskTracker,
    shutdown: tokio_util::sync::CancellationToken,
) {
    if max == 0 {
        return;
    }
    tasks.spawn(async move {
        let mut tick = tokio::time::interval(every);
        loop {
            tokio::select! {
                () = shutdown.cancelled() => return,
                _ = tick.tick() => {}
            }
            match collect_consumer_gauges(&nats, max).await {
                Ok(gauges) => nats.metrics().set_consumers(gauges),
                Err(err) => tracing::debug!(error = %err, "consumer gauges not refreshed"),
            }
        }
    });
}

async fn collect_consumer_gauges(nats: &Nats, max: usize) -> Result<Vec<ConsumerGauge>, ApiError> {
    let mut gauges = Vec::new();
    for stream in nats.list_streams().await? {
        if stream.state.consumer_count == 0 {
            continue;
        }
        for consumer in nats.list_consumers(&stream.config.name).await? {
            if !consumer.config.metadata.contains_key(MANAGED_METADATA_KEY) {
                continue;
            }
            if gauges.len() >= max {
                return Ok(gauges);
            }
            gauges.push(ConsumerGauge {
                stream: consumer.stream_name.clone(),
                consumer: consumer.name.clone(),
                num_pending: consumer.num_pending,
                num_ack_pending: consumer.num_ack_pending as u64,
                num_redelivered: consumer.num_redelivered as u64,
            });
        }
    }
    Ok(gauges)
}
