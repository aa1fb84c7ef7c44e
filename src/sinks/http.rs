//! HTTP receivers: a webhook taking batches of records as NDJSON, signed as the Standard
//! Webhooks specification says (HMAC-SHA256 over the message id, the time and the body), and
//! Splunk's HTTP Event Collector.
//!
//! A receiver answers each batch. 2xx: it holds every record. A refusal of the content (HTTP
//! 400, 413 or 422; for Splunk, the codes that name a bad event): the batch is halved
//! until the refused record is alone, and that record is reported to the delivery loop, which
//! retries it and records the refusal before going past it. Anything else (the receiver down,
//! 401, 403, 404, 429, 5xx, a redirect): the batch is sent again later; the lag grows.
use super::{Sink, SinkError};
use annals_projections::audit::AuditRecord;
use base64::Engine;
use hmac::{Hmac, Mac};
use serde_json::{json, Value};
use sha2::Sha256;
use std::path::Path;
use std::time::Duration;

/// Records per request unless `batch=` says otherwise.
pub const BATCH_DEFAULT: usize = 500;
pub const BATCH_MAX: usize = 10_000;
/// A request body grows past this only by a single record larger than it.
const BODY_MAX: usize = 4 << 20;
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
const TIMEOUT: Duration = Duration::from_secs(30);
/// The receiver's answer is read up to this many bytes, for the reason of a refusal; the
/// rest is never read (a hostile receiver could answer without end).
const ANSWER_MAX: usize = 512;
/// Standard Webhooks secrets: `whsec_` then base64 of the key.
const SECRET_PREFIX: &str = "whsec_";
/// The specification asks for keys of 24 to 64 bytes.
const SECRET_MIN: usize = 24;
/// Splunk codes that say one event is bad, not the request or the setup (6 invalid data
/// format, 12 event field required, 13 event field blank, 15 indexed fields unusable).
const SPLUNK_BAD_EVENT: [i64; 4] = [6, 12, 13, 15];

/// What a receiver is sent, and how it is authenticated.
pub enum Format {
    /// NDJSON with `webhook-id`, `webhook-timestamp` and `webhook-signature` headers.
    Webhook { key: Vec<u8> },
    /// One HEC event object per record, with `Authorization: Splunk TOKEN`.
    Splunk { token: String, index: Option<String>, source: String, sourcetype: String },
}

pub struct Http {
    client: reqwest::Client,
    url: String,
    format: Format,
    batch: usize,
}

/// How the receiver answered one request.
enum Answer {
    Taken,
    /// The content is refused; sending the same again gets the same answer.
    Refused {
        status: u16,
        reason: String,
    },
    Failed(SinkError),
}

fn unreadable(what: &str, path: &Path, e: impl std::fmt::Display) -> SinkError {
    SinkError::Config(format!("{what} {}: {e}", path.display()))
}

/// The HMAC key of a Standard Webhooks secret file (`whsec_` and base64, as the reference
/// libraries write and read it).
pub fn webhook_key(path: &Path) -> Result<Vec<u8>, SinkError> {
    let text = std::fs::read_to_string(path).map_err(|e| unreadable("webhook secret", path, e))?;
    let bad = |why: &str| {
        unreadable("webhook secret", path, format!("{why}; make one with: echo \"whsec_$(openssl rand -base64 32)\""))
    };
    let encoded = text.trim().strip_prefix(SECRET_PREFIX).ok_or_else(|| bad("it does not start with whsec_"))?;
    let key = base64::engine::general_purpose::STANDARD_NO_PAD
        .decode(encoded.trim_end_matches('='))
        .map_err(|_| bad("what follows whsec_ is not base64"))?;
    if key.len() < SECRET_MIN {
        return Err(bad(&format!("the key has {} bytes, fewer than {SECRET_MIN}", key.len())));
    }
    Ok(key)
}

/// A Splunk HEC token from its file: one printable word.
pub fn splunk_token(path: &Path) -> Result<String, SinkError> {
    let text = std::fs::read_to_string(path).map_err(|e| unreadable("Splunk token", path, e))?;
    let token = text.trim();
    if token.is_empty() || !token.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(unreadable("Splunk token", path, "not one word of printable characters"));
    }
    Ok(token.to_string())
}

/// `v1,` and the base64 HMAC-SHA256 of `ID.TIMESTAMP.BODY`: the Standard Webhooks signature.
pub fn webhook_signature(key: &[u8], id: &str, timestamp: i64, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes any key length");
    mac.update(format!("{id}.{timestamp}.").as_bytes());
    mac.update(body);
    format!("v1,{}", base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes()))
}

