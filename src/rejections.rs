//! Requests refused before any aggregate is involved (an unknown client, an unregistered
//! redirect URI, failed client authentication, an invalid code or refresh token, an
//! administrator's token that does not authorize) are recorded as `rejected_request` facts,
//! so the audit stream shows misconfigured clients and probing alike.
//!
//! A flood must not grow the log without bound: in each fixed window, the first
//! [`PER_KEY`] refusals per realm, endpoint, reason and source address are recorded one by one;
//! the rest are counted, and one `rejected_request.summarized` event per key says how many when
//! the window closes. Past [`MAX_KEYS`] keys in a window, further sources are counted together
//! under source `*`. So a window adds at most `MAX_KEYS × (PER_KEY + 1)` events plus one
//! summary per reason, whatever the attacker sends.
use crate::clock::SharedClock;
use crate::store::{ExpectedVersion, SharedStore, StreamAppend};
use annals_events::rejected_request::{RejectedRequestEvent, RejectedRequestRecorded, RejectedRequestSummarized};
use annals_events::{Actor, DomainEvent, Metadata, NewEvent, StreamId, StreamType};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Refusals recorded one by one per key and window.
pub const PER_KEY: u32 = 5;
/// Keys a window tracks one by one.
pub const MAX_KEYS: usize = 10_000;
/// Caller-chosen strings are kept to this many characters.
pub const FIELD_MAX: usize = 256;
/// The default window.
pub const WINDOW: Duration = Duration::from_secs(60);

/// What is counted together.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Key {
    pub realm_id: Option<String>,
    pub endpoint: &'static str,
    pub reason: &'static str,
    /// The source address, or `*`.
    pub source: String,
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
}

impl Window {
    pub fn new(now_ms: i64, length: Duration) -> Window {
        let length_ms = (length.as_millis() as i64).max(1);
        Window { start_ms: now_ms - now_ms.rem_euclid(length_ms), length_ms, counts: HashMap::new() }
    }

