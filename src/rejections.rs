//! Requests refused before any aggregate is involved (an unknown client, an unregistered
//! redirect URI, failed client authentication, an invalid code or refresh token, an
//! administrator's token that does not authorize) are recorded as `rejected_request` facts,
//! so the audit stream shows misconfigured clients and probing alike.
//!
//! A flood must not grow the log faster than a fixed rate, whatever it sends: in each fixed
//! window, per realm, at most [`RECORDED_PER_REALM`] refusals are recorded one by one, at most
//! [`PER_KEY`] of them per endpoint, reason and source (an IPv6 source counts by its /64);
//! everything else is counted, and one `rejected_request.summarized` event per key says how
//! many when the window closes. A realm tracks at most [`KEYS_PER_REALM`] keys a window;
//! further sources are counted together under source `*`. So one realm adds at most
//! `RECORDED_PER_REALM + KEYS_PER_REALM` events a window (plus one `*` summary per endpoint
//! and reason), and realms are created by administrators only.
use crate::clock::SharedClock;
use crate::store::{ExpectedVersion, SharedStore, StreamAppend};
use annals_events::rejected_request::{RejectedRequestEvent, RejectedRequestRecorded, RejectedRequestSummarized};
use annals_events::{Actor, DomainEvent, Metadata, NewEvent, StreamId, StreamType};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Refusals recorded one by one per key and window.
pub const PER_KEY: u32 = 5;
/// Refusals recorded one by one per realm and window, all keys together.
pub const RECORDED_PER_REALM: u32 = 500;
/// Keys a realm tracks one by one per window.
pub const KEYS_PER_REALM: usize = 1_000;
/// Caller-chosen strings are kept to this many characters.
pub const FIELD_MAX: usize = 256;
/// The default window.
pub const WINDOW: Duration = Duration::from_secs(60);
/// Summaries appended together at most.
const SUMMARY_BATCH: usize = 500;

/// What is counted together.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Key {
    pub realm_id: Option<String>,
    pub endpoint: String,
    pub reason: String,
    /// The source address (an IPv6 one as its /64), or `*`.
    pub source: String,
}

/// The source a refusal counts under: an IPv4 address, or an IPv6 address's /64 (one host
/// holds a whole /64 and could otherwise take a key per address).
pub fn source_of(ip: Option<&str>) -> String {
    match ip.and_then(|a| a.parse::<std::net::IpAddr>().ok()) {
        Some(std::net::IpAddr::V6(v6)) if v6.to_ipv4_mapped().is_none() => {
            let s = v6.segments();
            let net = std::net::Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0);
            format!("{net}/64")
        }
        Some(std::net::IpAddr::V6(v6)) => v6.to_ipv4_mapped().map_or_else(|| v6.to_string(), |v4| v4.to_string()),
        Some(ip) => ip.to_string(),
        None => "*".into(),
    }
}

/// One refused request, as the endpoint saw it.
#[derive(Clone, Debug, Default)]
pub struct Refused {
    pub endpoint: &'static str,
    pub reason: &'static str,
    pub description: String,
    pub client_id: Option<String>,
    pub redirect_uri: Option<String>,
    pub grant_type: Option<String>,
}

/// Whether one refusal is recorded on its own or only counted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    Record,
    Count,
}

/// The counts of one window. Pure: the caller gives the time.
#[derive(Debug)]
pub struct Window {
    start_ms: i64,
    length_ms: i64,
    /// Per key: recorded one by one, counted only.
    counts: HashMap<Key, (u32, u64)>,
    /// Per realm: keys tracked, refusals recorded one by one.
    realms: HashMap<Option<String>, (usize, u32)>,
}

impl Window {
    pub fn new(now_ms: i64, length: Duration) -> Window {
        let length_ms = (length.as_millis() as i64).max(1);
        Window {
            start_ms: now_ms - now_ms.rem_euclid(length_ms),
            length_ms,
            counts: HashMap::new(),
            realms: HashMap::new(),
        }
    }

    /// When `now_ms` is outside this window (past it, or before it: the clock was set
    /// back): the summaries of what it only counted, and a new window holding `now_ms`.
    /// Nothing otherwise.
    pub fn roll(&mut self, now_ms: i64) -> Vec<RejectedRequestSummarized> {
        if (self.start_ms..self.start_ms + self.length_ms).contains(&now_ms) {
            return vec![];
        }
        let ended = std::mem::replace(self, Window::new(now_ms, Duration::from_millis(self.length_ms as u64)));
        // A clock set back ends the window now, not in the future.
        let end = (ended.start_ms + ended.length_ms).min(now_ms.max(ended.start_ms));
        ended.summaries(end)
    }

