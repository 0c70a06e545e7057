//! Connection limits on both listeners: clients that connect and then send nothing, half a
//! request head or half a TLS handshake are cut off by the head and handshake timeouts, are
//! held to the connection cap (the rest wait in the listen backlog), and meanwhile a worker
//! keeps answering new connections; none of them holds up a graceful shutdown.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use e2e::{json, tag, Runner};
use std::io::Write;

use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;
use tokio::time::Instant;

const IDLE_PLAIN: usize = 1_200;
const IDLE_TLS: usize = 100;
const CAP: usize = 1_000;
/// Longer than opening all the idle connections takes, so that new requests meet a full cap.
const HEAD_TIMEOUT: Duration = Duration::from_secs(5);
/// A request head cut short: no blank line ends it.
const HALF_HEAD: &[u8] = b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ";
/// A TLS record header announcing a 512-byte ClientHello that never comes.
const HALF_CLIENT_HELLO: &[u8] = &[0x16, 0x03, 0x01, 0x02, 0x00, 0x01];

/// Raises this process's soft open-files limit to the hard one (the idle clients need a
/// descriptor each); returns it.
fn raise_open_files() -> u64 {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit on a struct we own.
    unsafe {
        assert_eq!(libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit), 0);
        limit.rlim_cur = limit.rlim_max;
        assert_eq!(libc::setrlimit(libc::RLIMIT_NOFILE, &limit), 0);
    }
    limit.rlim_cur
}

/// Opens `count` connections to `addr`, writing `first` on every other one (nothing on the rest).
/// Blocking sockets on a blocking thread: loopback connects complete in the kernel at once.
async fn open_idle(addr: &str, count: usize, first: &'static [u8]) -> Vec<TcpStream> {
    let addr = addr.to_owned();
    let streams = tokio::task::spawn_blocking(move || {
        (0..count)
            .map(|n| {
                let mut stream = std::net::TcpStream::connect(&addr)
                    .unwrap_or_else(|e| panic!("idle connection {n} to {addr}: {e}"));
                if n % 2 == 1 {
                    stream.write_all(first).expect("write the first bytes");
                }
                stream.set_nonblocking(true).expect("a non-blocking socket");
                stream
            })
            .collect::<Vec<_>>()
    })
    .await
    .expect("open the idle connections");
    streams
        .into_iter()
        .map(|stream| TcpStream::from_std(stream).expect("a tokio socket"))
        .collect()
}

/// Waits until the runner has closed `stream` (EOF or reset), up to `deadline`; false if not.
async fn closed_by_runner(mut stream: TcpStream, deadline: Instant) -> bool {
    let mut buf = [0u8; 1024];
    loop {
        match tokio::time::timeout_at(deadline, stream.read(&mut buf)).await {
            Err(_) => return false,
            Ok(Ok(0)) | Ok(Err(_)) => return true,
            // A 408 or other answer before the close: keep reading.
            Ok(Ok(_)) => {}
        }
    }
}

/// A client that opens a new connection for every request.
fn fresh_connections() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .pool_max_idle_per_host(0)
        .timeout(Duration::from_secs(30))
        .build()
        .expect("an HTTP client")
}

async fn ping(client: &reqwest::Client, url: &str) -> String {
    let response = client
        .get(url)
        .send()
        .await
        .expect("a request to the worker");
    assert_eq!(response.status(), 200);
    response.text().await.expect("the worker's answer")
}

async fn pong_worker(runner: &Runner, marker: &str) -> String {
    let script = format!(
        "export default {{ fetch() {{ return new Response({}); }} }}",
        e2e::js::lit(marker)
    );
    runner.create(&json!({ "script": script })).await
}

