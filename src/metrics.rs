//! Prometheus metrics, served as text on `/metrics`.
use prometheus::{
    Encoder, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry,
    TextEncoder,
};
use std::sync::LazyLock;

pub static REGISTRY: LazyLock<Registry> =
    LazyLock::new(|| Registry::new_custom(Some("annals".into()), None).expect("valid prefix"));

fn reg<T: prometheus::core::Collector + Clone + 'static>(m: T) -> T {
    REGISTRY.register(Box::new(m.clone())).expect("metric registered once");
    m
}

const LATENCY_BUCKETS: &[f64] =
    &[0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0];

pub static HTTP_SECONDS: LazyLock<HistogramVec> = LazyLock::new(|| {
    reg(HistogramVec::new(
        HistogramOpts::new("http_request_duration_seconds", "HTTP request latency by route")
            .buckets(LATENCY_BUCKETS.to_vec()),
        &["method", "route", "status"],
    )
    .expect("valid metric"))
});

pub static EVENTS_APPENDED: LazyLock<IntCounterVec> = LazyLock::new(|| {
    reg(IntCounterVec::new(Opts::new("events_appended_total", "Events committed to the log by this node"), &["store"])
        .expect("valid metric"))
});

pub static APPEND_SECONDS: LazyLock<Histogram> = LazyLock::new(|| {
    reg(Histogram::with_opts(
        HistogramOpts::new("append_duration_seconds", "Time from append request to durable commit")
            .buckets(LATENCY_BUCKETS.to_vec()),
    )
    .expect("valid metric"))
});

pub static BATCH_SIZE: LazyLock<Histogram> = LazyLock::new(|| {
    reg(Histogram::with_opts(
        HistogramOpts::new("append_batch_requests", "Append requests committed per group-commit transaction")
            .buckets(vec![1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0, 1024.0]),
    )
    .expect("valid metric"))
});

pub static PROJECTION_LAG: LazyLock<IntGaugeVec> = LazyLock::new(|| {
    reg(IntGaugeVec::new(
        Opts::new("projection_lag_events", "Events between the log head and a projection's checkpoint"),
        &["projection"],
    )
    .expect("valid metric"))
});

pub static PROJECTION_POSITION: LazyLock<IntGaugeVec> = LazyLock::new(|| {
    reg(IntGaugeVec::new(Opts::new("projection_position", "Last position a projection has applied"), &["projection"])
        .expect("valid metric"))
});

pub static ACTORS_LIVE: LazyLock<IntGaugeVec> = LazyLock::new(|| {
    reg(IntGaugeVec::new(Opts::new("actors_live", "Aggregate actors currently activated"), &["aggregate"])
        .expect("valid metric"))
});

pub static ACTOR_BUSY: LazyLock<IntCounterVec> = LazyLock::new(|| {
    reg(IntCounterVec::new(
        Opts::new("actor_busy_total", "Commands refused because an actor's mailbox was full"),
        &["aggregate"],
    )
    .expect("valid metric"))
});

pub static SINK_LAG: LazyLock<IntGaugeVec> = LazyLock::new(|| {
    reg(IntGaugeVec::new(
        Opts::new("sink_lag_events", "Events between the log head and what an audit sink's receiver surely holds"),
        &["sink"],
    )
    .expect("valid metric"))
});

pub static SINK_POSITION: LazyLock<IntGaugeVec> = LazyLock::new(|| {
    reg(IntGaugeVec::new(
        Opts::new("sink_position", "Last log position an audit sink's receiver surely holds"),
        &["sink"],
    )
    .expect("valid metric"))
});

pub static SINK_RECORDS: LazyLock<IntCounterVec> = LazyLock::new(|| {
    reg(IntCounterVec::new(Opts::new("sink_records_total", "Audit records sent, redeliveries included"), &["sink"])
        .expect("valid metric"))
});

pub static SINK_FAILURES: LazyLock<IntCounterVec> = LazyLock::new(|| {
    reg(IntCounterVec::new(
        Opts::new("sink_failures_total", "Failed or lost deliveries to an audit sink (each followed by a resend)"),
        &["sink"],
    )
    .expect("valid metric"))
});

pub static SINK_REJECTED: LazyLock<IntCounterVec> = LazyLock::new(|| {
    reg(IntCounterVec::new(
        Opts::new(
            "sink_rejected_total",
            "Records an audit sink's receiver refused for good, each recorded as a sink_delivery.rejected event \
             (refused reports of refusals are not counted: they are not reported again)",
        ),
        &["sink"],
    )
    .expect("valid metric"))
});

pub static AUDIT_CHECKPOINT_POSITION: LazyLock<IntGauge> = LazyLock::new(|| {
    reg(IntGauge::new("audit_checkpoint_position", "Last position covered by a signed checkpoint this node wrote")
        .expect("valid metric"))
});

pub static AUDIT_CHECKPOINT_FAILURES: LazyLock<IntCounter> = LazyLock::new(|| {
    reg(IntCounter::new(
        "audit_checkpoint_failures_total",
        "Signed checkpoints not written (a broken chain, an unreadable checkpoint, a store error)",
    )
    .expect("valid metric"))
});

/// Forces every metric into the registry so `/metrics` lists them before their first use.
pub fn init() {
    LazyLock::force(&HTTP_SECONDS);
    LazyLock::force(&EVENTS_APPENDED);
    LazyLock::force(&APPEND_SECONDS);
    LazyLock::force(&BATCH_SIZE);
    LazyLock::force(&PROJECTION_LAG);
    LazyLock::force(&PROJECTION_POSITION);
    LazyLock::force(&ACTORS_LIVE);
    LazyLock::force(&ACTOR_BUSY);
    LazyLock::force(&SINK_LAG);
    LazyLock::force(&SINK_POSITION);
    LazyLock::force(&SINK_RECORDS);
    LazyLock::force(&SINK_FAILURES);
    LazyLock::force(&SINK_REJECTED);
    LazyLock::force(&AUDIT_CHECKPOINT_POSITION);
    LazyLock::force(&AUDIT_CHECKPOINT_FAILURES);
    // Every aggregate's series exists from the start (at 0), so dashboards and alerts see it
    // before the first actor of that kind is activated.
    for kind in annals_events::StreamType::ALL {
        ACTORS_LIVE.with_label_values(&[kind.as_str()]);
    }
}

/// The Prometheus text exposition of every metric.
pub fn render() -> String {
    init();
    let mut buf = Vec::new();
    let _ = TextEncoder::new().encode(&REGISTRY.gather(), &mut buf);
    String::from_utf8(buf).unwrap_or_default()
}
