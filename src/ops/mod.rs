//! The operations core: rules about who may do what, written once and called by every transport
//! (HTTP, WebSocket, SSE).
//!
//! Today it holds the tenant checks on durable consumers; publish, fetch, ack, subscribe and
//! administration move here as the transports become thin adapters.

pub mod authz;
