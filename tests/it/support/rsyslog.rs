//! A real rsyslog receiving on a random loopback port (plain TCP, or TLS through its GnuTLS
//! driver) and writing every message's structured data and body to a file, one per line.
//! It runs from a private configuration in a temp dir and touches nothing of the system's.
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct Rsyslog {
    dir: tempfile::TempDir,
    pub port: u16,
    tls: bool,
    child: Option<Child>,
}

/// A CA and a server certificate for 127.0.0.1, in PEM files under `dir`.
fn tls_files(dir: &Path) {
    use openssl::asn1::Asn1Time;
    use openssl::ec::{EcGroup, EcKey};
    use openssl::hash::MessageDigest;
    use openssl::nid::Nid;
    use openssl::pkey::PKey;
    use openssl::x509::extension::{BasicConstraints, SubjectAlternativeName};
    use openssl::x509::{X509NameBuilder, X509};
    let key = || {
        PKey::from_ec_key(EcKey::generate(&EcGroup::from_curve_name(Nid::X9_62_PRIME256V1).unwrap()).unwrap()).unwrap()
    };
    let name = |cn: &str| {
        let mut n = X509NameBuilder::new().unwrap();
        n.append_entry_by_text("CN", cn).unwrap();
        n.build()
    };
    let cert =
        |subject: &str, key: &PKey<openssl::pkey::Private>, issuer: Option<(&X509, &PKey<openssl::pkey::Private>)>| {
            let mut b = X509::builder().unwrap();
            b.set_version(2).unwrap();
            let serial = openssl::bn::BigNum::from_u32(rand::random::<u32>() >> 1).unwrap().to_asn1_integer().unwrap();
            b.set_serial_number(&serial).unwrap();
            b.set_subject_name(&name(subject)).unwrap();
            b.set_pubkey(key).unwrap();
            b.set_not_before(&Asn1Time::days_from_now(0).unwrap()).unwrap();
            b.set_not_after(&Asn1Time::days_from_now(2).unwrap()).unwrap();
            match issuer {
                None => {
                    b.set_issuer_name(&name(subject)).unwrap();
                    b.append_extension(BasicConstraints::new().critical().ca().build().unwrap()).unwrap();
                    b.sign(key, MessageDigest::sha256()).unwrap();
                }
                Some((ca, ca_key)) => {
                    b.set_issuer_name(ca.subject_name()).unwrap();
                    let san = SubjectAlternativeName::new()
                        .ip("127.0.0.1")
                        .dns("localhost")
                        .build(&b.x509v3_context(Some(ca), None))
                        .unwrap();
                    b.append_extension(san).unwrap();
                    b.sign(ca_key, MessageDigest::sha256()).unwrap();
                }
            }
            b.build()
        };
    let ca_key = key();
    let ca = cert("annals test CA", &ca_key, None);
    let server_key = key();
    let server = cert("127.0.0.1", &server_key, Some((&ca, &ca_key)));
    std::fs::write(dir.join("ca.pem"), ca.to_pem().unwrap()).unwrap();
    std::fs::write(dir.join("cert.pem"), server.to_pem().unwrap()).unwrap();
    std::fs::write(dir.join("key.pem"), server_key.private_key_to_pem_pkcs8().unwrap()).unwrap();
}

fn rsyslogd() -> PathBuf {
    super::program(&["/usr/sbin/rsyslogd", "/sbin/rsyslogd"])
}

impl Rsyslog {
    /// Starts rsyslog on a random port; with `tls`, RFC 5425 with a certificate from a CA
    /// whose file is [`Rsyslog::ca`].
    pub fn start(tls: bool) -> Rsyslog {
        let dir = tempfile::tempdir().unwrap();
        if tls {
            tls_files(dir.path());
        }
        let mut r = Rsyslog { dir, port: 0, tls, child: None };
        r.launch();
        r
    }

    pub fn ca(&self) -> PathBuf {
        self.dir.path().join("ca.pem")
    }

    fn config(&self) -> String {
        let d = self.dir.path().display();
        let (global_tls, driver) = if self.tls {
            (
                format!(" defaultNetstreamDriverCAFile=\"{d}/ca.pem\" defaultNetstreamDriverCertFile=\"{d}/cert.pem\" defaultNetstreamDriverKeyFile=\"{d}/key.pem\""),
                " streamDriver.name=\"gtls\" streamDriver.mode=\"1\" streamDriver.authMode=\"anon\"",
            )
        } else {
            (String::new(), "")
        };
        format!(
            "global(workDirectory=\"{d}\" maxMessageSize=\"64k\" net.enableDNS=\"off\"{global_tls})\n\
             module(load=\"imtcp\"{driver})\n\
             input(type=\"imtcp\" address=\"127.0.0.1\" port=\"{port}\" listenPortFileName=\"{d}/port\" ruleset=\"annals\")\n\
             template(name=\"raw\" type=\"string\" string=\"%structured-data% %msg%\\n\")\n\
             ruleset(name=\"annals\") {{ action(type=\"omfile\" file=\"{d}/received.log\" template=\"raw\") }}\n",
            port = self.port,
        )
    }

    /// Starts rsyslogd (on the port it had, after the first start) and waits until it listens.
    fn launch(&mut self) {
        let d = self.dir.path();
        let _ = std::fs::remove_file(d.join("port"));
        std::fs::write(d.join("rsyslog.conf"), self.config()).unwrap();
        let child = Command::new(rsyslogd())
            .arg("-n")
            .arg("-f")
            .arg(d.join("rsyslog.conf"))
            .arg("-i")
            .arg(d.join("rsyslog.pid"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(d.join("rsyslog.stderr")).unwrap())
            .spawn()
            .expect("rsyslogd starts");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            // rsyslog writes the port file only for port 0; a restart listens on the known port.
            let port = match self.port {
                0 => std::fs::read_to_string(d.join("port")).ok().and_then(|p| p.trim().parse().ok()),
                known => Some(known),
            };
            if let (Some(port), true) = (port, super::running(&mut self.child)) {
                if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                    self.port = port;
                    return;
                }
            }
            let stderr = std::fs::read_to_string(d.join("rsyslog.stderr")).unwrap_or_default();
            assert!(Instant::now() < deadline, "rsyslogd did not start listening: {stderr}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Stops rsyslogd as an operator would (SIGTERM) and waits for it to exit.
    pub fn stop(&mut self) {
        super::terminate(self.child.take());
    }

    /// Starts it again on the same port, appending to the same file.
    pub fn restart(&mut self) {
        self.stop();
        self.launch();
    }

    /// The lines received so far: `(structured data, message body)`.
    pub fn received(&self) -> Vec<(String, String)> {
        let text = std::fs::read_to_string(self.dir.path().join("received.log")).unwrap_or_default();
        // A last line rsyslog is still writing is not yet received.
        let complete = &text[..text.rfind('\n').map_or(0, |i| i + 1)];
        complete
            .lines()
            .filter_map(|l| {
                let end = l.find("] ")?;
                Some((l[..=end].to_string(), l[end + 2..].to_string()))
            })
            .collect()
    }
}

impl Drop for Rsyslog {
    fn drop(&mut self) {
        self.stop();
    }
}
