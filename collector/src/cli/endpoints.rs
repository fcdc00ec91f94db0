//! The collector's API as typed calls: one method per endpoint the CLI uses, taking the
//! request's parts and returning the API's own response types, so command code never
//! formats a URL path (every component is encoded here, by [`encode`]).

use serde::de::DeserializeOwned;

use crate::alerting::api::{IncidentResponse, IncidentsResponse, SilencesResponse};
use crate::alerting::silence::{NewSilence, Silence};
use crate::api::{HistoryResponse, ProbesResponse, StatusResponse, VersionsResponse};
use crate::backup::BackupRequest;
use crate::probes::ProbeView;
use crate::store::BackupReport;
use crate::watch::api::{LastGoodResponse, LedgerResponse};
use crate::watch::deploy::{Deploy, NewDeploy};

use super::client::{ApiClient, ClientError, encode, with_query};

/// `GET /api/v1/services/{service}/history`: which results.
#[derive(Debug, Clone, Default)]
pub struct HistoryFilter<'a> {
    pub service: &'a str,
    /// How far back (`2h`) or an RFC 3339 time.
    pub since: &'a str,
    pub check: Option<&'a str>,
    pub probe: Option<&'a str>,
    /// Bucket size; raw results when absent.
    pub step: Option<&'a str>,
}

/// `GET /api/v1/incidents`: which incidents.
#[derive(Debug, Clone, Default)]
pub struct IncidentFilter<'a> {
    /// `open`, `resolved` or `all`.
    pub state: &'a str,
    pub limit: usize,
    pub service: Option<&'a str>,
}

/// `GET /api/v1/services/{service}/deploys`: which deploys, newest first.
#[derive(Debug, Clone, Default)]
pub struct LedgerFilter<'a> {
    pub service: &'a str,
    pub version: Option<&'a str>,
    pub env: Option<&'a str>,
    pub limit: usize,
}

impl ApiClient {
    /// Every service's status, or one service's.
    pub async fn status(&self, service: Option<&str>) -> Result<StatusResponse, ClientError> {
        self.get(&with_query("/api/v1/status", &[("service", service)]))
            .await
    }

    /// One service's results over time.
    pub async fn history(
        &self,
        filter: &HistoryFilter<'_>,
    ) -> Result<HistoryResponse, ClientError> {
        let path = format!("/api/v1/services/{}/history", encode(filter.service));
        let params = [
            ("from", Some(filter.since)),
            ("check", filter.check),
            ("probe", filter.probe),
            ("step", filter.step),
        ];
        self.get(&with_query(&path, &params)).await
    }

    /// One service's version timeline.
    pub async fn versions(&self, service: &str) -> Result<VersionsResponse, ClientError> {
        self.get(&format!("/api/v1/services/{}/versions", encode(service)))
            .await
    }

    /// Every known probe.
    pub async fn probes(&self) -> Result<ProbesResponse, ClientError> {
        self.get("/api/v1/probes").await
    }

    /// Retire a probe.
    pub async fn retire_probe(&self, name: &str) -> Result<ProbeView, ClientError> {
        self.post_empty(&format!("/api/v1/probes/{}/retire", encode(name)))
            .await
    }

    /// Open and recent incidents.
    pub async fn incidents(
        &self,
        filter: &IncidentFilter<'_>,
    ) -> Result<IncidentsResponse, ClientError> {
        let limit = filter.limit.to_string();
        let params = [
            ("state", Some(filter.state)),
            ("limit", Some(limit.as_str())),
            ("service", filter.service),
        ];
        self.get(&with_query("/api/v1/incidents", &params)).await
    }

    /// One incident with its notifications.
    pub async fn incident(&self, id: u64) -> Result<IncidentResponse, ClientError> {
        self.get(&format!("/api/v1/incidents/{id}")).await
    }

    /// Silences in force or pending (`all`: ended ones too).
    pub async fn silences(&self, all: bool) -> Result<SilencesResponse, ClientError> {
        let all = all.then_some("true");
        self.get(&with_query("/api/v1/silences", &[("all", all)]))
            .await
    }

    /// Add a silence.
    pub async fn add_silence(&self, silence: &NewSilence) -> Result<Silence, ClientError> {
        self.post("/api/v1/silences", silence).await
    }

    /// End a silence now.
    pub async fn expire_silence(&self, id: u64) -> Result<Silence, ClientError> {
        self.post_empty(&format!("/api/v1/silences/{id}/expire"))
            .await
    }

    /// Record a deploy and start watching it.
    pub async fn create_deploy(&self, deploy: &NewDeploy) -> Result<Deploy, ClientError> {
        self.post("/api/v1/deploys", deploy).await
    }

    /// One deploy, with its verdict so far.
    pub async fn deploy(&self, id: &str) -> Result<Deploy, ClientError> {
        self.get(&format!("/api/v1/deploys/{}", encode(id))).await
    }

    /// A service's deploys.
    pub async fn deploys(&self, filter: &LedgerFilter<'_>) -> Result<LedgerResponse, ClientError> {
        let path = format!("/api/v1/services/{}/deploys", encode(filter.service));
        let limit = filter.limit.to_string();
        let params = [
            ("version", filter.version),
            ("limit", Some(limit.as_str())),
            ("env", filter.env),
        ];
        self.get(&with_query(&path, &params)).await
    }

    /// The newest good version of a service.
    pub async fn last_good(
        &self,
        service: &str,
        env: Option<&str>,
    ) -> Result<LastGoodResponse, ClientError> {
        let path = format!("/api/v1/services/{}/last-good", encode(service));
        self.get(&with_query(&path, &[("env", env)])).await
    }

    /// Have the collector write a backup.
    pub async fn backup(&self, request: &BackupRequest) -> Result<BackupReport, ClientError> {
        self.post("/api/v1/admin/backup", request).await
    }

    async fn post_empty<T: DeserializeOwned>(&self, path: &str) -> Result<T, ClientError> {
        self.post(path, &serde_json::json!({})).await
    }
}