/// One record as a Splunk HEC event: the record is the event, its time Splunk's `time`
/// (seconds, to the millisecond), and its position, event id and type indexed fields.
pub fn splunk_event(record: &AuditRecord, index: Option<&str>, source: &str, sourcetype: &str) -> Value {
    let mut e = json!({
        "time": serde_json::Number::from_f64(record.time as f64 / 1000.0).map_or(Value::Null, Value::Number),
        "source": source,
        "sourcetype": sourcetype,
        "event": record,
        "fields": {
            "position": record.position.to_string(),
            "event_id": record.id,
            "annals_type": record.annals_type,
        },
    });
    if let Some(i) = index {
        e["index"] = i.into();
    }
    e
}

/// The start of a receiver's answer as one line of text.
async fn excerpt(mut res: reqwest::Response) -> String {
    let mut body = Vec::new();
    while body.len() < ANSWER_MAX {
        match res.chunk().await {
            Ok(Some(chunk)) => body.extend_from_slice(&chunk[..chunk.len().min(ANSWER_MAX - body.len())]),
            _ => break,
        }
    }
    String::from_utf8_lossy(&body).chars().map(|c| if c.is_control() { ' ' } else { c }).collect()
}

impl Http {
    pub fn new(url: String, format: Format, batch: usize, ca: Option<&Path>) -> Result<Self, SinkError> {
        let mut builder = reqwest::Client::builder()
            .connect_timeout(CONNECT_TIMEOUT)
            .timeout(TIMEOUT)
            // A receiver that moved is a configuration to fix, not a place to follow blindly.
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("annals/", env!("CARGO_PKG_VERSION")));
        if let Some(ca) = ca {
            let pem = std::fs::read(ca).map_err(|e| unreadable("CA file", ca, e))?;
            let cert = reqwest::Certificate::from_pem(&pem).map_err(|e| unreadable("CA file", ca, e))?;
            builder = builder.add_root_certificate(cert);
        }
        let client = builder.build().map_err(|e| SinkError::Config(format!("HTTP client: {e}")))?;
        Ok(Http { client, url, format, batch: batch.clamp(1, BATCH_MAX) })
    }

    /// The request body of these records.
    fn body(&self, records: &[AuditRecord]) -> Result<Vec<u8>, SinkError> {
        let mut out = Vec::with_capacity(records.len() * 512);
        for r in records {
            let line = match &self.format {
                Format::Webhook { .. } => serde_json::to_writer(&mut out, r),
                Format::Splunk { index, source, sourcetype, .. } => {
                    serde_json::to_writer(&mut out, &splunk_event(r, index.as_deref(), source, sourcetype))
                }
            };
            line.map_err(|e| SinkError::Encode(e.to_string()))?;
            out.push(b'\n');
        }
        Ok(out)
    }

    /// How many of `records` the next request carries: up to the batch size, and no more
    /// than fit the body limit (always at least one).
    fn chunk(&self, records: &[AuditRecord], limit: usize) -> usize {
        let mut bytes = 0;
        let mut n = 0;
        for r in records.iter().take(limit) {
            // An estimate is enough: the limit protects the receiver, not a protocol maximum.
            bytes += 400 + r.details.values().map(|v| v.len() + 24).sum::<usize>();
            if n > 0 && bytes > BODY_MAX {
                break;
            }
            n += 1;
        }
        n.max(1)
    }

    /// One request with these records.
    async fn post(&self, records: &[AuditRecord]) -> Answer {
        let body = match self.body(records) {
            Ok(b) => b,
            Err(e) => return Answer::Failed(e),
        };
        let mut req = self.client.post(&self.url);
        match &self.format {
            Format::Webhook { key } => {
                let id = format!("{}.{}", records[0].id, records.len());
                let timestamp = chrono::Utc::now().timestamp();
                let signature = webhook_signature(key, &id, timestamp, &body);
                req = req
                    .header("content-type", "application/x-ndjson")
                    .header("webhook-id", id)
                    .header("webhook-timestamp", timestamp.to_string())
                    .header("webhook-signature", signature);
            }
            Format::Splunk { token, .. } => {
                let mut auth = reqwest::header::HeaderValue::from_str(&format!("Splunk {token}"))
                    .unwrap_or_else(|_| reqwest::header::HeaderValue::from_static(""));
                auth.set_sensitive(true);
                req = req.header("content-type", "application/json").header("authorization", auth);
            }
        }
        let res = match req.body(body).send().await {
            Ok(r) => r,
            // reqwest names the URL and the cause, never the body or the headers.
            Err(e) => return Answer::Failed(SinkError::Unreachable(format!("HTTP: {e}"))),
        };
        let status = res.status().as_u16();
        // A 2xx body is not read at all.
        if (200..300).contains(&status) {
            return Answer::Taken;
        }
        let answer = excerpt(res).await;
        match &self.format {
            // 415 and the like are the sink's setup, the same for every record: a failure.
            Format::Webhook { .. } if matches!(status, 400 | 413 | 422) => {
                Answer::Refused { status, reason: format!("HTTP {status}: {answer}") }
            }
            Format::Splunk { .. } => {
                let v: Value = serde_json::from_str(&answer).unwrap_or(Value::Null);
                let code = v["code"].as_i64();
                let text = v["text"].as_str().unwrap_or(&answer);
                let reason =
                    format!("HTTP {status}, Splunk code {}: {text}", code.map_or("?".into(), |c| c.to_string()));
                if status == 413 || (status == 400 && code.is_some_and(|c| SPLUNK_BAD_EVENT.contains(&c))) {
                    Answer::Refused { status, reason }
                } else {
                    Answer::Failed(SinkError::Unreachable(reason))
                }
            }
            Format::Webhook { .. } => Answer::Failed(SinkError::Unreachable(format!("HTTP {status}: {answer}"))),
        }
    }
}

