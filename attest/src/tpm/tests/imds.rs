//! The TD quote request against a loopback IMDS (a real socket, answers written by hand): the
//! request Azure expects, and every hostile answer refused with its own error.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::mpsc;
use std::thread;
use std::time::Duration;

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine as _;

use crate::tpm::{Imds, ImdsError, MAX_ANSWER, TD_QUOTE_PATH};

/// A request as the loopback IMDS saw it.
#[derive(Debug)]
pub(crate) struct Seen {
    /// Request line and headers, as sent.
    pub(crate) head: String,
    /// The body.
    pub(crate) body: Vec<u8>,
}

impl Seen {
    /// The value of header `name` (case-insensitive).
    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        self.head.lines().skip(1).find_map(|l| {
            let (n, v) = l.split_once(':')?;
            n.trim().eq_ignore_ascii_case(name).then(|| v.trim())
        })
    }
}

/// A loopback IMDS answering one request with `answer(request)` (raw HTTP bytes; `None`: never
/// answer, keep the connection open). Returns its address and what it saw.
pub(crate) fn serve_once(
    answer: impl FnOnce(&Seen) -> Option<Vec<u8>> + Send + 'static,
) -> (SocketAddr, mpsc::Receiver<Seen>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        let (mut conn, _) = listener.accept().unwrap();
        let seen = read_request(&mut conn);
        let reply = answer(&seen);
        let _ = tx.send(seen);
        match reply {
            Some(bytes) => {
                let _ = conn.write_all(&bytes);
            }
            None => thread::sleep(Duration::from_secs(5)),
        }
    });
    (addr, rx)
}

fn read_request(conn: &mut TcpStream) -> Seen {
    let mut buf = Vec::new();
    let mut byte = [0u8; 1];
    while !buf.ends_with(b"\r\n\r\n") {
        conn.read_exact(&mut byte).unwrap();
        buf.push(byte[0]);
    }
    let head = String::from_utf8(buf).unwrap();
    let mut seen = Seen {
        head,
        body: Vec::new(),
    };
    let len: usize = seen
        .header("content-length")
        .map(|v| v.parse().unwrap())
        .unwrap_or(0);
    seen.body = vec![0; len];
    conn.read_exact(&mut seen.body).unwrap();
    seen
}

/// An HTTP/1.1 answer with `status` and `body`.
pub(crate) fn http(status: u16, body: &[u8]) -> Vec<u8> {
    let mut out = format!(
        "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )
    .into_bytes();
    out.extend_from_slice(body);
    out
}

/// `{"quote": "<base64url>"}`.
pub(crate) fn quote_answer(quote: &[u8]) -> Vec<u8> {
    http(
        200,
        serde_json::json!({ "quote": URL_SAFE_NO_PAD.encode(quote) })
            .to_string()
            .as_bytes(),
    )
}

/// A TDREPORT with REPORTDATA `rd`, and a "quote" carrying the same REPORTDATA where a DCAP TD
/// quote has it (the guest checks no more; the verifier checks the rest).
pub(crate) fn report_and_quote(rd: u8) -> (Vec<u8>, Vec<u8>) {
    let mut report = vec![0x11; 1024];
    report[128..192].fill(rd);
    let mut quote = vec![0x22; 5006];
    quote[568..632].fill(rd);
    (report, quote)
}

fn imds(addr: SocketAddr) -> Imds {
    Imds {
        server: addr,
        timeout: Duration::from_millis(800),
    }
}

#[test]
fn the_td_quote_request_is_azures_and_the_quote_comes_back() {
    let (report, quote) = report_and_quote(0x5a);
    let answer = quote.clone();
    let (addr, seen) = serve_once(move |_| Some(quote_answer(&answer)));
    assert_eq!(imds(addr).td_quote(&report).unwrap(), quote);
    let seen = seen.recv().unwrap();
    assert!(
        seen.head
            .starts_with(&format!("POST {TD_QUOTE_PATH} HTTP/1.1\r\n")),
        "{}",
        seen.head
    );
    assert_eq!(seen.header("metadata"), Some("true"));
    assert_eq!(seen.header("content-type"), Some("application/json"));
    let body: serde_json::Value = serde_json::from_slice(&seen.body).unwrap();
    let sent = body["report"].as_str().unwrap();
    assert!(!sent.contains('='), "base64url without padding: {sent}");
    assert_eq!(URL_SAFE_NO_PAD.decode(sent).unwrap(), report);

    // Padded standard base64 is accepted too.
    let padded = http(
        200,
        serde_json::json!({ "quote": STANDARD.encode(&quote) })
            .to_string()
            .as_bytes(),
    );
    let (addr, _seen) = serve_once(move |_| Some(padded));
    assert_eq!(imds(addr).td_quote(&report).unwrap(), quote);
}

#[test]
fn hostile_imds_answers_are_refused_each_with_its_error() {
    let (report, quote) = report_and_quote(0x5a);
    let run = |answer: Option<Vec<u8>>| {
        let (addr, _seen) = serve_once(move |_| answer);
        imds(addr).td_quote(&report)
    };

    assert!(matches!(
        run(Some(http(500, b"{}"))),
        Err(ImdsError::Status { status: 500, .. })
    ));
    assert!(matches!(
        run(Some(http(415, b"Unknown media type"))),
        Err(ImdsError::Status { status: 415, .. })
    ));
    // Oversized, announced by Content-Length and not.
    let huge = format!("{{\"quote\":\"{}\"}}", "A".repeat(MAX_ANSWER + 1));
    assert_eq!(
        run(Some(http(200, huge.as_bytes()))),
        Err(ImdsError::TooLarge)
    );
    let mut unannounced = b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n".to_vec();
    unannounced.extend_from_slice(huge.as_bytes());
    assert_eq!(run(Some(unannounced)), Err(ImdsError::TooLarge));
    // Not base64url.
    assert!(matches!(
        run(Some(http(200, br#"{"quote":"not*base64!"}"#))),
        Err(ImdsError::BadBase64(_))
    ));
    // Wrong JSON: another field, not JSON, the quote not a string.
    for body in [
        &br#"{"tdquote":"AAAA"}"#[..],
        b"<html>quote</html>",
        br#"{"quote":12}"#,
    ] {
        assert!(
            matches!(run(Some(http(200, body))), Err(ImdsError::BadJson(_))),
            "{}",
            String::from_utf8_lossy(body)
        );
    }
    // A quote of another report, and one too short to be a TD quote.
    let (_, other) = report_and_quote(0x5b);
    assert!(matches!(
        run(Some(quote_answer(&other))),
        Err(ImdsError::NotThisReport(_))
    ));
    assert!(matches!(
        run(Some(quote_answer(&quote[..600]))),
        Err(ImdsError::NotThisReport(_))
    ));
    // No answer within the timeout.
    let started = std::time::Instant::now();
    assert!(matches!(run(None), Err(ImdsError::Timeout { .. })));
    assert!(started.elapsed() < Duration::from_secs(4));
    // Nobody listening.
    let closed = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    assert!(matches!(
        imds(closed).td_quote(&report),
        Err(ImdsError::Unreachable { .. })
    ));
    // Not a TDREPORT: nothing is sent.
    assert_eq!(
        imds(closed).td_quote(&report[..1000]),
        Err(ImdsError::BadTdReport(1000))
    );
}

#[test]
fn the_imds_address_comes_from_the_setting_else_azures() {
    assert_eq!(Imds::default().server, crate::tpm::IMDS);
    assert_eq!(
        crate::tpm::IMDS.to_string(),
        "169.254.169.254:80",
        "Azure's documented IMDS address"
    );
}
