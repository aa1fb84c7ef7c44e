//! A sink's configuration: `NAME=URL`, from `--sink` (repeatable), `ANNALS_SINKS`
//! (comma-separated) or the configuration file's `[sinks]` table.
//!
//! - `syslog+tcp://HOST:PORT` and `syslog+tls://HOST:PORT` (RFC 5424; TLS per RFC 5425,
//!   port 6514 by default), with `format=json|cef`, `facility=0..23`, and for TLS `ca=FILE`,
//!   `cert=FILE`, `key=FILE`;
//! - `nats://HOST:PORT` (or `tls://`, credentials in the URL as NATS takes them), with
//!   `prefix=SUBJECT.PREFIX` (default `annals.audit`) and `stream=NAME` to have Annals create
//!   the JetStream stream over `PREFIX.>` when it does not exist;
//! - `webhook+https://HOST/PATH` (or `webhook+http://`): batches of records as NDJSON, each
//!   request signed as Standard Webhooks says, with `secret_file=FILE` (required: `whsec_` and
//!   a base64 key), `batch=N` records per request (default 500) and `ca=FILE`;
//! - `splunk+https://HOST:8088/services/collector/event` (or `splunk+http://`): Splunk's HTTP
//!   Event Collector, with `token_file=FILE` (required), `index=`, `source=` (default
//!   `annals`), `sourcetype=` (default `annals:audit`), `batch=N` and `ca=FILE`;
//! - every sink takes `realm=NAME` to deliver one realm's records only.
//!
//! Secrets are read from files, never given in the URL: URLs show in process lists and logs.
use super::connection::{Endpoint, TlsFiles};
use super::http::{self, Http};
use super::nats::Nats;
use super::syslog::{Body, Header, Syslog};
use super::{Sink, SinkError};
use std::collections::BTreeMap;
use std::path::PathBuf;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SinkSpec {
    pub name: String,
    /// Only this realm's records, when set.
    pub realm: Option<String>,
    pub target: Target,
}

#[derive(Clone, PartialEq, Eq)]
pub enum Target {
    Syslog {
        host: String,
        port: u16,
        body: Body,
        facility: u8,
        /// TLS files when the transport is TLS.
        tls: Option<TlsPaths>,
    },
    Nats {
        /// The server URL without Annals' parameters; may hold credentials.
        url: String,
        prefix: String,
        stream: Option<String>,
    },
    /// A webhook or Splunk HEC receiver.
    Http {
        /// The receiver's URL without the sink's scheme prefix and parameters.
        url: String,
        kind: HttpKind,
        batch: usize,
        ca: Option<PathBuf>,
    },
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HttpKind {
    Webhook { secret_file: PathBuf },
    Splunk { token_file: PathBuf, index: Option<String>, source: String, sourcetype: String },
}

/// A URL with any user information (a NATS user and password, or a bare token) replaced.
fn without_userinfo(url: &str) -> String {
    match url.split_once("://").and_then(|(scheme, rest)| Some((scheme, rest.rsplit_once('@')?.1))) {
        Some((scheme, host)) => format!("{scheme}://***@{host}"),
        None => url.to_string(),
    }
}

/// By hand: a NATS URL may carry a password, which must not reach a log.
impl std::fmt::Debug for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Target::Syslog { host, port, body, facility, tls } => f
                .debug_struct("Syslog")
                .field("host", host)
                .field("port", port)
                .field("body", body)
                .field("facility", facility)
                .field("tls", tls)
                .finish(),
            Target::Nats { url, prefix, stream } => f
                .debug_struct("Nats")
                .field("url", &without_userinfo(url))
                .field("prefix", prefix)
                .field("stream", stream)
                .finish(),
            Target::Http { url, kind, batch, ca } => f
                .debug_struct("Http")
                .field("url", &without_userinfo(url))
                .field("kind", kind)
                .field("batch", batch)
                .field("ca", ca)
                .finish(),
        }
    }
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TlsPaths {
    pub ca: Option<PathBuf>,
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
}

fn bad(what: impl std::fmt::Display) -> SinkError {
    SinkError::Config(what.to_string())
}

impl std::str::FromStr for SinkSpec {
    type Err = SinkError;

