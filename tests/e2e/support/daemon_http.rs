//! Reading qsess-syncd's HTTP endpoints (`/healthz`, `/metrics`) the way an operator's scraper does:
//! a plain HTTP/1.1 GET on a fresh connection, and one Prometheus series picked out of the body.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

/// `GET <path>` over HTTP/1.1 on `127.0.0.1:<port>`: the status code and the body. An error is text, so
/// that a caller polling with `eventually` can show it.
pub(crate) fn http_get(port: u16, path: &str) -> Result<(u16, String), String> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).map_err(|e| e.to_string())?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).map_err(|e| e.to_string())?;
    write!(stream, "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n").map_err(|e| e.to_string())?;
    let mut response = String::new();
    stream.read_to_string(&mut response).map_err(|e| e.to_string())?;
    let (head, body) = response.split_once("\r\n\r\n").ok_or_else(|| format!("no header end in {response:?}"))?;
    let status =
        head.split(' ').nth(1).and_then(|code| code.parse().ok()).ok_or_else(|| format!("bad status in {head:?}"))?;
    Ok((status, body.to_owned()))
}

/// The value of the metric line starting with `series` (the name and any labels, then a space), if
/// the body serves it.
pub(crate) fn metric_value(body: &str, series: &str) -> Option<f64> {
    body.lines().find_map(|line| line.strip_prefix(series)).and_then(|value| value.trim().parse().ok())
}