#[tokio::test(flavor = "multi_thread")]
async fn idle_connections_are_capped_and_cut_off_while_a_worker_keeps_answering() {
    let open_files = raise_open_files();
    assert!(
        open_files >= 2 * (IDLE_PLAIN + IDLE_TLS) as u64,
        "this test needs an open-files hard limit of at least {}; it is {open_files}",
        2 * (IDLE_PLAIN + IDLE_TLS)
    );
    let cap = CAP.to_string();
    let timeout = HEAD_TIMEOUT.as_millis().to_string();
    let runner = Runner::start(&[
        "--max-connections",
        &cap,
        "--header-timeout-ms",
        &timeout,
        "--handshake-timeout-ms",
        &timeout,
    ])
    .await;
    let marker = tag("pong");
    let id = pong_worker(&runner, &marker).await;
    let url = runner.url(&format!("/w/{id}/ping"));
    let client = fresh_connections();
    assert_eq!(ping(&client, &url).await, marker);
    let baseline = runner.open_fds();

    // The runner's descriptors, sampled every 20 ms from here on.
    let peak = Arc::new(AtomicUsize::new(baseline));
    let sampler = tokio::spawn({
        let (peak, pid) = (peak.clone(), runner.pid());
        async move {
            loop {
                let open = std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, |d| d.count());
                peak.fetch_max(open, Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    });

    let started = Instant::now();
    let plain_addr = runner.url("").trim_start_matches("http://").to_owned();
    let tls_addr = runner.tls_addr().expect("the HTTPS listener").to_owned();
    let mut idle = open_idle(&plain_addr, IDLE_PLAIN, HALF_HEAD).await;
    idle.extend(open_idle(&tls_addr, IDLE_TLS, HALF_CLIENT_HELLO).await);
    let opened_in = started.elapsed();
    // When the runner closes each (EOF or reset), since `started`; `None`: not by `deadline`.
    let deadline = started + HEAD_TIMEOUT * 3 + Duration::from_secs(10);
    let closings: Vec<_> = idle
        .into_iter()
        .map(|stream| {
            tokio::spawn(async move {
                closed_by_runner(stream, deadline)
                    .await
                    .then(|| started.elapsed())
            })
        })
        .collect();

    // While they are open, new connections to the worker keep being answered: at worst after
    // the idle ones ahead of them in the backlog time out.
    let mut latencies = Vec::new();
    while started.elapsed() < HEAD_TIMEOUT * 3 {
        let sent = Instant::now();
        assert_eq!(ping(&client, &url).await, marker);
        latencies.push(sent.elapsed());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // Every idle connection was closed by the runner (none ever sent a whole request): the
    // first CAP after the head timeout, the rest (from the backlog) one timeout later.
    let mut closed_at = Vec::new();
    for closing in closings {
        closed_at.extend(closing.await.expect("a closing watch"));
    }
    let still_open = IDLE_PLAIN + IDLE_TLS - closed_at.len();
    let first_closed = closed_at.iter().min().copied().unwrap_or_default();
    let last_closed = closed_at.iter().max().copied().unwrap_or_default();
    sampler.abort();
    let peak_fds = peak.load(Ordering::Relaxed);
    let after = runner.open_fds();
    let worst = latencies.iter().max().copied().unwrap_or_default();
    eprintln!(
        "{} idle connections opened in {opened_in:?}; runner fds: {baseline} before, peak {peak_fds}, \
         {after} after; {} requests answered meanwhile, slowest {worst:?}; idle ones closed from \
         {first_closed:?} to {last_closed:?}",
        IDLE_PLAIN + IDLE_TLS,
        latencies.len()
    );
    assert_eq!(still_open, 0, "idle connections the runner never closed");
    assert!(
        first_closed >= HEAD_TIMEOUT - Duration::from_millis(100),
        "an idle connection was closed before the head timeout, at {first_closed:?}"
    );
    assert!(
        last_closed < HEAD_TIMEOUT * 2 + Duration::from_secs(3),
        "the last idle connection was closed only at {last_closed:?}"
    );
    // The cap binds: the runner held at most CAP connections (plus the client's own).
    assert!(
        peak_fds <= baseline + CAP + 10,
        "the runner's descriptors grew past the cap: {baseline} → {peak_fds}"
    );
    assert!(
        peak_fds >= baseline + CAP / 2,
        "the idle connections never reached the runner ({baseline} → {peak_fds})"
    );
    assert!(
        worst < HEAD_TIMEOUT * 2 + Duration::from_secs(3),
        "a request waited {worst:?} behind idle connections"
    );
    assert!(
        after <= baseline + 5,
        "descriptors left open: {baseline} → {after}"
    );
    let logs = runner.logs();
    assert!(
        logs.contains("connection cap reached"),
        "the cap was not logged"
    );
    // And the worker answers promptly once they are gone.
    let sent = Instant::now();
    assert_eq!(ping(&client, &url).await, marker);
    assert!(sent.elapsed() < Duration::from_secs(2));
}

#[tokio::test(flavor = "multi_thread")]
async fn idle_and_half_open_connections_do_not_hold_up_a_graceful_shutdown() {
    raise_open_files();
    // Timeouts far longer than the shutdown may take.
    let mut runner = Runner::start(&[
        "--header-timeout-ms",
        "120000",
        "--handshake-timeout-ms",
        "120000",
    ])
    .await;
    let plain_addr = runner.url("").trim_start_matches("http://").to_owned();
    let tls_addr = runner.tls_addr().expect("the HTTPS listener").to_owned();
    let mut idle = open_idle(&plain_addr, 40, HALF_HEAD).await;
    idle.extend(open_idle(&tls_addr, 20, HALF_CLIENT_HELLO).await);
    // Let the runner accept them all.
    tokio::time::sleep(Duration::from_millis(500)).await;

    let asked = Instant::now();
    let status = runner.terminate(Duration::from_secs(15)).await;
    let status = status.unwrap_or_else(|| {
        panic!(
            "the runner was still running 15 s after SIGTERM\n{}",
            runner.logs()
        )
    });
    eprintln!(
        "runner exited {:?} after SIGTERM ({status})",
        asked.elapsed()
    );
    assert!(status.success(), "exit status {status}\n{}", runner.logs());
    let deadline = Instant::now() + Duration::from_secs(5);
    for stream in idle {
        assert!(closed_by_runner(stream, deadline).await);
    }
}
