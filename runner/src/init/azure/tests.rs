//! The health report against a real loopback HTTP server standing in for the wire server.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::body::Bytes as AxumBytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method as AxumMethod, StatusCode as AxumStatus, Uri};

use super::*;

/// A goal state shaped like the wire server's (fields the report does not use included).
const GOAL_STATE: &str = r#"<?xml version="1.0" encoding="utf-8"?>
<GoalState xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" xsi:noNamespaceSchemaLocation="goalstate10.xsd">
  <Version>2012-11-30</Version>
  <Incarnation>7</Incarnation>
  <Machine>
    <ExpectedState>Started</ExpectedState>
    <StopRolesDeadlineHint>300000</StopRolesDeadlineHint>
    <LBProbePorts><Port>16001</Port></LBProbePorts>
    <ExpectHealthReport>FALSE</ExpectHealthReport>
  </Machine>
  <Container>
    <ContainerId>7b324f53-983a-43bc-b919-1775d6077608</ContainerId>
    <RoleInstanceList>
      <RoleInstance>
        <InstanceId>fbb84507-46cd-4f4e-bd78-a2edaa9d059b._appliance</InstanceId>
        <State>Started</State>
        <Configuration>
          <HostingEnvironmentConfig>http://168.63.129.16:80/machine/x?comp=config</HostingEnvironmentConfig>
        </Configuration>
      </RoleInstance>
    </RoleInstanceList>
  </Container>
</GoalState>
"#;

fn expected_goal() -> GoalState {
    GoalState {
        incarnation: "7".into(),
        container_id: "7b324f53-983a-43bc-b919-1775d6077608".into(),
        instance_id: "fbb84507-46cd-4f4e-bd78-a2edaa9d059b._appliance".into(),
    }
}

#[test]
fn the_goal_state_gives_incarnation_container_and_instance() {
    assert_eq!(parse_goal_state(GOAL_STATE).unwrap(), expected_goal());
}

#[test]
fn a_goal_state_without_a_field_is_refused_naming_it() {
    for (field, broken) in [
        (
            "Incarnation",
            GOAL_STATE.replace("<Incarnation>7</Incarnation>", ""),
        ),
        ("ContainerId", GOAL_STATE.replace("ContainerId>", "Other>")),
        ("RoleInstance", GOAL_STATE.replace("RoleInstance>", "Role>")),
        ("InstanceId", GOAL_STATE.replace("</InstanceId>", "")),
    ] {
        let err = parse_goal_state(&broken).unwrap_err();
        assert!(
            matches!(err, AzureError::Missing(f) if f == field),
            "{field}: {err}"
        );
    }
}

#[test]
fn markup_in_an_identifier_is_refused_not_echoed_into_the_report() {
    // A hostile wire server trying to shape the XML the guest sends back.
    for hostile in [
        "a<Evil>x</Evil>b",
        "a]]><Health><State>Ready",
        "a&amp;b",
        "a\"b",
        "a b",
        "",
        &"x".repeat(257),
    ] {
        let xml = GOAL_STATE.replace("7b324f53-983a-43bc-b919-1775d6077608", hostile);
        match parse_goal_state(&xml) {
            Err(AzureError::Malformed("ContainerId")) => {}
            other => panic!("{hostile:?}: {other:?}"),
        }
    }
}

#[test]
fn the_ready_document_is_azures_health_report() {
    let xml = ready_xml(&expected_goal());
    let compact: String = xml.split_whitespace().collect::<Vec<_>>().join(" ");
    assert!(
        compact.starts_with("<?xml version=\"1.0\" encoding=\"utf-8\"?>"),
        "{xml}"
    );
    assert!(
        xml.contains(
            "<GoalStateIncarnation>7</GoalStateIncarnation><Container>\
             <ContainerId>7b324f53-983a-43bc-b919-1775d6077608</ContainerId><RoleInstanceList>\
             <Role><InstanceId>fbb84507-46cd-4f4e-bd78-a2edaa9d059b._appliance</InstanceId>\
             <Health><State>Ready</State></Health></Role></RoleInstanceList></Container></Health>"
        ),
        "{xml}"
    );
}

