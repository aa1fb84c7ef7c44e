//! Syslog (RFC 5424) over TCP with octet-counting framing (RFC 6587) or over TLS (RFC 5425):
//! one audit record a message, its body JSON or CEF, its structured data naming the log
//! position and event id so a receiver can resume and de-duplicate without parsing the body.
use super::cef;
use super::connection::{Connection, Endpoint, USER_TIMEOUT};
use super::{Sink, SinkError};
use annals_projections::audit::AuditRecord;
use std::fmt::Write;
use std::time::Duration;

/// The structured-data element. 32473 is the enterprise number RFC 5612 sets aside for
/// examples; a receiver matches on the name `annals`.
pub const SD_ID: &str = "annals@32473";

/// How long bytes written on a connection must survive before the sink counts them as
/// received: syslog has no acknowledgement, and a receiver that stops discards what it had
/// not yet read. Longer than the connection's TCP user timeout, so bytes the receiver's host
/// never acknowledged fail the connection before they count. Everything written within this
/// time before a connection is lost is sent again.
const SETTLE: Duration = Duration::from_secs(12);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Body {
    Json,
    Cef,
}

/// What every message of one sink shares.
#[derive(Clone, Debug)]
pub struct Header {
    /// RFC 5424 facility (0–23); 10 is "security/authorization".
    pub facility: u8,
    pub hostname: String,
    pub procid: String,
    pub body: Body,
}

impl Header {
    pub fn new(facility: u8, body: Body) -> Self {
        let hostname = rustix::system::uname().nodename().to_string_lossy().into_owned();
        Header { facility, hostname: printable(&hostname, 255), procid: std::process::id().to_string(), body }
    }
}

/// A header field: printable US-ASCII without spaces, at most `max` characters, `-` if empty.
fn printable(value: &str, max: usize) -> String {
    let s: String = value.chars().filter(|c| c.is_ascii_graphic()).take(max).collect();
    if s.is_empty() {
        "-".into()
    } else {
        s
    }
}

/// A PARAM-VALUE escapes `"`, `\` and `]`.
fn param(out: &mut String, value: &str) {
    for c in value.chars() {
        if matches!(c, '"' | '\\' | ']') {
            out.push('\\');
        }
        out.push(c);
    }
}

/// JSON with every non-ASCII character escaped: the body is then plain ASCII (RFC 5424's
/// MSG-ANY), with no byte-order mark for receivers to trip over.
fn ascii_json(record: &AuditRecord) -> Result<String, SinkError> {
    let json = serde_json::to_string(record).map_err(|e| SinkError::Encode(e.to_string()))?;
    if json.is_ascii() {
        return Ok(json);
    }
    let mut out = String::with_capacity(json.len() + 16);
    for c in json.chars() {
        if c.is_ascii() {
            out.push(c);
        } else {
            let mut units = [0u16; 2];
            for u in c.encode_utf16(&mut units) {
                let _ = write!(out, "\\u{u:04x}");
            }
        }
    }
    Ok(out)
}

/// One RFC 5424 message: `<PRI>1 TIMESTAMP HOST annals PROCID MSGID [SD] BODY`.
pub fn message(header: &Header, record: &AuditRecord) -> Result<String, SinkError> {
    let pri = u32::from(header.facility) * 8 + u32::from(record.severity.syslog());
    let time = chrono::DateTime::from_timestamp_millis(record.time)
        .unwrap_or_default()
        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    let msgid = printable(&cef::name(record).replace(' ', "_"), 32);
    let mut out = String::with_capacity(640);
    let _ = write!(
        out,
        "<{pri}>1 {time} {} annals {} {msgid} [{SD_ID} position=\"{}\" eventId=\"",
        header.hostname, header.procid, record.position
    );
    param(&mut out, &record.id);
    out.push_str("\" type=\"");
    param(&mut out, record.annals_type);
    out.push_str("\"] ");
    match header.body {
        Body::Json => out.push_str(&ascii_json(record)?),
        Body::Cef => out.push_str(&cef::encode(record)),
    }
    Ok(out)
}