    /// The summaries of what this window only counted, as if it ended at `to_ms`.
    fn summaries(self, to_ms: i64) -> Vec<RejectedRequestSummarized> {
        let from_ms = self.start_ms;
        let mut out: Vec<RejectedRequestSummarized> = self
            .counts
            .into_iter()
            .filter(|(_, (_, counted))| *counted > 0)
            .map(|(k, (_, counted))| RejectedRequestSummarized {
                realm_id: k.realm_id,
                endpoint: k.endpoint,
                reason: k.reason,
                source: k.source,
                count: counted,
                from_ms,
                to_ms: to_ms.max(from_ms),
            })
            .collect();
        // A stable order: the log is compared across runs and nodes by people.
        out.sort_by(|a, b| {
            (&a.realm_id, &a.endpoint, &a.reason, &a.source).cmp(&(&b.realm_id, &b.endpoint, &b.reason, &b.source))
        });
        out
    }

    /// Counts one refusal (in this window: roll first).
    pub fn note(&mut self, mut key: Key) -> Verdict {
        let realm = self.realms.entry(key.realm_id.clone()).or_default();
        if !self.counts.contains_key(&key) {
            if realm.0 >= KEYS_PER_REALM {
                key.source = "*".into();
            } else {
                realm.0 += 1;
            }
        }
        // Sources past the tracked ones are only ever counted.
        let tracked = key.source != "*";
        let entry = self.counts.entry(key).or_default();
        if tracked && entry.0 < PER_KEY && realm.1 < RECORDED_PER_REALM {
            entry.0 += 1;
            realm.1 += 1;
            Verdict::Record
        } else {
            entry.1 += 1;
            Verdict::Count
        }
    }

    /// Counts again what could not be recorded (its append failed): it is summarized later
    /// rather than lost.
    pub fn restore(&mut self, key: Key, count: u64) {
        self.counts.entry(key).or_default().1 += count;
    }
}

/// A URL without what may be a credential: user information and the query.
fn without_secrets(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut u) if !u.cannot_be_a_base() => {
            let _ = u.set_username("");
            let _ = u.set_password(None);
            u.set_query(None);
            u.set_fragment(None);
            u.to_string()
        }
        // Not a usable URL: what comes before any `?` or `#`, and after any `@`.
        _ => {
            let path = url.split(['?', '#']).next().unwrap_or_default();
            path.rsplit('@').next().unwrap_or_default().to_string()
        }
    }
}

/// `s` cut to [`FIELD_MAX`] characters, control characters replaced.
fn short(s: &str) -> String {
    s.chars().take(FIELD_MAX).map(|c| if c.is_control() { ' ' } else { c }).collect()
}

/// The node's recorder of refused requests.
pub struct Rejections {
    window: Mutex<Window>,
    store: SharedStore,
    clock: SharedClock,
}

impl Rejections {
    pub fn new(store: SharedStore, clock: SharedClock, window: Duration) -> Arc<Rejections> {
        let now = clock.now().timestamp_millis();
        Arc::new(Rejections { window: Mutex::new(Window::new(now, window)), store, clock })
    }

    fn window(&self) -> std::sync::MutexGuard<'_, Window> {
        // Counts stay consistent whatever panicked while holding them.
        self.window.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Records or counts one refusal. `meta` carries the realm and source address; a
    /// failure to record is logged and the refusal counted instead, never the caller's
    /// problem. Summaries of a window that ended are appended in the background: the request
    /// that happens to close a window does not wait for them.
    pub async fn note(self: &Arc<Self>, refused: Refused, meta: Metadata) {
        let now = self.clock.now().timestamp_millis();
        let key = Key {
            realm_id: meta.realm.clone(),
            endpoint: refused.endpoint.into(),
            reason: refused.reason.into(),
            source: source_of(meta.source_ip.as_deref()),
        };
        let (summaries, verdict) = {
            let mut w = self.window();
            let summaries = w.roll(now);
            (summaries, w.note(key.clone()))
        };
        if !summaries.is_empty() {
            let me = self.clone();
            tokio::spawn(async move { me.append_summaries(summaries).await });
        }
        if verdict == Verdict::Count {
            return;
        }
        let recorded = RejectedRequestRecorded {
            realm_id: meta.realm.clone(),
            endpoint: refused.endpoint.into(),
            reason: refused.reason.into(),
            description: short(&refused.description),
            client_id: refused.client_id.as_deref().map(short),
            redirect_uri: refused.redirect_uri.as_deref().map(|u| short(&without_secrets(u))),
            grant_type: refused.grant_type.as_deref().map(short),
            at_ms: now,
        };
        let meta = Metadata { actor: Actor::System { component: "rejections".into() }, ..meta };
        if let Err(e) = self.append(vec![(RejectedRequestEvent::from(recorded).into(), meta)]).await {
            tracing::error!(error = %e, "a refused request cannot be recorded; it is counted instead");
            self.window().restore(key, 1);
        }
    }