#[test]
fn only_azures_asset_tag_is_azure() {
    let root = tempfile::tempdir().unwrap();
    assert!(!is_azure(root.path()), "no DMI");
    let tag = root.path().join(CHASSIS_ASSET_TAG);
    std::fs::create_dir_all(tag.parent().unwrap()).unwrap();
    for (content, azure) in [
        ("7783-7084-3265-9085\n", true),
        ("7783-7084-3265-9085", true),
        ("Google\n", false),
        ("Amazon EC2\n", false),
        ("7783-7084-3265-9086\n", false),
        ("\n", false),
    ] {
        std::fs::write(&tag, content).unwrap();
        assert_eq!(is_azure(root.path()), azure, "{content:?}");
    }
}

/// One request as the fake wire server saw it.
#[derive(Debug, Clone)]
struct Seen {
    method: String,
    uri: String,
    headers: HashMap<String, String>,
    body: String,
}

#[derive(Default)]
struct Wire {
    seen: Mutex<Vec<Seen>>,
    /// Per `comp=` value: how many requests still get a 503.
    failures: Mutex<HashMap<String, u32>>,
    /// Never answer (a wire server that hangs).
    hang: bool,
}

async fn fake_wire_server(
    State(wire): State<Arc<Wire>>,
    method: AxumMethod,
    uri: Uri,
    headers: HeaderMap,
    body: AxumBytes,
) -> (AxumStatus, String) {
    let comp = uri.query().unwrap_or_default().replace("comp=", "");
    wire.seen.lock().unwrap().push(Seen {
        method: method.to_string(),
        uri: uri.to_string(),
        headers: headers
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_str().unwrap_or("?").to_owned()))
            .collect(),
        body: String::from_utf8_lossy(&body).into_owned(),
    });
    if wire.hang {
        std::future::pending::<()>().await;
    }
    if let Some(left) = wire.failures.lock().unwrap().get_mut(&comp) {
        if *left > 0 {
            *left -= 1;
            return (AxumStatus::SERVICE_UNAVAILABLE, "busy".into());
        }
    }
    match (method.as_str(), comp.as_str()) {
        ("GET", "goalstate") => (AxumStatus::OK, GOAL_STATE.into()),
        ("POST", "health") => (AxumStatus::OK, String::new()),
        _ => (AxumStatus::BAD_REQUEST, "unknown".into()),
    }
}

/// Serves `wire` on a loopback port in a thread of its own; its address.
fn serve(wire: Arc<Wire>) -> SocketAddr {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let address = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async move {
            let listener = tokio::net::TcpListener::from_std(listener).unwrap();
            let app = axum::Router::new()
                .fallback(fake_wire_server)
                .with_state(wire);
            axum::serve(listener, app).await.unwrap();
        });
    });
    address
}

fn azure_root() -> tempfile::TempDir {
    let root = tempfile::tempdir().unwrap();
    let tag = root.path().join(CHASSIS_ASSET_TAG);
    std::fs::create_dir_all(tag.parent().unwrap()).unwrap();
    std::fs::write(tag, "7783-7084-3265-9085\n").unwrap();
    root
}

fn quick(server: SocketAddr) -> ReportReady {
    ReportReady {
        server,
        timeout: Duration::from_secs(5),
        attempts: 3,
        first_delay: Duration::from_millis(10),
        max_delay: Duration::from_millis(40),
    }
}

#[test]
fn on_azure_init_fetches_the_goal_state_then_reports_ready() {
    let wire = Arc::new(Wire::default());
    let server = serve(wire.clone());
    let root = azure_root();
    let outcome = report_ready_if_azure(root.path(), &quick(server));
    assert_eq!(outcome, Outcome::Reported(expected_goal()));

    let seen = wire.seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 2, "{seen:#?}");
    let (get, post) = (&seen[0], &seen[1]);
    assert_eq!(
        (get.method.as_str(), get.uri.as_str()),
        ("GET", "/machine/?comp=goalstate")
    );
    assert_eq!(
        (post.method.as_str(), post.uri.as_str()),
        ("POST", "/machine/?comp=health")
    );
    for request in [get, post] {
        assert_eq!(request.headers["x-ms-version"], "2012-11-30");
        assert_eq!(request.headers["x-ms-agent-name"], AGENT_NAME);
        assert_eq!(request.headers["host"], "127.0.0.1");
    }
    assert!(get.body.is_empty());
    assert_eq!(post.headers["content-type"], "text/xml;charset=utf-8");
    assert_eq!(post.body, ready_xml(&expected_goal()));
    assert!(post.body.contains("<State>Ready</State>"));
}

