//! The embedded page: its files with their content types, nothing else reachable however the
//! path is written (sent raw, so no client normalises `..` away), and bad query parameters on
//! the page's endpoints answered 4xx, never 5xx.

use crate::api::{finished_study, get, serve};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

/// Sends `GET path` exactly as written; the status and the whole response text.
fn raw_get(base: &str, path: &str) -> (u16, String) {
    let addr = base.trim_start_matches("http://");
    let mut stream = TcpStream::connect(addr).expect("connect");
    stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(stream, "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").unwrap();
    let mut response = Vec::new();
    stream.read_to_end(&mut response).unwrap();
    let text = String::from_utf8_lossy(&response).into_owned();
    let status = text.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    (status, text)
}

#[test]
fn the_page_and_its_files_are_served_with_their_types() {
    let s = finished_study();
    let srv = serve(&s, &[]);
    let cases = [
        ("/", "text/html"),
        ("/static/index.html", "text/html"),
        ("/static/app.js", "text/javascript"),
        ("/static/plots.js", "text/javascript"),
        ("/static/style.css", "text/css"),
        ("/static/vendor/uPlot.iife.min.js", "text/javascript"),
        ("/static/vendor/uPlot.min.css", "text/css"),
        ("/static/vendor/uPlot.LICENSE", "text/plain"),
    ];
    for (path, kind) in cases {
        let resp = ureq::get(&format!("{}{path}", srv.base)).call().unwrap_or_else(|e| panic!("{path}: {e}"));
        assert_eq!(resp.status(), 200, "{path}");
        assert!(resp.content_type().starts_with(kind), "{path}: {}", resp.content_type());
        assert_eq!(resp.header("x-content-type-options"), Some("nosniff"));
        assert!(resp.header("content-security-policy").unwrap().contains("default-src 'self'"));
        assert!(resp.into_string().unwrap().len() > 100, "{path} has content");
    }
    let page = ureq::get(&format!("{}/", srv.base)).call().unwrap().into_string().unwrap();
    assert!(page.contains("<title>sweep</title>") && page.contains("static/app.js"));
    assert!(!page.contains("http://") && !page.contains("https://"), "the page loads nothing from outside");
}

#[test]
fn no_path_reaches_outside_the_embedded_files() {
    let s = finished_study();
    let srv = serve(&s, &[]);
    let attempts = [
        "/static/../Cargo.toml",
        "/static/..%2fCargo.toml",
        "/static/..%2FCargo.toml",
        "/static/%2e%2e/Cargo.toml",
        "/static/%2e%2e%2fCargo.toml",
        "/static/%252e%252e%252fCargo.toml",
        "/static/vendor/../../Cargo.toml",
        "/static/vendor/..%2f..%2fCargo.toml",
        "/static/..%5cCargo.toml",
        "/static/....//....//Cargo.toml",
        "/static//etc/passwd",
        "/static/%2fetc%2fpasswd",
        "/static/app.js%00.html",
        "/static/./app.js/../../Cargo.toml",
        "/static/",
        "/static",
        "/%2e%2e/Cargo.toml",
        "/../Cargo.toml",
        "/Cargo.toml",
        "/web/index.html",
        "/src/main.rs",
        "/sweep.db",
        "/static/sweep.db",
        "/static/../sweep.db",
    ];
    for path in attempts {
        let (status, text) = raw_get(&srv.base, path);
        assert!(status == 404 || status == 400, "{path}: {status}");
        assert!(!text.contains("[package]") && !text.contains("root:") && !text.contains("SQLite format"), "{path}");
    }
}

#[test]
fn bad_query_parameters_get_4xx_with_a_message_never_5xx() {
    let s = finished_study();
    let srv = serve(&s, &[]);
    let cases = [
        ("/api/studies/api/points?max=abc", "`max` must be a number"),
        ("/api/studies/api/points?max=5", "`max` must be 10 to 100000"),
        ("/api/studies/api/points?limit=5", "unknown query parameter `limit`"),
        ("/api/studies/api/history?format=xml", "`format` is points or columns"),
        ("/api/studies/api/curves?trials=0", "`trials` must be 1 to 500"),
        ("/api/studies/api/curves?points=-3", "`points` must be a number"),
        ("/api/studies/api/trials?offset=-1", "`offset` must be a number"),
        ("/api/studies/api/trials?limit=99999999999999999999", "`limit` must be a number"),
        ("/api/studies/api/trials?value_min=abc", "finite number"),
        ("/api/studies/api/trials?param.x0.min=1e999", "finite number"),
        ("/api/studies/api/trials?param.x0=1", "use param.NAME.min"),
        ("/api/studies/api/trials?sort=param:", "cannot sort by"),
        ("/api/studies/api/trials?order=sideways", "`order` is asc or desc"),
        ("/api/studies/api/trials?state=", "unknown state"),
        ("/api/studies/api/trials?%ff=1", "unknown query parameter"),
        ("/api/studies/api/events?after=abc", "`after` must be a number"),
        ("/api/studies/api/commands/abc", "is not a number"),
        ("/api/studies/api/commands/12345", "has no command 12345"),
        ("/api/studies/api/importance?x=1", "unknown query parameter `x`"),
    ];
    for (path, message) in cases {
        let (status, body) = get(&srv.base, path, None);
        assert!((400..500).contains(&status), "{path}: {status} {body}");
        assert!(body["error"].as_str().unwrap_or("").contains(message), "{path}: {body}");
    }
    // Whatever else arrives, the answer is never a server error.
    for path in [
        "/api/studies/%ff",
        "/api/studies/api/trials/%ff",
        "/api/studies/api/trials/-1",
        "/api/studies/api/trials/18446744073709551616",
        "/api/studies/api/trials?limit=1&&&&",
        "/api/studies/api/trials?=",
        "/api/studies/api/trials?fields=",
        "/api/studies/api/trials?sort=param:x0%00",
        "/api/studies/api/trials?param.x0%22.min=1",
        "/api/studies/api%00/trials",
        "/api/studies/api/points?max=1e3",
    ] {
        let (status, text) = raw_get(&srv.base, path);
        assert!((200..500).contains(&status), "{path}: {text}");
    }
}