    /// Appends the summaries of a window that has ended (the ticker's job: a flood that stops
    /// is summarized without waiting for the next refusal).
    pub async fn flush(&self) {
        let now = self.clock.now().timestamp_millis();
        let summaries = self.window().roll(now);
        self.append_summaries(summaries).await;
    }

    /// Summarizes what the current window counted so far (the node is stopping).
    pub async fn close(&self) {
        let now = self.clock.now().timestamp_millis();
        let summaries = {
            let mut w = self.window();
            let length = Duration::from_millis(w.length_ms as u64);
            std::mem::replace(&mut *w, Window::new(now, length)).summaries(now)
        };
        self.append_summaries(summaries).await;
    }

    /// In batches; a batch that cannot be appended is counted again in the current window,
    /// so a later summary carries it.
    async fn append_summaries(&self, summaries: Vec<RejectedRequestSummarized>) {
        for batch in summaries.chunks(SUMMARY_BATCH) {
            if let Err(e) = self.append(batch.iter().cloned().map(summary).collect()).await {
                tracing::error!(error = %e, summaries = batch.len(), "refusal summaries cannot be recorded; counted again");
                let mut w = self.window();
                for s in batch {
                    let key = Key {
                        realm_id: s.realm_id.clone(),
                        endpoint: s.endpoint.clone(),
                        reason: s.reason.clone(),
                        source: s.source.clone(),
                    };
                    w.restore(key, s.count);
                }
            }
        }
    }

    /// Each fact a stream of its own: nothing else writes it, nothing waits on another.
    async fn append(&self, facts: Vec<(DomainEvent, Metadata)>) -> Result<(), String> {
        if facts.is_empty() {
            return Ok(());
        }
        let mut appends = Vec::with_capacity(facts.len());
        for (event, meta) in &facts {
            let e = NewEvent::new(event, meta).map_err(|e| e.to_string())?;
            appends.push(StreamAppend {
                stream: StreamId::new(StreamType::RejectedRequest, uuid::Uuid::now_v7().to_string()),
                expected: ExpectedVersion::Exact(0),
                events: vec![e],
            });
        }
        self.store.append_all(appends).await.map(|_| ()).map_err(|e| e.to_string())
    }

    /// Flushes ended windows every few seconds until the node stops.
    pub fn spawn(self: &Arc<Self>) -> tokio::task::JoinHandle<()> {
        let me = self.clone();
        let every = Duration::from_millis((me.window().length_ms as u64 / 4).clamp(100, 5_000));
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            loop {
                tick.tick().await;
                me.flush().await;
            }
        })
    }
}