    fn from_str(s: &str) -> Result<Self, SinkError> {
        let (name, url) = s.split_once('=').ok_or_else(|| bad(format!("`{s}` is not NAME=URL")))?;
        SinkSpec::new(name, url)
    }
}

impl SinkSpec {
    pub fn new(name: &str, url: &str) -> Result<Self, SinkError> {
        let valid = !name.is_empty()
            && name.len() <= 64
            && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        if !valid {
            return Err(bad(format!("sink name `{name}`: 1 to 64 letters, digits, `-` or `_`")));
        }
        let in_sink = |e: String| bad(format!("sink {name}: {e}"));
        let mut u = url::Url::parse(url).map_err(|e| in_sink(format!("{e}")))?;
        let mut query: BTreeMap<String, String> = BTreeMap::new();
        for (k, v) in u.query_pairs() {
            if query.insert(k.to_string(), v.into_owned()).is_some() {
                return Err(in_sink(format!("parameter `{k}` given twice")));
            }
        }
        let realm = query.remove("realm");
        let host = u.host_str().filter(|h| !h.is_empty()).ok_or_else(|| in_sink("no host".into()))?;
        // IPv6 literals come bracketed; the connector wants them bare.
        let host = host.trim_start_matches('[').trim_end_matches(']').to_string();
        let target = match u.scheme() {
            "syslog+tcp" | "syslog+tls" => {
                let tls = u.scheme() == "syslog+tls";
                let body = match query.remove("format").as_deref() {
                    None | Some("json") => Body::Json,
                    Some("cef") => Body::Cef,
                    Some(other) => return Err(in_sink(format!("format `{other}`: json or cef"))),
                };
                let facility = match query.remove("facility") {
                    None => 10,
                    Some(v) => v
                        .parse()
                        .ok()
                        .filter(|f| *f <= 23)
                        .ok_or_else(|| in_sink(format!("facility `{v}`: 0 to 23")))?,
                };
                let paths = TlsPaths {
                    ca: query.remove("ca").map(Into::into),
                    cert: query.remove("cert").map(Into::into),
                    key: query.remove("key").map(Into::into),
                };
                if !tls && paths != TlsPaths::default() {
                    return Err(in_sink("ca, cert and key apply to syslog+tls only".into()));
                }
                let port = u.port().unwrap_or(if tls { 6514 } else { 514 });
                Target::Syslog { host, port, body, facility, tls: tls.then_some(paths) }
            }
            "nats" | "tls" => {
                let prefix = query.remove("prefix").unwrap_or_else(|| "annals.audit".into());
                if !super::nats::valid_prefix(&prefix) {
                    return Err(in_sink(format!("prefix `{prefix}`: subject tokens of letters, digits, `-`, `_`")));
                }
                let stream = query.remove("stream");
                if stream.as_deref().is_some_and(|s| super::nats::token(s) != s) {
                    return Err(in_sink("stream: letters, digits, `-` or `_`".into()));
                }
                u.set_query(None);
                Target::Nats { url: u.to_string(), prefix, stream }
            }
            scheme @ ("webhook+http" | "webhook+https" | "splunk+http" | "splunk+https") => {
                let scheme = scheme.to_string();
                let (kind, transport) = scheme.split_once('+').unwrap_or_default();
                let file = |query: &mut BTreeMap<String, String>, key: &str| {
                    query.remove(key).map(PathBuf::from).ok_or_else(|| in_sink(format!("{key}=FILE is required")))
                };
                let kind = if kind == "webhook" {
                    HttpKind::Webhook { secret_file: file(&mut query, "secret_file")? }
                } else {
                    HttpKind::Splunk {
                        token_file: file(&mut query, "token_file")?,
                        index: query.remove("index"),
                        source: query.remove("source").unwrap_or_else(|| "annals".into()),
                        sourcetype: query.remove("sourcetype").unwrap_or_else(|| "annals:audit".into()),
                    }
                };
                let batch = match query.remove("batch") {
                    None => http::BATCH_DEFAULT,
                    Some(v) => v
                        .parse()
                        .ok()
                        .filter(|b| (1..=http::BATCH_MAX).contains(b))
                        .ok_or_else(|| in_sink(format!("batch `{v}`: 1 to {}", http::BATCH_MAX)))?,
                };
                let ca = query.remove("ca").map(PathBuf::from);
                if ca.is_some() && transport == "http" {
                    return Err(in_sink("ca applies to https only".into()));
                }
                // What is left of the query is not ours to keep: every parameter is checked
                // below, so the receiver's URL carries none.
                u.set_query(None);
                let url = format!("{transport}{}", &u.as_str()[u.scheme().len()..]);
                // Parsed again as http(s): the sink scheme's looser host rules must not let an
                // address through that every request would then fail on.
                let parsed = url::Url::parse(&url).map_err(|e| in_sink(format!("receiver URL: {e}")))?;
                if parsed.host_str().is_none_or(str::is_empty) {
                    return Err(in_sink("receiver URL: no host".into()));
                }
                Target::Http { url: parsed.to_string(), kind, batch, ca }
            }
            other => {
                return Err(in_sink(format!(
                    "scheme `{other}`: syslog+tcp, syslog+tls, nats, tls, webhook+http(s) or splunk+http(s)"
                )))
            }
        };
        if let Some(k) = query.keys().next() {
            return Err(in_sink(format!("unknown parameter `{k}`")));
        }
        Ok(SinkSpec { name: name.into(), realm, target })
    }