    /// When `now_ms` is past this window: the summaries of what it only counted, and a new
    /// window holding `now_ms`. Nothing otherwise.
    pub fn roll(&mut self, now_ms: i64) -> Vec<RejectedRequestSummarized> {
        if now_ms < self.start_ms + self.length_ms {
            return vec![];
        }
        let ended = std::mem::replace(self, Window::new(now_ms, Duration::from_millis(self.length_ms as u64)));
        let end = ended.start_ms + ended.length_ms;
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
                endpoint: k.endpoint.into(),
                reason: k.reason.into(),
                source: k.source,
                count: counted,
                from_ms,
                to_ms,
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
        if !self.counts.contains_key(&key) && self.counts.len() >= MAX_KEYS {
            key.source = "*".into();
            let (_, counted) = self.counts.entry(key).or_default();
            *counted += 1;
            return Verdict::Count;
        }
        let (recorded, counted) = self.counts.entry(key).or_default();
        if *recorded < PER_KEY {
            *recorded += 1;
            Verdict::Record
        } else {
            *counted += 1;
            Verdict::Count
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
    /// failure to record is logged, never the caller's problem.
    pub async fn note(&self, refused: Refused, meta: Metadata) {
        let now = self.clock.now().timestamp_millis();
        let key = Key {
            realm_id: meta.realm.clone(),
            endpoint: refused.endpoint,
            reason: refused.reason,
            source: meta.source_ip.clone().unwrap_or_else(|| "unknown".into()),
        };
        let (summaries, verdict) = {
            let mut w = self.window();
            let summaries = w.roll(now);
            (summaries, w.note(key))
        };
        let mut facts: Vec<(DomainEvent, Metadata)> = summaries.into_iter().map(summary).collect();
        if verdict == Verdict::Record {
            let recorded = RejectedRequestRecorded {
                realm_id: meta.realm.clone(),
                endpoint: refused.endpoint.into(),
                reason: refused.reason.into(),
                description: short(&refused.description),
                client_id: refused.client_id.as_deref().map(short),
                redirect_uri: refused.redirect_uri.as_deref().map(short),
                grant_type: refused.grant_type.as_deref().map(short),
                at_ms: now,
            };
            let meta = Metadata { actor: Actor::System { component: "rejections".into() }, ..meta };
            facts.push((RejectedRequestEvent::from(recorded).into(), meta));
        }
        self.append(facts).await;
    }

    /// Appends the summaries of a window that has ended (the ticker's job: a flood that stops
    /// is summarized without waiting for the next refusal).
    pub async fn flush(&self) {
        let now = self.clock.now().timestamp_millis();
        let summaries = self.window().roll(now);
        self.append(summaries.into_iter().map(summary).collect()).await;
    }

    /// Each fact a stream of its own: nothing else writes it, nothing waits on another.
    async fn append(&self, facts: Vec<(DomainEvent, Metadata)>) {
        if facts.is_empty() {
            return;
        }
        let mut appends = Vec::with_capacity(facts.len());
        for (event, meta) in &facts {
            match NewEvent::new(event, meta) {
                Ok(e) => appends.push(StreamAppend {
                    stream: StreamId::new(StreamType::RejectedRequest, uuid::Uuid::now_v7().to_string()),
                    expected: ExpectedVersion::Exact(0),
                    events: vec![e],
                }),
                Err(e) => tracing::error!(error = %e, "a refused request cannot be encoded"),
            }
        }
        if let Err(e) = self.store.append_all(appends).await {
            tracing::error!(error = %e, facts = facts.len(), "refused requests cannot be recorded");
        }
    }

    /// Summarizes what the current window counted so far (the node is stopping).
    pub async fn close(&self) {
        let now = self.clock.now().timestamp_millis();
        let summaries = {
            let mut w = self.window();
            let length = Duration::from_millis(w.length_ms as u64);
            std::mem::replace(&mut *w, Window::new(now, length)).summaries(now)
        };
        self.append(summaries.into_iter().map(summary).collect()).await;
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
        source_ip: (s.source != "*").then(|| s.source.clone()),
        ..Default::default()
    };
    (RejectedRequestEvent::from(s).into(), meta)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(source: &str) -> Key {
        Key {
            realm_id: Some("r".into()),
            endpoint: "token",
            reason: "invalid_client_credentials",
            source: source.into(),
        }
    }

    #[test]
    fn given_a_window_when_one_source_floods_then_the_first_few_are_recorded_and_the_rest_summarized_once() {
        let mut w = Window::new(61_000, Duration::from_secs(60));
        assert_eq!(w.start_ms, 60_000, "windows are aligned");
        let verdicts: Vec<Verdict> = (0..100).map(|_| w.note(key("192.0.2.7"))).collect();
        assert_eq!(verdicts.iter().filter(|v| **v == Verdict::Record).count(), PER_KEY as usize);
        assert!(verdicts[..PER_KEY as usize].iter().all(|v| *v == Verdict::Record), "the first ones");
        assert_eq!(w.note(key("198.51.100.1")), Verdict::Record, "another source is recorded on its own");
        assert_eq!(w.roll(119_999), vec![], "the window has not ended");
        let summaries = w.roll(120_000);
        assert_eq!(summaries.len(), 1, "only what was counted is summarized: {summaries:?}");
        let s = &summaries[0];
        assert_eq!((s.source.as_str(), s.count, s.from_ms, s.to_ms), ("192.0.2.7", 95, 60_000, 120_000));
        assert_eq!(w.note(key("192.0.2.7")), Verdict::Record, "a new window records again");
        assert_eq!(w.roll(500_000), vec![], "nothing counted, nothing summarized");
    }

    #[test]
    fn given_more_sources_than_tracked_when_they_come_then_the_rest_are_counted_together() {
        let mut w = Window::new(0, Duration::from_secs(60));
        for n in 0..MAX_KEYS {
            assert_eq!(w.note(key(&n.to_string())), Verdict::Record);
        }
        for n in 0..1_000 {
            assert_eq!(w.note(key(&format!("new-{n}"))), Verdict::Count, "never recorded one by one");
        }
        assert_eq!(w.counts.len(), MAX_KEYS + 1, "one more key, whatever the sources");
        let summaries = w.roll(60_000);
        assert_eq!(summaries.len(), 1);
        assert_eq!((summaries[0].source.as_str(), summaries[0].count), ("*", 1_000));
    }

    #[test]
    fn caller_strings_are_cut_and_made_one_line() {
        let long = format!("a\nb{}", "x".repeat(10_000));
        let s = short(&long);
        assert_eq!(s.chars().count(), FIELD_MAX);
        assert!(s.starts_with("a b"));
    }
}