fn summary(s: RejectedRequestSummarized) -> (DomainEvent, Metadata) {
    let meta = Metadata {
        realm: s.realm_id.clone(),
        actor: Actor::System { component: "rejections".into() },
        // A /64 or `*` is no address: the summary's `source` says it.
        source_ip: s.source.parse::<std::net::IpAddr>().ok().map(|_| s.source.clone()),
        ..Default::default()
    };
    (RejectedRequestEvent::from(s).into(), meta)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(realm: &str, source: &str) -> Key {
        Key {
            realm_id: Some(realm.into()),
            endpoint: "token".into(),
            reason: "invalid_client_credentials".into(),
            source: source.into(),
        }
    }

    fn recorded(verdicts: &[Verdict]) -> usize {
        verdicts.iter().filter(|v| **v == Verdict::Record).count()
    }

    #[test]
    fn given_a_window_when_one_source_floods_then_the_first_few_are_recorded_and_the_rest_summarized_once() {
        let mut w = Window::new(61_000, Duration::from_secs(60));
        assert_eq!(w.start_ms, 60_000, "windows are aligned");
        let verdicts: Vec<Verdict> = (0..100).map(|_| w.note(key("r", "192.0.2.7"))).collect();
        assert_eq!(recorded(&verdicts), PER_KEY as usize);
        assert!(verdicts[..PER_KEY as usize].iter().all(|v| *v == Verdict::Record), "the first ones");
        assert_eq!(w.note(key("r", "198.51.100.1")), Verdict::Record, "another source is recorded on its own");
        assert_eq!(w.roll(119_999), vec![], "the window has not ended");
        let summaries = w.roll(120_000);
        assert_eq!(summaries.len(), 1, "only what was counted is summarized: {summaries:?}");
        let s = &summaries[0];
        assert_eq!((s.source.as_str(), s.count, s.from_ms, s.to_ms), ("192.0.2.7", 95, 60_000, 120_000));
        assert_eq!(w.note(key("r", "192.0.2.7")), Verdict::Record, "a new window records again");
        assert_eq!(w.roll(500_000), vec![], "nothing counted, nothing summarized");
    }

    #[test]
    fn given_many_sources_when_they_flood_a_realm_then_its_records_and_keys_are_capped_and_other_realms_unaffected() {
        let mut w = Window::new(0, Duration::from_secs(60));
        let verdicts: Vec<Verdict> = (0..KEYS_PER_REALM + 3_000).map(|n| w.note(key("r", &n.to_string()))).collect();
        assert_eq!(recorded(&verdicts), RECORDED_PER_REALM as usize, "the realm's budget");
        assert_eq!(w.note(key("other", "192.0.2.7")), Verdict::Record, "another realm keeps its own");
        assert_eq!(w.counts.len(), KEYS_PER_REALM + 2, "the tracked keys, `*`, and the other realm's");
        let summaries = w.roll(60_000);
        let star = summaries.iter().find(|s| s.source == "*").unwrap();
        assert_eq!(star.count, 3_000, "sources past the tracked ones, counted together");
        let total: u64 = summaries.iter().map(|s| s.count).sum();
        assert_eq!(
            total as usize + RECORDED_PER_REALM as usize,
            KEYS_PER_REALM + 3_000,
            "every refusal, one way or the other"
        );
        assert_eq!(summaries.len(), KEYS_PER_REALM - RECORDED_PER_REALM as usize + 1);
    }

    #[test]
    fn an_ipv6_source_counts_by_its_64_and_a_mapped_ipv4_as_ipv4() {
        assert_eq!(source_of(Some("2001:db8:1:2:aaaa::1")), "2001:db8:1:2::/64");
        assert_eq!(source_of(Some("2001:db8:1:2:ffff::9")), "2001:db8:1:2::/64");
        assert_eq!(source_of(Some("::ffff:192.0.2.7")), "192.0.2.7");
        assert_eq!(source_of(Some("192.0.2.7")), "192.0.2.7");
        assert_eq!(source_of(None), "*");
        assert_eq!(source_of(Some("garbage")), "*");
    }

    #[test]
    fn given_a_clock_set_back_when_rolled_then_the_window_ends_now_and_a_new_one_starts() {
        let mut w = Window::new(120_000, Duration::from_secs(60));
        for _ in 0..10 {
            w.note(key("r", "192.0.2.7"));
        }
        let summaries = w.roll(30_000);
        assert_eq!(summaries.len(), 1);
        assert_eq!((summaries[0].from_ms, summaries[0].to_ms), (120_000, 120_000), "never ends before it starts");
        assert_eq!(w.start_ms, 0);
    }

    #[test]
    fn given_a_failed_append_when_restored_then_the_next_summary_carries_it() {
        let mut w = Window::new(0, Duration::from_secs(60));
        w.restore(key("r", "192.0.2.7"), 7);
        assert_eq!(w.roll(60_000)[0].count, 7);
    }

    #[test]
    fn caller_strings_are_cut_made_one_line_and_urls_lose_their_credentials() {
        let long = format!("a\nb{}", "x".repeat(10_000));
        let s = short(&long);
        assert_eq!(s.chars().count(), FIELD_MAX);
        assert!(s.starts_with("a b"));
        assert_eq!(without_secrets("https://u:pw@app.example/cb?code=x#f"), "https://app.example/cb");
        assert_eq!(without_secrets("not a url?token=x"), "not a url");
        assert_eq!(without_secrets("user:pw@host/cb"), "host/cb");
    }
}
