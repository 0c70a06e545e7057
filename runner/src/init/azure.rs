//! Azure's "report ready": a VM that never tells the platform it came up is marked failed and
//! rebooted. Without Azure's agent (walinuxagent, cloud-init), the guest does the minimal
//! provisioning health report itself, as Azure documents for images without a provisioning agent
//! ("Creating generalized images without a provisioning agent"): once the network is up,
//!
//! 1. `GET /machine/?comp=goalstate` from the wire server (168.63.129.16) with
//!    `x-ms-version: 2012-11-30`, and from its XML the `Incarnation`, the `ContainerId` and the
//!    first role instance's `InstanceId`;
//! 2. `POST /machine/?comp=health` with the `Health` XML saying `Ready` for that instance.
//!
//! Init does this only when the DMI chassis asset tag is Azure's (`7783-7084-3265-9085`, the tag
//! Azure and cloud-init use to recognise it), in a thread of its own so that a slow or absent wire
//! server never delays the appliance: each exchange is retried with a backoff, and a failure is
//! logged, never fatal. Nothing happens on other clouds. `RUNNER_AZURE_WIRE_SERVER` (an
//! `address:port` on the kernel command line) points it elsewhere, for tests.
//!
//! The wire server is the platform's: in a confidential VM it is as untrusted as the host. Its
//! answer only decides what is sent back to it; identifiers with markup characters are refused
//! rather than echoed into the reply.

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::path::{Path, PathBuf};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::{Method, Request, StatusCode};
use hyper_util::rt::TokioIo;

/// The DMI chassis asset tag, below the file-system root.
pub const CHASSIS_ASSET_TAG: &str = "sys/class/dmi/id/chassis_asset_tag";
/// Azure's chassis asset tag.
pub const AZURE_ASSET_TAG: &str = "7783-7084-3265-9085";
/// The wire server, Azure's fixed platform address.
pub const WIRE_SERVER: SocketAddr =
    SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::new(168, 63, 129, 16), 80));
/// Overrides [`WIRE_SERVER`] (`address:port`).
pub const WIRE_SERVER_SETTING: &str = "RUNNER_AZURE_WIRE_SERVER";
/// The wire protocol version both requests name.
pub const MS_VERSION: &str = "2012-11-30";
/// The agent name Azure's example for agent-less images sends.
pub const AGENT_NAME: &str = "custom-provisioning";
const GOAL_STATE_PATH: &str = "/machine/?comp=goalstate";
const HEALTH_PATH: &str = "/machine/?comp=health";
/// A goal state is a few KiB; more is refused.
const MAX_RESPONSE: usize = 256 << 10;

