//! `annals events tail` and `annals events schema`.
use crate::store::{EventStore, StoreError};
use annals_events::DomainEvent;
use serde_json::json;
use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum EventsError {
    /// Printed; exit 1.
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("writing output: {0}")]
    Io(#[from] std::io::Error),
    /// `--check` found generated schema files that differ from the committed ones; exit 1.
    #[error("schema files are stale, run `annals events schema`: {0}")]
    Stale(String),
}

/// Prints the log from `from` as NDJSON; with `follow`, keeps going as events are committed.
pub async fn tail(store: &dyn EventStore, from: u64, follow: bool, out: &mut impl Write) -> Result<u64, EventsError> {
    let mut pos = from;
    let mut head = store.watch_head();
    loop {
        let page = store.read_all(pos, 1000).await?;
        for e in &page {
            serde_json::to_writer(&mut *out, &e.to_json()).map_err(std::io::Error::other)?;
            out.write_all(b"\n")?;
            pos = e.position;
        }
        out.flush()?;
        if page.len() == 1000 {
            continue;
        }
        if !follow {
            return Ok(pos);
        }
        // Another process's commits do not move this process's head watch: poll as well.
        let _ = tokio::time::timeout(Duration::from_millis(500), head.changed()).await;
    }
}

/// Every event type's JSON Schema as file name -> pretty JSON, plus an index.
pub fn generate_schemas() -> BTreeMap<String, String> {
    let mut files = BTreeMap::new();
    let mut index = serde_json::Map::new();
    for (name, schema) in DomainEvent::schemas() {
        let version = annals_events::upcast::current_version(name);
        let mut v = serde_json::to_value(&schema).unwrap_or_default();
        v["$id"] = json!(format!("urn:annals:event:{name}:v{version}"));
        v["x-annals-event-type"] = json!(name);
        v["x-annals-schema-version"] = json!(version);
        files.insert(format!("{name}.json"), serde_json::to_string_pretty(&v).unwrap_or_default() + "\n");
        index.insert(name.to_string(), json!({"schema_version": version, "file": format!("{name}.json")}));
    }
    files.insert("index.json".into(), serde_json::to_string_pretty(&index).unwrap_or_default() + "\n");
    files
}

pub fn write_schemas(dir: &Path) -> Result<usize, EventsError> {
    std::fs::create_dir_all(dir)?;
    let files = generate_schemas();
    for (name, text) in &files {
        std::fs::write(dir.join(name), text)?;
    }
    Ok(files.len())
}

/// Compares the generated schemas with the files in `dir`.
pub fn check_schemas(dir: &Path) -> Result<usize, EventsError> {
    let files = generate_schemas();
    let mut stale = Vec::new();
    for (name, text) in &files {
        if std::fs::read_to_string(dir.join(name)).ok().as_deref() != Some(text.as_str()) {
            stale.push(name.clone());
        }
    }
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            let n = e.file_name().to_string_lossy().to_string();
            if n.ends_with(".json") && !files.contains_key(&n) {
                stale.push(format!("{n} (no such event type)"));
            }
        }
    }
    if stale.is_empty() {
        Ok(files.len())
    } else {
        Err(EventsError::Stale(stale.join(", ")))
    }
}