/// RFC 6587 octet counting: the message's length in bytes, a space, the message.
pub fn frame(message: &str, out: &mut Vec<u8>) {
    out.extend_from_slice(message.len().to_string().as_bytes());
    out.push(b' ');
    out.extend_from_slice(message.as_bytes());
}

/// A syslog receiver over TCP or TLS.
pub struct Syslog {
    endpoint: Endpoint,
    header: Header,
    connection: Option<Connection>,
}

impl Syslog {
    pub fn new(endpoint: Endpoint, header: Header) -> Self {
        Syslog { endpoint, header, connection: None }
    }
}

#[async_trait::async_trait]
impl Sink for Syslog {
    fn settle(&self) -> Duration {
        SETTLE.max(USER_TIMEOUT + Duration::from_secs(2))
    }

    async fn send(&mut self, records: &[AuditRecord]) -> Result<(), SinkError> {
        let mut bytes = Vec::with_capacity(records.len() * 640);
        for r in records {
            frame(&message(&self.header, r)?, &mut bytes);
        }
        let conn = match &mut self.connection {
            Some(c) => c,
            None => self.connection.insert(self.endpoint.connect().await?),
        };
        conn.write(&bytes).await
    }

    fn intact(&self) -> bool {
        self.connection.as_ref().is_none_or(|c| c.open())
    }

    fn reset(&mut self) {
        self.connection = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sinks::tests::record;

    fn header(body: Body) -> Header {
        Header { facility: 10, hostname: "idp-1".into(), procid: "77".into(), body }
    }

    #[test]
    fn a_record_becomes_one_rfc5424_message_with_position_and_id_in_structured_data() {
        // given a failed login (warning) and facility 10
        let r = record();
        // when it becomes a message
        let m = message(&header(Body::Json), &r).unwrap();
        // then PRI is 10*8+4, the time is the event's, MSGID the Keycloak type, SD names it
        assert!(
            m.starts_with("<84>1 2026-11-18T11:06:40.123Z idp-1 annals 77 LOGIN_ERROR [annals@32473 position=\"42\" eventId=\"0190aaaa-0000-7000-8000-000000000001\" type=\"auth_request.credentials_rejected\"] {"),
            "{m}"
        );
        let body: serde_json::Value = serde_json::from_str(m.split_once("] ").unwrap().1).unwrap();
        assert_eq!(body, serde_json::to_value(&r).unwrap());
    }

    #[test]
    fn the_json_body_is_plain_ascii_and_decodes_to_the_same_text() {
        // given a realm name outside ASCII, beyond the BMP too
        let mut r = record();
        r.realm_name = Some("Zürich 🔐".into());
        // when encoded
        let m = message(&header(Body::Json), &r).unwrap();
        // then the message is ASCII and the JSON still says the same
        assert!(m.is_ascii());
        let body: serde_json::Value = serde_json::from_str(m.split_once("] ").unwrap().1).unwrap();
        assert_eq!(body["realmName"], "Zürich 🔐");
    }

    #[test]
    fn octet_counting_counts_bytes() {
        let mut out = Vec::new();
        frame("<84>1 é", &mut out);
        frame("x", &mut out);
        assert_eq!(out, "8 <84>1 é1 x".as_bytes());
    }

    #[test]
    fn the_cef_body_follows_the_structured_data() {
        let m = message(&header(Body::Cef), &record()).unwrap();
        assert!(m.split_once("] ").unwrap().1.starts_with("CEF:0|Annals|Annals|"), "{m}");
    }

    #[test]
    fn structured_data_values_are_escaped() {
        let mut r = record();
        r.id = "a\"] [x@1 y=\"z".into();
        let m = message(&header(Body::Json), &r).unwrap();
        assert!(m.contains("eventId=\"a\\\"\\] [x@1 y=\\\"z\""), "{m}");
    }

    #[test]
    fn an_admin_record_is_named_by_operation_and_resource() {
        let mut r = record();
        r.r#type = None;
        r.operation_type = Some(annals_projections::audit::Operation::Update);
        r.resource_type = Some("REALM_ROLE_MAPPING");
        let m = message(&header(Body::Json), &r).unwrap();
        assert!(m.contains(" 77 UPDATE_REALM_ROLE_MAPPING ["), "{m}");
    }
}
