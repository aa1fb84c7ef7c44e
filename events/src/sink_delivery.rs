//! Audit delivery facts that a SIEM cannot learn from its own side: one stream per sink
//! (stream id = the sink's name), holding each record the receiver refused for good. The
//! record itself stays in the log; this says that one receiver does not hold it, and why.
use serde::{Deserialize, Serialize};

/// The receiver answered a record (or the one-record batch holding it) with a refusal that
/// sending again does not cure (HTTP 400, 413, 422...), every time, for every attempt;
/// delivery went on past it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct SinkDeliveryRejected {
    /// The sink's configured name.
    pub sink: String,
    /// The refused record: its log position, event id and Annals event type.
    pub position: u64,
    pub event_id: String,
    pub event_type: String,
    /// The refused record's realm: the failure reaches that realm's audit readers.
    #[serde(default)]
    pub realm_id: Option<String>,
    /// The status the receiver answered, when it speaks HTTP.
    #[serde(default)]
    pub status: Option<u16>,
    /// The receiver's reason, shortened, as it gave it (never the record's body).
    pub reason: String,
    /// How many times it was sent before delivery went on.
    pub attempts: u32,
    pub at: i64,
}

event_enum! {
    /// Events of one sink's delivery (stream type `sink_delivery`, stream id the sink's name).
    SinkDeliveryEvent {
        Rejected(SinkDeliveryRejected) = "sink_delivery.rejected",
    }
}
