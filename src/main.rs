//! `annals`: the server and its operator tools.
#![forbid(unsafe_code)]

use annals::cli::{self, Cli, Command, EventsCommand, EvidenceCommand, LogFormat, ProjectionsCommand};
use annals::clock::{SharedClock, SystemClock};
use annals::config::{FileConfig, ServeConfig};
use annals::store::{self, ReadUntil};
use anyhow::{bail, Context};
use clap::Parser;
use indicatif::{ProgressBar, ProgressStyle};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Instant;

/// mimalloc hands freed memory back to the OS; with glibc's per-thread arenas, the garbage of
/// a start-up rebuild stayed resident for the life of the process.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_tracing(cli.log_format);
    // A multi-threaded tokio runtime under the actix system: the store writer, projection
    // runner and PostgreSQL listener run on worker threads, actors on their own arbiters.
    let system = actix_rt::System::with_tokio_rt(|| {
        tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("tokio runtime")
    });
    match system.block_on(run(cli)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(1)
        }
    }
}

fn init_tracing(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("ANNALS_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,sqlx=warn"));
    // Colours only for a terminal: a log file or journal gets no escape codes, and writing
    // them into every request's span fields was 2% of an introspection.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).with_ansi(ansi);
    match format {
        LogFormat::Json => builder.json().flatten_event(true).with_current_span(true).init(),
        LogFormat::Text => builder.init(),
    }
}

