//! Integration tests: the public HTTP surface against a real nats-server, with what is stored
//! checked through a direct NATS client.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests fail loudly")]

mod asyncapi;
mod batch;
mod browser;
#[allow(dead_code, reason = "not every helper is used by every test file")]
mod harness;
mod isolation;
mod kv;
mod layers;
mod pinned;
mod publish;
mod publish_stream;
mod push;

mod cli;
mod console;
mod consumers;
mod container;
mod contract;
mod control;
mod counters;
mod deploy;
mod fanout;
mod faults;
mod hardening;
mod http2;
mod messages;
mod misc;
mod node;
mod observability;
mod readme;
mod scaleout;
mod schedules;
mod sdk;
mod security;
mod sse;
mod startup;
mod streams;
mod tenants;
mod ws;