#[async_trait::async_trait]
impl Sink for Http {
    /// A 2xx answer says the receiver holds the batch.
    fn settle(&self) -> Duration {
        Duration::ZERO
    }

    async fn send(&mut self, records: &[AuditRecord]) -> Result<(), SinkError> {
        let mut done = 0;
        let mut limit = self.batch;
        while done < records.len() {
            let n = self.chunk(&records[done..], limit);
            match self.post(&records[done..done + n]).await {
                Answer::Taken => done += n,
                // Halve the batch until the refused record is alone; what was taken on the
                // way stays taken.
                Answer::Refused { .. } if n > 1 => limit = n / 2,
                Answer::Refused { status, reason } => {
                    return Err(SinkError::Rejected { delivered: done, status: Some(status), reason })
                }
                Answer::Failed(SinkError::Unreachable(e)) if done > 0 => {
                    return Err(SinkError::Partial { delivered: done, cause: e })
                }
                Answer::Failed(e) => return Err(e),
            }
        }
        Ok(())
    }

    fn intact(&self) -> bool {
        true
    }

    /// Connections are pooled by the client; a failed one is not reused.
    fn reset(&mut self) {}
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sinks::tests::record;

    #[test]
    fn the_signature_is_the_standard_webhooks_one() {
        // As the Standard Webhooks Python library (`standardwebhooks`) signs it.
        let key = base64::engine::general_purpose::STANDARD.decode("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
        let sig = webhook_signature(&key, "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, br#"{"test": 2432232314}"#);
        assert_eq!(sig, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
    }

    #[test]
    fn a_secret_file_holds_whsec_and_a_long_enough_base64_key() {
        let dir = tempfile::tempdir().unwrap();
        let write = |text: &str| {
            let p = dir.path().join("s");
            std::fs::write(&p, text).unwrap();
            p
        };
        let key = webhook_key(&write("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw\n")).unwrap();
        assert_eq!(key.len(), 24);
        for (text, says) in [
            ("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "whsec_"),
            ("whsec_not base64!", "base64"),
            ("whsec_c2hvcnQ=", "fewer than 24"),
        ] {
            let err = webhook_key(&write(text)).unwrap_err().to_string();
            assert!(err.contains(says) && err.contains("openssl rand"), "{text}: {err}");
            assert!(!err.contains(text), "the secret is not repeated: {err}");
        }
        assert!(webhook_key(&dir.path().join("missing")).is_err());
        assert_eq!(splunk_token(&write(" 12345678-abcd \n")).unwrap(), "12345678-abcd");
        assert!(splunk_token(&write("two words")).is_err());
        assert!(splunk_token(&write("\n")).is_err());
    }

    #[test]
    fn a_splunk_event_carries_the_record_its_time_in_seconds_and_indexed_fields() {
        let r = record();
        let e = splunk_event(&r, Some("security"), "annals", "annals:audit");
        assert_eq!(e["time"], json!(1_795_000_000.123));
        assert_eq!((e["index"].as_str(), e["sourcetype"].as_str()), (Some("security"), Some("annals:audit")));
        assert_eq!(e["event"], serde_json::to_value(&r).unwrap());
        assert_eq!(e["fields"]["position"], "42");
        assert_eq!(e["fields"]["event_id"], r.id.as_str());
        assert!(splunk_event(&r, None, "annals", "annals:audit").get("index").is_none());
    }

    #[test]
    fn batches_stop_at_the_size_and_body_limits_but_always_carry_one_record() {
        let sink = Http::new("http://127.0.0.1:9/".into(), Format::Webhook { key: vec![1; 32] }, 3, None).unwrap();
        let records = vec![record(); 10];
        assert_eq!(sink.chunk(&records, 3), 3);
        assert_eq!(sink.chunk(&records[..2], 3), 2);
        let mut huge = record();
        huge.details.insert("x", "y".repeat(BODY_MAX));
        assert_eq!(sink.chunk(&[huge.clone(), record()], 3), 1, "alone when too big");
        assert_eq!(sink.chunk(&[record(), huge], 3), 1, "the big one waits for the next request");
    }
}
