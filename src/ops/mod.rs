//! The operations core: every operation a client can ask for, written once over a
//! [`Principal`](crate::auth::Principal) and validated requests ([`names`]), and called by every
//! transport (HTTP, WebSocket, SSE). This layer alone applies authorization, the tenant
//! namespace, rate limits and the metrics of an operation; transports parse, call and encode.

pub mod acks;
pub mod authz;
pub mod consumers;
pub mod counters;
pub mod feed;
pub mod gauges;
pub mod kv;
pub mod messages;
pub mod names;
pub mod publish;
pub mod push;
pub mod replay;
pub mod schedules;
pub mod streams;
pub mod subscribe;