#[test]
fn a_busy_wire_server_is_retried() {
    let wire = Arc::new(Wire::default());
    wire.failures
        .lock()
        .unwrap()
        .extend([("goalstate".to_owned(), 2), ("health".to_owned(), 1)]);
    let server = serve(wire.clone());
    let root = azure_root();
    let outcome = report_ready_if_azure(root.path(), &quick(server));
    assert_eq!(outcome, Outcome::Reported(expected_goal()));
    let methods: Vec<_> = wire
        .seen
        .lock()
        .unwrap()
        .iter()
        .map(|s| s.method.clone())
        .collect();
    assert_eq!(methods, ["GET", "GET", "GET", "POST", "POST"]);
}

#[test]
fn a_wire_server_that_keeps_failing_is_given_up_on_without_crashing() {
    let wire = Arc::new(Wire::default());
    wire.failures
        .lock()
        .unwrap()
        .insert("goalstate".to_owned(), u32::MAX);
    let server = serve(wire.clone());
    let root = azure_root();
    let outcome = report_ready_if_azure(root.path(), &quick(server));
    let Outcome::Failed(reason) = outcome else {
        panic!("{outcome:?}")
    };
    assert!(reason.contains("503"), "{reason}");
    assert_eq!(wire.seen.lock().unwrap().len(), 3, "attempts");
}

#[test]
fn a_wire_server_that_never_answers_times_out() {
    let wire = Arc::new(Wire {
        hang: true,
        ..Wire::default()
    });
    let server = serve(wire.clone());
    let root = azure_root();
    let report = ReportReady {
        timeout: Duration::from_millis(200),
        attempts: 2,
        ..quick(server)
    };
    let started = std::time::Instant::now();
    let outcome = report_ready_if_azure(root.path(), &report);
    assert!(
        matches!(&outcome, Outcome::Failed(reason) if reason.contains("within")),
        "{outcome:?}"
    );
    assert!(started.elapsed() < Duration::from_secs(3));
    assert_eq!(wire.seen.lock().unwrap().len(), 2);
}

#[test]
fn an_unreachable_wire_server_fails_cleanly() {
    // A port nothing listens on.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let server = closed.local_addr().unwrap();
    drop(closed);
    let root = azure_root();
    let outcome = report_ready_if_azure(root.path(), &quick(server));
    assert!(
        matches!(&outcome, Outcome::Failed(reason) if reason.contains("cannot reach")),
        "{outcome:?}"
    );
}

#[test]
fn elsewhere_nothing_is_sent() {
    let wire = Arc::new(Wire::default());
    let server = serve(wire.clone());
    let root = tempfile::tempdir().unwrap();
    assert_eq!(
        report_ready_if_azure(root.path(), &quick(server)),
        Outcome::NotAzure
    );
    let tag = root.path().join(CHASSIS_ASSET_TAG);
    std::fs::create_dir_all(tag.parent().unwrap()).unwrap();
    std::fs::write(tag, "Google\n").unwrap();
    assert_eq!(
        report_ready_if_azure(root.path(), &quick(server)),
        Outcome::NotAzure
    );
    assert!(wire.seen.lock().unwrap().is_empty());
}

#[test]
fn the_wire_server_is_azures_unless_a_valid_setting_moves_it() {
    assert_eq!(wire_server(None).to_string(), "168.63.129.16:80");
    assert_eq!(
        wire_server(Some("127.0.0.1:8099")),
        "127.0.0.1:8099".parse::<SocketAddr>().unwrap()
    );
    for invalid in ["", "127.0.0.1", "wireserver:80", "168.63.129.16:x"] {
        assert_eq!(wire_server(Some(invalid)), WIRE_SERVER, "{invalid:?}");
    }
}
