//! TEMPORARY compile stub, replaced by upstream/ when it lands.
use std::path::Path;
use std::sync::Arc;

#[derive(Debug, Clone, PartialEq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpstreamConfig {
    pub name: String,
    pub servers: Vec<String>,
}

#[derive(Debug)]
pub struct Pool {
    name: String,
    server: String,
    client: hyper_util::client::legacy::Client<
        hyper_util::client::legacy::connect::HttpConnector,
        hyper::body::Incoming,
    >,
}

#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    #[error("{0}")]
    Config(String),
    #[error("connect to {server} failed: {message}")]
    Connect { server: String, message: String },
}

impl UpstreamError {
    pub fn status(&self) -> http::StatusCode {
        http::StatusCode::BAD_GATEWAY
    }
}

impl Pool {
    pub fn new(config: &UpstreamConfig, _base_dir: &Path) -> Result<Pool, UpstreamError> {
        let server = config
            .servers
            .first()
            .cloned()
            .ok_or_else(|| UpstreamError::Config("no servers".into()))?;
        let client =
            hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
                .build(hyper_util::client::legacy::connect::HttpConnector::new());
        Ok(Pool {
            name: config.name.clone(),
            server,
            client,
        })
    }
    pub fn name(&self) -> &str {
        &self.name
    }
    pub fn spawn_health_checks(self: &Arc<Self>) {}
    pub async fn forward(
        &self,
        mut req: http::Request<hyper::body::Incoming>,
    ) -> Result<(http::Response<hyper::body::Incoming>, String), UpstreamError> {
        let pq = req
            .uri()
            .path_and_query()
            .map(|p| p.as_str().to_owned())
            .unwrap_or_else(|| "/".into());
        *req.uri_mut() = format!("{}{}", self.server, pq)
            .parse()
            .map_err(|_| UpstreamError::Config("uri".into()))?;
        let resp = self
            .client
            .request(req)
            .await
            .map_err(|e| UpstreamError::Connect {
                server: self.server.clone(),
                message: e.to_string(),
            })?;
        Ok((resp, self.server.clone()))
    }
    pub fn healthy(&self) -> usize {
        1
    }
    pub fn servers(&self) -> usize {
        1
    }
}
