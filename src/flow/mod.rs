//! Flow tracking: packets grouped into bidirectional conversations.

mod key;
mod table;

pub use key::{Direction, Endpoint, FlowKey};
pub(crate) use table::FlowLookup;
pub use table::{
    EndReason, Flow, FlowConfig, FlowRef, FlowTable, FlowTableStats, TcpSeen, Tracked,
    bytes_per_flow,
};
