//! NATS JetStream: each audit record published on `PREFIX.REALM.TYPE` (the Annals event type,
//! whose dots make it two tokens: `annals.audit.demo.session.started`), so consumers pick
//! realms and kinds with subject wildcards. JetStream acknowledges each message once stored;
//! every message carries its event id as `Nats-Msg-Id`, so a redelivery within the stream's
//! duplicate window is dropped by the server itself.
use super::{Sink, SinkError};
use annals_projections::audit::AuditRecord;
use async_nats::jetstream::{self, message::PublishMessage};
use std::time::Duration;

/// The duplicate window of a stream Annals creates: longer than any redelivery run.
const DUPLICATE_WINDOW: Duration = Duration::from_secs(600);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// A subject token from free text: NATS forbids `.`, `*`, `>` and whitespace in one.
pub(super) fn token(value: &str) -> String {
    let t: String =
        value.chars().map(|c| if c.is_ascii_alphanumeric() || c == '-' || c == '_' { c } else { '_' }).collect();
    if t.is_empty() {
        "_".into()
    } else {
        t
    }
}

/// `PREFIX.REALM.TYPE`: the realm's name (or `_` for records of no realm), then the Annals
/// event type as it is written (`auth_request.authenticated`).
pub fn subject(prefix: &str, record: &AuditRecord) -> String {
    let realm = record.realm_name.as_deref().or(record.realm_id.as_deref()).unwrap_or("");
    let kind: Vec<String> = record.annals_type.split('.').map(token).collect();
    format!("{prefix}.{}.{}", token(realm), kind.join("."))
}

/// Whether `prefix` is one or more plain subject tokens.
pub fn valid_prefix(prefix: &str) -> bool {
    !prefix.is_empty() && prefix.split('.').all(|t| !t.is_empty() && token(t) == t)
}

pub struct Nats {
    /// The server URL as configured (credentials included; never logged).
    url: String,
    prefix: String,
    /// A stream to create (or use) for `PREFIX.>`, when Annals is to set it up.
    stream: Option<String>,
    context: Option<jetstream::Context>,
}

impl Nats {
    pub fn new(url: String, prefix: String, stream: Option<String>) -> Self {
        Nats { url, prefix, stream, context: None }
    }

    async fn connect(&self) -> Result<jetstream::Context, SinkError> {
        let unreachable = |e: &dyn std::fmt::Display| SinkError::Unreachable(format!("NATS: {e}"));
        // Credentials go to the client as options, never inside the address it logs.
        let mut address = url::Url::parse(&self.url).map_err(|e| unreachable(&e))?;
        let mut options = async_nats::ConnectOptions::new().connection_timeout(CONNECT_TIMEOUT).name("annals audit");
        let decode = |s: &str| percent_encoding::percent_decode_str(s).decode_utf8_lossy().into_owned();
        match (address.username(), address.password()) {
            ("", None) => {}
            (user, Some(password)) => options = options.user_and_password(decode(user), decode(password)),
            (token, None) => options = options.token(decode(token)),
        }
        let _ = address.set_username("");
        let _ = address.set_password(None);
        let client = options.connect(address.as_str()).await.map_err(|e| unreachable(&e))?;
        let js = jetstream::new(client);
        if let Some(name) = &self.stream {
            js.get_or_create_stream(jetstream::stream::Config {
                name: name.clone(),
                subjects: vec![format!("{}.>", self.prefix)],
                duplicate_window: DUPLICATE_WINDOW,
                ..Default::default()
            })
            .await
            .map_err(|e| unreachable(&e))?;
        }
        Ok(js)
    }
}

#[async_trait::async_trait]
impl Sink for Nats {
    /// JetStream acknowledges what it stored: nothing needs to settle.
    fn settle(&self) -> Duration {
        Duration::ZERO
    }

    async fn send(&mut self, records: &[AuditRecord]) -> Result<(), SinkError> {
        let js = match &self.context {
            Some(js) => js.clone(),
            None => self.context.insert(self.connect().await?).clone(),
        };
        let failed = |e: &dyn std::fmt::Display| SinkError::Unreachable(format!("NATS publish: {e}"));
        // Publish the whole page, then wait for every acknowledgement: one round trip's
        // latency for the page rather than one per record.
        let mut acks = Vec::with_capacity(records.len());
        for r in records {
            let body = serde_json::to_vec(r).map_err(|e| SinkError::Encode(e.to_string()))?;
            let msg = PublishMessage::build().payload(body.into()).message_id(&r.id);
            acks.push(js.send_publish(subject(&self.prefix, r), msg).await.map_err(|e| failed(&e))?);
        }
        for ack in acks {
            ack.await.map_err(|e| failed(&e))?;
        }
        Ok(())
    }

    fn intact(&self) -> bool {
        true
    }

    fn reset(&mut self) {
        self.context = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sinks::tests::record;

    #[test]
    fn subjects_name_realm_and_event_type() {
        let r = record();
        assert_eq!(subject("annals.audit", &r), "annals.audit.demo.auth_request.credentials_rejected");
        let mut odd = record();
        odd.realm_name = Some("acme corp.*>".into());
        assert_eq!(subject("a", &odd), "a.acme_corp___.auth_request.credentials_rejected");
        odd.realm_name = None;
        odd.realm_id = None;
        assert_eq!(subject("a", &odd), "a._.auth_request.credentials_rejected");
    }

    #[test]
    fn a_prefix_is_plain_tokens() {
        assert!(valid_prefix("annals.audit"));
        for bad in ["", "a..b", "a.*", "a.>", "a b", ".a"] {
            assert!(!valid_prefix(bad), "{bad}");
        }
    }
}