fn progress(len: u64, what: &str) -> ProgressBar {
    // indicatif draws only on a terminal; piped output stays clean.
    let pb = ProgressBar::new(len);
    pb.set_style(
        ProgressStyle::with_template("{msg} [{bar:40}] {pos}/{len} ({per_sec}, {eta})")
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    pb.set_message(what.to_string());
    pb
}

async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let file = FileConfig::load(cli.store.config.as_deref())?;
    let store_cfg = cli.store.resolve(&file);
    let clock: SharedClock = Arc::new(SystemClock);
    if let Command::Serve(args) = cli.command {
        // Sinks from the flags and from the file; one name means one sink.
        let mut sinks = args.sinks;
        for (name, url) in &file.sinks {
            sinks.push(annals::sinks::SinkSpec::new(name, url)?);
        }
        let mut names = std::collections::HashSet::new();
        if let Some(dup) = sinks.iter().find(|s| !names.insert(s.name.clone())) {
            bail!("sink {} is configured twice", dup.name);
        }
        let cfg = ServeConfig {
            store: store_cfg,
            listen: args.listen.or(file.listen).unwrap_or_else(|| "127.0.0.1:8080".into()),
            base_url: args.base_url.or(file.base_url),
            import_realm: args.import_realm.or(file.import_realm),
            theme_dir: args.theme_dir.or(file.theme_dir),
            bootstrap_admin_username: std::env::var("ANNALS_BOOTSTRAP_ADMIN_USERNAME")
                .unwrap_or_else(|_| "admin".into()),
            bootstrap_admin_password: std::env::var("ANNALS_BOOTSTRAP_ADMIN_PASSWORD").ok().filter(|p| !p.is_empty()),
            sinks,
            audit_key: cli.store.audit_key.clone().or(file.audit_key),
            checkpoint_interval: std::time::Duration::from_secs(
                args.audit_checkpoint_interval.or(file.audit_checkpoint_interval).unwrap_or(60).max(1),
            ),
            rejection_window: annals::rejections::WINDOW,
            ssf_private_endpoints: args.ssf_allow_private_endpoints,
        };
        return serve(cfg, clock).await;
    }
    if let Command::Events(EventsCommand::Schema { out, check }) = &cli.command {
        return Ok(if *check {
            let n = cli::events::check_schemas(out)?;
            println!("{n} schema files in {} are current", out.display());
            ExitCode::SUCCESS
        } else {
            let n = cli::events::write_schemas(out)?;
            println!("wrote {n} schema files to {}", out.display());
            ExitCode::SUCCESS
        });
    }
    if let Command::Evidence(EvidenceCommand::Verify { file, key }) = &cli.command {
        // Offline: no store, no server keys.
        let bytes = std::fs::read(file).with_context(|| format!("reading {}", file.display()))?;
        let trusted = match key {
            Some(path) => Some(cli::evidence::trusted_keys(
                &std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?,
            )?),
            None => None,
        };
        let (text, code) = cli::evidence::verify_report(&bytes, trusted.as_deref());
        print!("{text}");
        return Ok(ExitCode::from(code));
    }
    std::fs::create_dir_all(&store_cfg.data_dir).ok();
    let store =
        store::open(&store_cfg.database_url).await.with_context(|| format!("opening {}", store_cfg.database_url))?;
    let code = match cli.command {
        Command::Serve(_)
        | Command::Events(EventsCommand::Schema { .. })
        | Command::Evidence(EvidenceCommand::Verify { .. }) => ExitCode::SUCCESS,
        Command::Evidence(EvidenceCommand::Export { window: req, file: out_file }) => {
            let key = match cli.store.audit_key.clone().or(file.audit_key.clone()) {
                Some(path) => annals::audit_key::AuditKey::from_pem_file(&path)?,
                None => {
                    annals::audit_key::AuditKey::derived(&annals::server::existing_server_keys(&store_cfg.data_dir)?)
                }
            };
            let out = cli::evidence::export(&store, &key, &req, chrono::Utc::now()).await?;
            std::fs::write(&out_file, &out.bundle).with_context(|| format!("writing {}", out_file.display()))?;
            println!(
                "wrote {}: {} records, {} signed checkpoints, audit key {}",
                out_file.display(),
                out.records,
                out.checkpoints,
                out.key_id
            );
            ExitCode::SUCCESS
        }
        Command::TraceToken { token } => {
            print!("{}", cli::trace_token::trace(&store, &token).await?);
            ExitCode::SUCCESS
        }
        Command::At { time, what, realm, user } => {
            let req = cli::at::AtRequest { at: time, what, realm, user };
            print!("{}", cli::at::report(&store, &req).await?);
            ExitCode::SUCCESS
        }
        Command::Timeline { window: req, html } => {
            let t = cli::timeline::gather(&store, &req).await?;
            print!("{}", cli::timeline::render_text(&t));
            if let Some(path) = html {
                std::fs::write(&path, cli::timeline::render_html(&t))
                    .with_context(|| format!("writing {}", path.display()))?;
            }
            ExitCode::SUCCESS
        }
        Command::Verify => {
            let pb = progress(store.head().await?, "verifying");
            let result = annals::verify::verify_chain(&*store, |p| pb.set_position(p)).await;
            pb.finish_and_clear();
            match result {
                Ok(r) => {
                    println!(
                        "OK: {} events verified; head position {} hash {}",
                        r.events, r.head_position, r.head_hash
                    );
                    ExitCode::SUCCESS
                }
                Err(annals::verify::VerifyError::Broken(b)) => {
                    println!("BROKEN: {b}");
                    ExitCode::from(2)
                }
                Err(e @ annals::verify::VerifyError::Unreadable { .. }) => {
                    println!("BROKEN: {e}");
                    ExitCode::from(2)
                }
                Err(e) => return Err(e.into()),
            }
        }
        Command::Replay { stream, at, version, json } => {
            let until = match (at, version) {
                (Some(t), _) => ReadUntil::Time(t),
                (None, Some(v)) => ReadUntil::Version(v),
                (None, None) => ReadUntil::End,
            };
            let r = cli::replay::replay(&*store, &stream, until).await?;
            if json {
                let events: Vec<_> = r.events.iter().map(|e| e.to_json()).collect();
                println!(
                    "{}",
                    serde_json::to_string_pretty(
                        &serde_json::json!({"stream": stream.to_string(), "events": events, "state": r.state})
                    )?
                );
            } else {
                print!("{}", cli::replay::render_text(&r));
            }
            ExitCode::SUCCESS
        }
        Command::Events(EventsCommand::Tail { from, follow }) => {
            let stdout = std::io::stdout();
            let mut out = std::io::BufWriter::new(stdout.lock());
            cli::events::tail(&*store, from, follow, &mut out).await?;
            ExitCode::SUCCESS
        }
        Command::Projections(ProjectionsCommand::Rebuild { name }) => {
            let names: Vec<&str> =
                annals_projections::Directory::NAMES.iter().chain(annals::sqlmodels::NAMES.iter()).copied().collect();
            if let Some(n) = &name {
                if !names.contains(&n.as_str()) {
                    bail!("unknown projection {n:?}; known: {}", names.join(", "));
                }
            }
            if name.as_deref().is_none_or(|n| annals::sqlmodels::NAMES.contains(&n)) {
                // SQL read models really drop their rows and checkpoint and refold from 0.
                let started = Instant::now();
                let pb = progress(store.head().await?, "rebuilding users (SQL)");
                let at = annals::sqlmodels::rebuild(&store, |p| pb.set_position(p)).await?;
                pb.finish_and_clear();
                let pool = store.pool();
                let (users, grants) = (
                    annals::sqlmodels::users::count(&pool, None).await?,
                    annals::sqlmodels::users::grant_count(&pool).await?,
                );
                println!(
                    "users: dropped and rebuilt to position {at} in {:.3} s (SQL): {users} users, {grants} grants",
                    started.elapsed().as_secs_f64()
                );
                if name.is_some() {
                    store.shutdown().await;
                    return Ok(ExitCode::SUCCESS);
                }
            }
            let head = store.head().await?;
            let pb = progress(head, "rebuilding");
            let started = Instant::now();
            let dir = annals::readmodels::rebuild(&store, |p| pb.set_position(p)).await?;
            pb.finish_and_clear();
            let secs = started.elapsed().as_secs_f64();
            let m = &dir.memberships;
            let counts = [
                ("realms", format!("{} realms", dir.realms.len())),
                ("clients", format!("{} clients", dir.clients.len())),
                ("memberships", format!("{} roles, {} groups", m.role_count(), m.group_count())),
                ("signing_keys", format!("{} keys", dir.signing_keys.len())),
            ];
            for (n, c) in counts {
                if name.as_deref().is_none_or(|x| x == n) {
                    println!("{n}: {c}");
                }
            }
            println!(
                "rebuilt from {} events in {:.3} s ({:.0} events/s)",
                dir.position,
                secs,
                dir.position as f64 / secs.max(1e-9)
            );
            ExitCode::SUCCESS
        }
        Command::Import { file } => {
            let keys = annals::server::server_keys(&store_cfg.data_dir)?;
            let pb = progress(store.head().await?, "reading the log");
            let dir = annals::readmodels::rebuild(&store, |p| pb.set_position(p)).await?;
            // Planning hashes plain-text passwords with argon2id (tens of ms each): a spinner
            // says the import is alive; the append itself is one atomic commit.
            pb.set_style(
                ProgressStyle::with_template("{spinner} {msg} ({elapsed})")
                    .unwrap_or_else(|_| ProgressStyle::default_spinner()),
            );
            pb.set_message(format!("validating and importing {}", file.display()));
            pb.enable_steady_tick(std::time::Duration::from_millis(120));
            let done = cli::import::import_file(&store, &dir, &keys, clock.now(), &file).await;
            pb.finish_and_clear();
            let done = done?;
            println!("imported realm {} ({} events, log head {})", done.realm, done.events, done.last_position);
            ExitCode::SUCCESS
        }
        Command::Export { realm, out } => {
            // Both kinds of read model at one position, so no user names a role or group the
            // directory has not seen (a node may be writing meanwhile): retried until equal.
            let mut dir = annals::readmodels::rebuild(&store, |_| {}).await?;
            for _ in 0..20 {
                if annals::sqlmodels::catch_up(&store).await? == dir.position {
                    break;
                }
                let at = std::sync::RwLock::new(dir);
                annals::readmodels::catch_up(&store, &at, store.head().await?, |_| {}).await?;
                dir = at.into_inner().unwrap_or_else(|p| p.into_inner());
            }
            let realm_id = dir.realms.by_name(&realm).map(|r| r.id.clone()).unwrap_or_default();
            let users = annals::sqlmodels::users::realm_users(&store.pool(), &realm_id).await?;
            let json = annals::keycloak::export::export_realm(&dir, &users, &realm)?;
            let text = serde_json::to_string_pretty(&json)? + "\n";
            match out {
                Some(path) => std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?,
                None => print!("{text}"),
            }
            ExitCode::SUCCESS
        }
    };
    store.shutdown().await;
    Ok(code)
}

