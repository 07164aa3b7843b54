//! The page's files, compiled into the binary from a fixed list. A request names one of them
//! exactly or gets a 404: nothing is read from the filesystem, so no path can reach outside
//! this list, however it is encoded.

use axum::extract::Path;
use axum::http::header;
use axum::response::{IntoResponse, Response};

struct Asset {
    name: &'static str,
    content_type: &'static str,
    body: &'static [u8],
}

const HTML: &str = "text/html; charset=utf-8";
const JS: &str = "text/javascript; charset=utf-8";
const CSS: &str = "text/css; charset=utf-8";
const TEXT: &str = "text/plain; charset=utf-8";

/// Every file the page may load, by its name under /static/.
const ASSETS: &[Asset] = &[
    Asset { name: "index.html", content_type: HTML, body: include_bytes!("../../web/index.html") },
    Asset { name: "app.js", content_type: JS, body: include_bytes!("../../web/app.js") },
    Asset { name: "plots.js", content_type: JS, body: include_bytes!("../../web/plots.js") },
    Asset { name: "style.css", content_type: CSS, body: include_bytes!("../../web/style.css") },
    Asset {
        name: "vendor/uPlot.iife.min.js",
        content_type: JS,
        body: include_bytes!("../../web/vendor/uPlot.iife.min.js"),
    },
    Asset { name: "vendor/uPlot.min.css", content_type: CSS, body: include_bytes!("../../web/vendor/uPlot.min.css") },
    Asset { name: "vendor/uPlot.LICENSE", content_type: TEXT, body: include_bytes!("../../web/vendor/uPlot.LICENSE") },
];

/// The page loads only its own files and talks only to this server. `no-referrer` keeps a
/// `?token=` in the page's address from leaking anywhere.
const CSP: &str = "default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; connect-src 'self'; \
                   base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

fn serve(name: &str) -> Option<Response> {
    let asset = ASSETS.iter().find(|a| a.name == name)?;
    let headers = [
        (header::CONTENT_TYPE, asset.content_type),
        // The files change with the binary: revalidate rather than keep a stale page.
        (header::CACHE_CONTROL, "no-cache"),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (header::REFERRER_POLICY, "no-referrer"),
        (header::CONTENT_SECURITY_POLICY, CSP),
    ];
    Some((headers, asset.body).into_response())
}

pub(crate) async fn index() -> Response {
    serve("index.html").expect("index.html is embedded")
}

pub(crate) async fn file(Path(name): Path<String>) -> Response {
    serve(&name).unwrap_or_else(super::not_found_response)
}

/// Paths anyone may fetch without the token: the page's own code, which holds no data.
pub(crate) fn is_public(path: &str) -> bool {
    path == "/" || path.starts_with("/static/")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_listed_names_are_served() {
        assert!(serve("app.js").is_some());
        assert!(serve("vendor/uPlot.iife.min.js").is_some());
        for bad in ["../Cargo.toml", "/etc/passwd", "vendor/../app.js", "", "vendor", "APP.JS", "app.js/"] {
            assert!(serve(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn the_page_references_only_embedded_files() {
        let html = std::str::from_utf8(ASSETS[0].body).unwrap();
        let names: Vec<&str> = html.split("\"static/").skip(1).map(|part| &part[..part.find('"').unwrap()]).collect();
        assert_eq!(names.len(), 5, "{names:?}");
        for name in names {
            assert!(serve(name).is_some(), "index.html loads static/{name}, which is not embedded");
        }
        assert!(!html.contains("http://") && !html.contains("https://"), "the page loads nothing from outside");
    }
}
