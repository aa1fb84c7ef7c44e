//! Server-rendered pages (login, errors, form_post), from templates built into the binary,
//! each replaceable by a file of the same name in the theme directory. HTML escaping is on
//! for every `.html` template, so user input is never markup.
use actix_web::http::header::{CacheControl, CacheDirective, ContentType};
use actix_web::http::StatusCode;
use actix_web::HttpResponse;
use minijinja::Environment;
use serde::Serialize;
use std::path::Path;

const BUILT_IN: [(&str, &str); 7] = [
    ("layout.html", include_str!("../../templates/layout.html")),
    ("login.html", include_str!("../../templates/login.html")),
    ("error.html", include_str!("../../templates/error.html")),
    ("form_post.html", include_str!("../../templates/form_post.html")),
    ("logout.html", include_str!("../../templates/logout.html")),
    ("logged_out.html", include_str!("../../templates/logged_out.html")),
    ("consent.html", include_str!("../../templates/consent.html")),
];

#[derive(Debug, thiserror::Error)]
pub enum PageError {
    #[error("theme template {0}: {1}")]
    Theme(String, String),
}

pub struct Pages {
    env: Environment<'static>,
}

impl Pages {
    /// The built-in templates, each replaced by `theme_dir/{name}` where that file exists. A
    /// theme template that does not parse stops start-up rather than the first login.
    pub fn new(theme_dir: Option<&Path>) -> Result<Self, PageError> {
        let mut env = Environment::new();
        for (name, text) in BUILT_IN {
            let source = match theme_dir.map(|d| d.join(name)).filter(|p| p.is_file()) {
                Some(path) => {
                    std::fs::read_to_string(&path).map_err(|e| PageError::Theme(name.into(), e.to_string()))?
                }
                None => text.to_string(),
            };
            env.add_template_owned(name, source).map_err(|e| PageError::Theme(name.into(), e.to_string()))?;
        }
        Ok(Pages { env })
    }

    /// A page, never cached (it may hold a CSRF token) and never framed.
    pub fn respond<S: Serialize>(&self, status: StatusCode, name: &str, ctx: S) -> HttpResponse {
        let html = self.env.get_template(name).and_then(|t| t.render(ctx));
        match html {
            Ok(body) => HttpResponse::build(status)
                .content_type(ContentType::html())
                .insert_header(CacheControl(vec![CacheDirective::NoStore]))
                .insert_header(("X-Frame-Options", "DENY"))
                .insert_header(("Content-Security-Policy", "frame-ancestors 'none'"))
                .insert_header(("Referrer-Policy", "no-referrer"))
                .body(body),
            Err(e) => {
                tracing::error!(error = %e, template = name, "page cannot be rendered");
                HttpResponse::InternalServerError()
                    .content_type(ContentType::plaintext())
                    .body("page cannot be rendered")
            }
        }
    }

    /// The error page (an untrusted client or redirect URI, a broken login): never a redirect.
    pub fn error(&self, status: StatusCode, realm_display: &str, message: &str) -> HttpResponse {
        self.respond(status, "error.html", minijinja::context! { realm_display, title => "We are sorry...", message })
    }
}