async fn serve(cfg: ServeConfig, clock: SharedClock) -> anyhow::Result<ExitCode> {
    let database = annals::config::redact_url(&cfg.store.database_url);
    let running = annals::server::start(cfg, clock).await?;
    let base = running.base_url.clone();
    println!("Annals is listening on http://{}", running.addr);
    println!("  store:       {database}");
    println!("  master realm {base}/realms/master");
    println!("  health:      {base}/health/ready");
    println!("  metrics:     {base}/metrics");
    for realm in &running.imported {
        println!("  imported:    {base}/realms/{realm}");
    }
    if let Some(admin) = &running.bootstrap {
        match &admin.generated_password {
            Some(pw) => println!(
                "  bootstrap admin: {} / {pw}   (shown once; set ANNALS_BOOTSTRAP_ADMIN_PASSWORD to choose it)",
                admin.username
            ),
            None => println!("  bootstrap admin: {} (password from ANNALS_BOOTSTRAP_ADMIN_PASSWORD)", admin.username),
        }
    }
    wait_for_signal().await;
    tracing::info!("shutting down: draining requests, mailboxes and queued appends");
    running.stop().await;
    Ok(ExitCode::SUCCESS)
}

async fn wait_for_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(s) => s,
            Err(_) => {
                let _ = ctrl_c.await;
                return;
            }
        };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}
