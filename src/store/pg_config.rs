//! The writer's `tokio-postgres` settings, taken from what the sqlx pool resolved.
//!
//! The two drivers must reach the same server as the same user. Parsing the URL twice would
//! not: sqlx also reads `PGHOST`, `PGUSER`, `PGDATABASE`, `PGSSLMODE` and friends, applies the
//! password file, and accepts options tokio-postgres refuses. So host, port, user, database,
//! options and TLS mode come from sqlx's resolved options, and the password (which sqlx does
//! not expose) is resolved in libpq's order: the URL, `PGPASSWORD`, then the password file.
use super::StoreError;
use sqlx::postgres::{PgConnectOptions, PgSslMode};
use std::io::BufRead;
use std::path::PathBuf;
use std::time::Duration;
use tokio_postgres::config::SslMode;

/// How long connecting may take, and how long the kernel keeps sending on a connection the
/// server no longer answers, before the writer gives up on it (a half-open connection must
/// not stall appends for the system's default of many minutes).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
const DEAD_PEER: Duration = Duration::from_secs(30);

pub(crate) fn writer_config(url: &str, opts: &PgConnectOptions) -> Result<tokio_postgres::Config, StoreError> {
    let mut c = tokio_postgres::Config::new();
    match opts.get_socket() {
        Some(dir) => c.host_path(dir),
        None => c.host(opts.get_host()),
    };
    c.port(opts.get_port()).user(opts.get_username());
    if let Some(db) = opts.get_database() {
        c.dbname(db);
    }
    if let Some(o) = opts.get_options() {
        c.options(o);
    }
    if let Some(a) = opts.get_application_name() {
        c.application_name(a);
    }
    // This build speaks PostgreSQL without TLS (as the pool does): a URL that requires TLS
    // fails to connect, plainly, rather than falling back to clear text.
    c.ssl_mode(match opts.get_ssl_mode() {
        PgSslMode::Disable | PgSslMode::Allow | PgSslMode::Prefer => SslMode::Disable,
        PgSslMode::Require | PgSslMode::VerifyCa | PgSslMode::VerifyFull => SslMode::Require,
    });
    c.connect_timeout(CONNECT_TIMEOUT).keepalives(true).keepalives_idle(DEAD_PEER).tcp_user_timeout(DEAD_PEER);
    let host = opts.get_socket().map_or(opts.get_host(), |_| "localhost");
    let password = url_password(url)?
        .or_else(|| std::env::var("PGPASSWORD").ok())
        .or_else(|| password_file(host, opts.get_port(), opts.get_database(), opts.get_username()));
    if let Some(p) = password {
        c.password(p);
    }
    Ok(c)
}

/// The password in the URL's user information or its `password` parameter, decoded.
fn url_password(url: &str) -> Result<Option<String>, StoreError> {
    let url = url::Url::parse(url).map_err(|e| StoreError::Invalid(format!("database URL: {e}")))?;
    let decode = |p: &str| percent_encoding::percent_decode_str(p).decode_utf8_lossy().into_owned();
    if let Some((_, p)) = url.query_pairs().find(|(k, _)| k == "password") {
        return Ok(Some(p.into_owned()));
    }
    Ok(url.password().map(decode))
}

/// libpq's password file: `PGPASSFILE` or `~/.pgpass`, ignored unless only its owner can read it.
fn password_file(host: &str, port: u16, database: Option<&str>, user: &str) -> Option<String> {
    let path = match std::env::var_os("PGPASSFILE") {
        Some(p) => PathBuf::from(p),
        None => PathBuf::from(std::env::var_os("HOME")?).join(".pgpass"),
    };
    let file = std::fs::File::open(&path).ok()?;
    {
        use std::os::unix::fs::PermissionsExt;
        if file.metadata().ok()?.permissions().mode() & 0o077 != 0 {
            tracing::warn!(path = %path.display(), "password file ignored: readable by others");
            return None;
        }
    }
    let port = port.to_string();
    let wanted = [host, port.as_str(), database.unwrap_or(user), user];
    std::io::BufReader::new(file).lines().map_while(Result::ok).find_map(|line| password_line(&line, &wanted))
}

/// One line of a password file: `host:port:database:user:password`, `*` matching anything,
/// `\:` and `\\` escaping.
fn password_line(line: &str, wanted: &[&str; 4]) -> Option<String> {
    if line.trim_start().starts_with('#') {
        return None;
    }
    let mut fields = Vec::with_capacity(5);
    let mut field = String::new();
    let mut chars = line.trim_end_matches(['\r', '\n']).chars();
    while let Some(ch) = chars.next() {
        match ch {
            '\\' => field.extend(chars.next()),
            ':' if fields.len() < 4 => fields.push(std::mem::take(&mut field)),
            _ => field.push(ch),
        }
    }
    fields.push(field);
    if fields.len() != 5 {
        return None;
    }
    let matches = fields.iter().zip(wanted).all(|(f, w)| f == "*" || f == w);
    matches.then(|| fields.pop().unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::str::FromStr;

    #[test]
    fn given_a_url_with_a_percent_encoded_password_then_it_is_decoded() {
        assert_eq!(url_password("postgres://u:p%40ss%3Aw@h/db").unwrap().as_deref(), Some("p@ss:w"));
        assert_eq!(url_password("postgres://u@h/db?password=x%20y").unwrap().as_deref(), Some("x y"));
        assert_eq!(url_password("postgres://u@h/db").unwrap(), None);
        assert!(url_password("not a url").is_err());
    }

    #[test]
    fn given_password_file_lines_then_wildcards_and_escapes_match_as_libpq_does() {
        let wanted = ["db.example", "5432", "annals", "app"];
        assert_eq!(password_line("db.example:5432:annals:app:s3cret", &wanted).as_deref(), Some("s3cret"));
        assert_eq!(password_line("*:*:*:app:a\\:b\\\\c", &wanted).as_deref(), Some("a:b\\c"));
        assert_eq!(password_line("*:5433:*:app:nope", &wanted), None);
        assert_eq!(password_line("# *:*:*:*:comment", &wanted), None);
        assert_eq!(password_line("too:few:fields", &wanted), None);
        assert_eq!(password_line("*:*:*:*:pass:with:colons", &wanted).as_deref(), Some("pass:with:colons"));
    }

    #[test]
    fn given_sqlx_options_then_the_writer_reaches_the_same_server_as_the_same_user() {
        let url = "postgres://alice:pw@127.0.0.1:6543/annals?application_name=node1&statement-cache-capacity=10";
        let opts = PgConnectOptions::from_str(url).unwrap();
        let c = writer_config(url, &opts).unwrap();
        assert_eq!(c.get_ports(), [6543]);
        assert_eq!(c.get_user(), Some("alice"));
        assert_eq!(c.get_dbname(), Some("annals"));
        assert_eq!(c.get_password(), Some(&b"pw"[..]));
        assert_eq!(c.get_application_name(), Some("node1"));
        assert!(matches!(c.get_hosts(), [tokio_postgres::config::Host::Tcp(h)] if h == "127.0.0.1"));
    }
}