#[derive(Debug, thiserror::Error)]
pub enum AzureError {
    #[error("cannot reach the wire server {server}: {source}")]
    Connect {
        server: SocketAddr,
        source: std::io::Error,
    },
    #[error("HTTP exchange with the wire server failed: {0}")]
    Http(#[from] hyper::Error),
    #[error("cannot build the request: {0}")]
    Request(#[from] hyper::http::Error),
    #[error("the wire server answered {status} to {what}")]
    Status {
        what: &'static str,
        status: StatusCode,
    },
    #[error(
        "the wire server's answer to {what} is longer than {MAX_RESPONSE} bytes or unreadable"
    )]
    Body { what: &'static str },
    #[error("no answer from the wire server within {0:?}")]
    Timeout(Duration),
    #[error("the goal state has no {0}")]
    Missing(&'static str),
    #[error("the goal state's {0} is not a plain identifier")]
    Malformed(&'static str),
    #[error("cannot start the runtime: {0}")]
    Runtime(std::io::Error),
}

/// Whether the machine seen under `root` is an Azure VM (by its DMI chassis asset tag).
pub fn is_azure(root: &Path) -> bool {
    std::fs::read_to_string(root.join(CHASSIS_ASSET_TAG))
        .is_ok_and(|tag| tag.trim() == AZURE_ASSET_TAG)
}

/// What the health report needs from the goal state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GoalState {
    pub incarnation: String,
    pub container_id: String,
    pub instance_id: String,
}

/// The text of the first `<tag>…</tag>` in `xml`, trimmed; refused unless it is a plain
/// identifier (printable ASCII without markup characters, at most 256 bytes).
fn element<'a>(xml: &'a str, tag: &'static str) -> Result<&'a str, AzureError> {
    let open = format!("<{tag}>");
    let close = format!("</{tag}>");
    let start = xml.find(&open).ok_or(AzureError::Missing(tag))? + open.len();
    let len = xml[start..].find(&close).ok_or(AzureError::Missing(tag))?;
    let text = xml[start..start + len].trim();
    let plain = !text.is_empty()
        && text.len() <= 256
        && text
            .chars()
            .all(|c| c.is_ascii_graphic() && !matches!(c, '<' | '>' | '&' | '"' | '\''));
    if plain {
        Ok(text)
    } else {
        Err(AzureError::Malformed(tag))
    }
}

/// Reads the goal state's incarnation, container and (first) role instance.
pub fn parse_goal_state(xml: &str) -> Result<GoalState, AzureError> {
    let container = xml
        .find("<Container>")
        .map(|at| &xml[at..])
        .ok_or(AzureError::Missing("Container"))?;
    let role_instance = container
        .find("<RoleInstance>")
        .map(|at| &container[at..])
        .ok_or(AzureError::Missing("RoleInstance"))?;
    Ok(GoalState {
        incarnation: element(xml, "Incarnation")?.to_owned(),
        container_id: element(container, "ContainerId")?.to_owned(),
        instance_id: element(role_instance, "InstanceId")?.to_owned(),
    })
}

/// The `Health` document that reports `Ready` for `goal`.
pub fn ready_xml(goal: &GoalState) -> String {
    format!(
        "<?xml version=\"1.0\" encoding=\"utf-8\"?>\n\
         <Health xmlns:xsi=\"http://www.w3.org/2001/XMLSchema-instance\" \
         xmlns:xsd=\"http://www.w3.org/2001/XMLSchema\">\
         <GoalStateIncarnation>{}</GoalStateIncarnation>\
         <Container><ContainerId>{}</ContainerId>\
         <RoleInstanceList><Role><InstanceId>{}</InstanceId>\
         <Health><State>Ready</State></Health></Role></RoleInstanceList>\
         </Container></Health>",
        goal.incarnation, goal.container_id, goal.instance_id
    )
}

/// How to reach the wire server, and how persistently.
#[derive(Debug, Clone)]
pub struct ReportReady {
    pub server: SocketAddr,
    /// Per exchange (connect, request, whole answer).
    pub timeout: Duration,
    /// Tries per exchange.
    pub attempts: u32,
    /// The wait after the first failure; doubled after each, up to `max_delay`.
    pub first_delay: Duration,
    pub max_delay: Duration,
}

impl ReportReady {
    /// Azure's wire server (or `RUNNER_AZURE_WIRE_SERVER`), 10 s per exchange, 8 tries 1 s to
    /// 30 s apart: a little over two minutes in all.
    pub fn from_env() -> Self {
        let server = wire_server(std::env::var(WIRE_SERVER_SETTING).ok().as_deref());
        ReportReady {
            server,
            timeout: Duration::from_secs(10),
            attempts: 8,
            first_delay: Duration::from_secs(1),
            max_delay: Duration::from_secs(30),
        }
    }

    /// Fetches the goal state and reports ready, each step retried; the goal state reported.
    pub async fn run(&self) -> Result<GoalState, AzureError> {
        let goal = self
            .retried("goal state", || async {
                let body = self
                    .exchange(Method::GET, GOAL_STATE_PATH, None, "the goal state")
                    .await?;
                parse_goal_state(&String::from_utf8_lossy(&body))
            })
            .await?;
        tracing::info!(
            incarnation = %goal.incarnation,
            container_id = %goal.container_id,
            instance_id = %goal.instance_id,
            "init: Azure goal state"
        );
        let health = ready_xml(&goal);
        self.retried("health report", || {
            self.exchange(
                Method::POST,
                HEALTH_PATH,
                Some(health.clone()),
                "the health report",
            )
        })
        .await?;
        Ok(goal)
    }

    async fn retried<T, F, Fut>(&self, what: &str, mut step: F) -> Result<T, AzureError>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<T, AzureError>>,
    {
        let mut delay = self.first_delay;
        let mut attempt = 1;
        loop {
            match step().await {
                Ok(value) => return Ok(value),
                Err(e) if attempt < self.attempts => {
                    tracing::warn!(
                        attempt,
                        retry_in_ms = delay.as_millis() as u64,
                        "init: Azure {what}: {e}"
                    );
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(self.max_delay);
                    attempt += 1;
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// One request on a fresh connection; the answer's body on a 2xx.
    async fn exchange(
        &self,
        method: Method,
        path: &str,
        body: Option<String>,
        what: &'static str,
    ) -> Result<Bytes, AzureError> {
        tokio::time::timeout(self.timeout, self.exchange_once(method, path, body, what))
            .await
            .map_err(|_| AzureError::Timeout(self.timeout))?
    }

    async fn exchange_once(
        &self,
        method: Method,
        path: &str,
        body: Option<String>,
        what: &'static str,
    ) -> Result<Bytes, AzureError> {
        let stream = tokio::net::TcpStream::connect(self.server)
            .await
            .map_err(|source| AzureError::Connect {
                server: self.server,
                source,
            })?;
        let (mut sender, connection) =
            hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
        let connection = tokio::spawn(connection);
        let mut request = Request::builder()
            .method(method)
            .uri(path)
            .header(hyper::header::HOST, self.server.ip().to_string())
            .header("x-ms-version", MS_VERSION)
            .header("x-ms-agent-name", AGENT_NAME);
        if body.is_some() {
            request = request.header(hyper::header::CONTENT_TYPE, "text/xml;charset=utf-8");
        }
        let request = request.body(Full::new(Bytes::from(body.unwrap_or_default())))?;
        let response = sender.send_request(request).await?;
        let status = response.status();
        let body = Limited::new(response.into_body(), MAX_RESPONSE)
            .collect()
            .await
            .map_err(|_| AzureError::Body { what })?
            .to_bytes();
        connection.abort();
        if !status.is_success() {
            return Err(AzureError::Status { what, status });
        }
        Ok(body)
    }
}

/// The wire server `setting` names (`address:port`), else Azure's.
pub fn wire_server(setting: Option<&str>) -> SocketAddr {
    match setting.map(str::parse) {
        None => WIRE_SERVER,
        Some(Ok(server)) => server,
        Some(Err(e)) => {
            tracing::warn!(
                "init: {WIRE_SERVER_SETTING}={:?} is not address:port ({e}): using {WIRE_SERVER}",
                setting.unwrap_or_default()
            );
            WIRE_SERVER
        }
    }
}

/// What [`report_ready_if_azure`] did.
#[derive(Debug, PartialEq, Eq)]
pub enum Outcome {
    NotAzure,
    Reported(GoalState),
    Failed(String),
}

/// On Azure (seen under `root`), reports ready through `report`; logs the outcome. Blocking.
pub fn report_ready_if_azure(root: &Path, report: &ReportReady) -> Outcome {
    if !is_azure(root) {
        tracing::debug!("init: not on Azure (DMI chassis asset tag): no health report");
        return Outcome::NotAzure;
    }
    tracing::info!(wire_server = %report.server, "init: on Azure: reporting ready");
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => return failed(AzureError::Runtime(e)),
    };
    match runtime.block_on(report.run()) {
        Ok(goal) => {
            tracing::info!(
                incarnation = %goal.incarnation,
                "init: reported ready to Azure's wire server"
            );
            Outcome::Reported(goal)
        }
        Err(e) => failed(e),
    }
}

fn failed(e: AzureError) -> Outcome {
    tracing::error!(
        "init: could NOT report ready to Azure ({e}): the platform will mark this VM failed"
    );
    Outcome::Failed(e.to_string())
}

/// [`report_ready_if_azure`] for this machine, in a thread of its own: init goes on at once.
pub fn spawn_report_ready() {
    let root = PathBuf::from("/");
    if !is_azure(&root) {
        tracing::debug!("init: not on Azure (DMI chassis asset tag): no health report");
        return;
    }
    let spawned = std::thread::Builder::new()
        .name("azure-ready".into())
        .spawn(move || {
            report_ready_if_azure(&root, &ReportReady::from_env());
        });
    if let Err(e) = spawned {
        tracing::error!("init: cannot start the Azure health report: {e}");
    }
}

#[cfg(test)]
mod tests;