    /// The sink, with its TLS files read.
    pub(super) fn build(&self) -> Result<Box<dyn Sink>, SinkError> {
        match &self.target {
            Target::Syslog { host, port, body, facility, tls } => {
                let tls = match tls {
                    None => None,
                    Some(p) => Some(
                        TlsFiles { ca: p.ca.as_deref(), cert: p.cert.as_deref(), key: p.key.as_deref() }
                            .connector()
                            .map_err(|e| bad(format!("sink {}: {e}", self.name)))?,
                    ),
                };
                let endpoint = Endpoint { host: host.clone(), port: *port, tls };
                Ok(Box::new(Syslog::new(endpoint, Header::new(*facility, *body))))
            }
            Target::Nats { url, prefix, stream } => {
                Ok(Box::new(Nats::new(url.clone(), prefix.clone(), stream.clone())))
            }
            Target::Http { url, kind, batch, ca } => {
                let in_sink = |e: SinkError| match e {
                    SinkError::Config(m) => bad(format!("sink {}: {m}", self.name)),
                    other => other,
                };
                let format = match kind {
                    HttpKind::Webhook { secret_file } => {
                        http::Format::Webhook { key: http::webhook_key(secret_file).map_err(in_sink)? }
                    }
                    HttpKind::Splunk { token_file, index, source, sourcetype } => http::Format::Splunk {
                        token: http::splunk_token(token_file).map_err(in_sink)?,
                        index: index.clone(),
                        source: source.clone(),
                        sourcetype: sourcetype.clone(),
                    },
                };
                Ok(Box::new(Http::new(url.clone(), format, *batch, ca.as_deref()).map_err(in_sink)?))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_syslog_sink_is_named_by_url() {
        let s: SinkSpec =
            "siem=syslog+tls://logs.example:7514?format=cef&facility=4&ca=/etc/ca.pem&realm=demo".parse().unwrap();
        assert_eq!(s.name, "siem");
        assert_eq!(s.realm.as_deref(), Some("demo"));
        assert_eq!(
            s.target,
            Target::Syslog {
                host: "logs.example".into(),
                port: 7514,
                body: Body::Cef,
                facility: 4,
                tls: Some(TlsPaths { ca: Some("/etc/ca.pem".into()), ..Default::default() })
            }
        );
        let plain: SinkSpec = "a=syslog+tcp://[::1]".parse().unwrap();
        assert!(
            matches!(plain.target, Target::Syslog { ref host, port: 514, body: Body::Json, facility: 10, tls: None } if host == "::1")
        );
        let tls: SinkSpec = "b=syslog+tls://h".parse().unwrap();
        assert!(matches!(tls.target, Target::Syslog { port: 6514, .. }));
    }

    #[test]
    fn a_nats_sink_keeps_its_url_without_annals_parameters_and_never_shows_its_password() {
        let s: SinkSpec = "bus=nats://user:pw@nats.example:4222?prefix=idp.audit&stream=AUDIT".parse().unwrap();
        assert_eq!(
            s.target,
            Target::Nats {
                url: "nats://user:pw@nats.example:4222".into(),
                prefix: "idp.audit".into(),
                stream: Some("AUDIT".into())
            }
        );
        assert!(!format!("{s:?}").contains("pw"), "{s:?}");
        let token: SinkSpec = "bus=nats://s3cr3t-token@nats.example".parse().unwrap();
        assert!(!format!("{token:?}").contains("s3cr3t"), "{token:?}");
    }

    #[test]
    fn an_http_sink_is_a_webhook_or_splunk_with_its_secret_in_a_file() {
        let s: SinkSpec =
            "hook=webhook+https://siem.example/in/annals?secret_file=/etc/annals/whsec&batch=50&ca=/etc/ca.pem&realm=demo"
                .parse()
                .unwrap();
        assert_eq!(s.realm.as_deref(), Some("demo"));
        assert_eq!(
            s.target,
            Target::Http {
                url: "https://siem.example/in/annals".into(),
                kind: HttpKind::Webhook { secret_file: "/etc/annals/whsec".into() },
                batch: 50,
                ca: Some("/etc/ca.pem".into())
            }
        );
        let hec: SinkSpec =
            "hec=splunk+http://127.0.0.1:8088/services/collector/event?token_file=/t&index=security".parse().unwrap();
        assert_eq!(
            hec.target,
            Target::Http {
                url: "http://127.0.0.1:8088/services/collector/event".into(),
                kind: HttpKind::Splunk {
                    token_file: "/t".into(),
                    index: Some("security".into()),
                    source: "annals".into(),
                    sourcetype: "annals:audit".into()
                },
                batch: http::BATCH_DEFAULT,
                ca: None
            }
        );
        let basic: SinkSpec = "hook=webhook+https://user:pw@siem.example/?secret_file=/s".parse().unwrap();
        assert!(!format!("{basic:?}").contains("pw"), "{basic:?}");
    }

    #[test]
    fn a_malformed_sink_is_refused_with_its_reason() {
        for (spec, says) in [
            ("syslog+tcp://h:1", "NAME=URL"),
            ("bad name=syslog+tcp://h:1", "sink name"),
            ("s=syslog+udp://h:1", "scheme"),
            ("s=syslog+tcp://h:1?format=xml", "format"),
            ("s=syslog+tcp://h:1?facility=24", "facility"),
            ("s=syslog+tcp://h:1?colour=red", "unknown parameter"),
            ("s=syslog+tcp://h:1?format=cef&format=json", "twice"),
            ("s=nats://h:1?prefix=a.*", "prefix"),
            ("s=nats://h:1?stream=a.b", "stream"),
            ("s=nats://h:1?format=cef", "unknown parameter"),
            ("s=syslog+tcp://h:1?ca=/x", "syslog+tls only"),
            ("s=syslog+tcp:///x", "no host"),
            ("s=not a url", "sink s"),
            ("s=webhook+https://h/", "secret_file=FILE is required"),
            ("s=splunk+https://h/", "token_file=FILE is required"),
            ("s=webhook+https://h/?secret_file=/s&batch=0", "batch"),
            ("s=webhook+https://h/?secret_file=/s&batch=x", "batch"),
            ("s=webhook+http://h/?secret_file=/s&ca=/c", "https only"),
            ("s=webhook+https://h/?secret_file=/s&format=cef", "unknown parameter"),
            ("s=webhook+https://h/?secret_file=/s&secret=whsec_abc", "unknown parameter `secret`"),
            ("s=webhook+ftp://h/?secret_file=/s", "scheme"),
            ("s=webhook+https://1.2.3.999/?secret_file=/s", "receiver URL"),
            ("s=webhook+https://a%zz/?secret_file=/s", "receiver URL"),
        ] {
            let err = spec.parse::<SinkSpec>().unwrap_err().to_string();
            assert!(err.contains(says), "{spec}: {err}");
        }
    }
}
