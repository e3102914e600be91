//! GCP VPC firewall rules through Google's Rust client
//! (google-cloud-compute-v1: firewalls and their operations). The project
//! and network come from `--gcp-project` and `--gcp-network`; the endpoint
//! from `CLOUDSDK_API_ENDPOINT_OVERRIDES_COMPUTE` as gcloud reads it;
//! credentials from `GOOGLE_OAUTH_ACCESS_TOKEN` where set, else Application
//! Default Credentials (a key or external-account file named by
//! `GOOGLE_APPLICATION_CREDENTIALS`, gcloud's, or the metadata server).
//!
//! segc's rules are those named `segc-…` whose description ends with
//! `[segc policy NAME]`: only they are changed. Drift reads every rule on
//! the network whose target tags are the policy's, so a rule someone else
//! wrote that opens a segc tag is reported too. Each write waits for its
//! operation; 429, 500 and 503 are retried with backoff; an apply that
//! fails stops, reports what it applied, and the next apply finishes.

mod rules;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use anyhow::{bail, Context};
type Result<T, E = anyhow::Error> = std::result::Result<T, E>;
use google_cloud_compute_v1::client::Firewalls;
use google_cloud_compute_v1::model::{Firewall, Operation};
use google_cloud_gax::retry_policy::{LimitedAttemptCount, RetryPolicy};
use google_cloud_gax::retry_result::RetryResult;
use google_cloud_gax::retry_state::RetryState;
use google_cloud_lro::Poller;
use segc_compiler::lower::gcp::Output;

use crate::cloud::lanes;
use crate::journal::{Finding, FindingKind};
pub use rules::Change;
use rules::{detail, firewall, ours, shape};

/// Rules a project may hold (GCP's default quota).
pub const PROJECT_QUOTA: usize = 500;

/// A bearer token from `GOOGLE_OAUTH_ACCESS_TOKEN`, as gcloud takes it.
#[derive(Debug)]
struct StaticToken {
    header: http::HeaderValue,
    tag: google_cloud_auth::credentials::EntityTag,
}

impl google_cloud_auth::credentials::CredentialsProvider for StaticToken {
    async fn headers(
        &self,
        extensions: http::Extensions,
    ) -> Result<google_cloud_auth::credentials::CacheableResource<http::HeaderMap>, google_cloud_auth::errors::CredentialsError> {
        use google_cloud_auth::credentials::CacheableResource;
        if extensions.get::<google_cloud_auth::credentials::EntityTag>() == Some(&self.tag) {
            return Ok(CacheableResource::NotModified);
        }
        let mut h = http::HeaderMap::new();
        h.insert(http::header::AUTHORIZATION, self.header.clone());
        Ok(CacheableResource::New { entity_tag: self.tag.clone(), data: h })
    }

    async fn universe_domain(&self) -> Option<String> {
        None
    }
}

/// Retries what GCP asks to be retried (429, 500, 503) and transport
/// failures; every write carries a request id, so a retry is safe.
#[derive(Debug)]
struct Transient;

impl RetryPolicy for Transient {
    fn on_error(&self, _state: &RetryState, error: google_cloud_gax::error::Error) -> RetryResult {
        let code = error.http_status_code();
        if error.is_transient_and_before_rpc() || error.is_io() || matches!(code, Some(429 | 500 | 502 | 503 | 504)) {
            RetryResult::Continue(error)
        } else {
            RetryResult::Permanent(error)
        }
    }
}

/// The API root from gcloud's override (`http://host:port/compute/v1/`):
/// the client adds `/compute/v1/...` itself.
fn root(endpoint: &str) -> String {
    let e = endpoint.trim_end_matches('/');
    e.strip_suffix("/compute/v1").unwrap_or(e).to_string()
}

pub struct Gcp {
    fw: Firewalls,
    project: String,
    network: String,
}

impl Gcp {
    pub async fn connect(project: &str, network: &str) -> Result<Gcp> {
        let mut b = Firewalls::builder().with_retry_policy(LimitedAttemptCount::custom(Transient, 5)).with_backoff_policy(
            google_cloud_gax::exponential_backoff::ExponentialBackoffBuilder::new()
                .with_initial_delay(Duration::from_millis(200))
                .with_maximum_delay(Duration::from_secs(5))
                .build()
                .context("backoff policy")?,
        );
        // Firewall operations finish in seconds: poll from 100 ms, doubling
        // up to 2 s (the default starts at a second for every write).
        b = b.with_polling_backoff_policy(
            google_cloud_gax::exponential_backoff::ExponentialBackoffBuilder::new()
                .with_initial_delay(Duration::from_millis(100))
                .with_maximum_delay(Duration::from_secs(2))
                .build()
                .context("polling backoff policy")?,
        );
        if let Ok(ep) = std::env::var("CLOUDSDK_API_ENDPOINT_OVERRIDES_COMPUTE") {
            b = b.with_endpoint(root(&ep));
        }
        if let Ok(token) = std::env::var("GOOGLE_OAUTH_ACCESS_TOKEN") {
            let header = http::HeaderValue::from_str(&format!("Bearer {}", token.trim())).context("GOOGLE_OAUTH_ACCESS_TOKEN")?;
            let creds = StaticToken { header, tag: google_cloud_auth::credentials::EntityTag::new() };
            b = b.with_credentials(google_cloud_auth::credentials::Credentials::from(creds));
        }
        let fw = b.build().await.context("cannot set up the GCP client")?;
        Ok(Gcp { fw, project: project.to_string(), network: network.to_string() })
    }

    fn network_path(&self) -> String {
        format!("projects/{}/global/networks/{}", self.project, self.network)
    }

    fn on_network(&self, f: &Firewall) -> bool {
        f.network.as_deref().is_some_and(|n| n.trim_end_matches('/').ends_with(&format!("/networks/{}", self.network)))
    }

    /// Every rule of the project, all pages.
    async fn all(&self) -> Result<Vec<Firewall>> {
        let mut out = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let page = self
                .fw
                .list()
                .set_project(&self.project)
                .set_or_clear_page_token(token.clone())
                .send()
                .await
                .map_err(|e| anyhow::anyhow!("cannot list the firewall rules of project {}: {e}", self.project))?;
            out.extend(page.items);
            match page.next_page_token {
                Some(t) if !t.is_empty() => token = Some(t),
                _ => return Ok(out),
            }
        }
    }

    /// The policy's compiled rules by name, in the API's form.
    fn wanted(&self, out: &Output, policy: &str) -> BTreeMap<String, Firewall> {
        out.firewall_rules.iter().map(|r| (r.name.clone(), firewall(r, &self.network_path(), policy))).collect()
    }

    /// The changes an apply would make, in their order.
    pub async fn plan(&self, out: &Output, policy: &str) -> Result<Vec<Change>> {
        let all = self.all().await?;
        let live: BTreeMap<String, Firewall> =
            all.iter().filter(|f| self.on_network(f) && ours(f, policy)).map(|f| (f.name.clone().unwrap_or_default(), f.clone())).collect();
        let room = PROJECT_QUOTA.saturating_sub(all.len());
        Ok(rules::order(&live, &self.wanted(out, policy), room))
    }

    async fn wait(&self, op: Result<Operation, google_cloud_compute_v1::Error>) -> Result<()> {
        let op = op.map_err(|e| anyhow::anyhow!("{e}"))?;
        if let Some(err) = &op.error {
            let msgs: Vec<String> = err.errors.iter().filter_map(|e| e.message.clone()).collect();
            bail!("the operation failed: {}", msgs.join("; "));
        }
        Ok(())
    }

    async fn execute(&self, c: &Change) -> Result<()> {
        let f = c.firewall().clone();
        let name = f.name.clone().unwrap_or_default();
        let id = request_id(c);
        match c {
            Change::Insert(_) => {
                self.wait(self.fw.insert().set_project(&self.project).set_request_id(id).set_body(f).poller().until_done().await).await
            }
            Change::Update(_) => {
                self.wait(
                    self.fw
                        .update()
                        .set_project(&self.project)
                        .set_firewall(&name)
                        .set_request_id(id)
                        .set_body(f)
                        .poller()
                        .until_done()
                        .await,
                )
                .await
            }
            Change::Delete(_) => {
                self.wait(self.fw.delete().set_project(&self.project).set_firewall(&name).set_request_id(id).poller().until_done().await)
                    .await
            }
        }
    }

    /// Applies the plan in its order, step by step ([`Change::step`]): the
    /// writes of a step together ([`crate::cloud::lanes`]); on a failure,
    /// what was applied and why.
    pub async fn apply(
        &self,
        out: &Output,
        policy: &str,
        hooks: &crate::cloud::Hooks<'_>,
    ) -> Result<Vec<String>, (Vec<String>, anyhow::Error)> {
        let changes = self.plan(out, policy).await.map_err(|e| (Vec::new(), e))?;
        let steps = changes.chunk_by(|a, b| a.step() == b.step()).map(lanes::singles).collect();
        lanes::run(steps, hooks, |c| self.execute(c)).await
    }

    /// Live against compiled, rule by rule, with what each finding lets
    /// through; rules of others that open the policy's tags are `extra`.
    pub async fn drift(&self, out: &Output, policy: &str) -> Result<Vec<Finding>> {
        let all = self.all().await?;
        let want = self.wanted(out, policy);
        let tags: BTreeSet<&String> = out.firewall_rules.iter().flat_map(|r| &r.target_tags).collect();
        let mut findings = Vec::new();
        let live: BTreeMap<String, &Firewall> =
            all.iter().filter(|f| self.on_network(f)).map(|f| (f.name.clone().unwrap_or_default(), f)).collect();
        for (name, w) in &want {
            match live.get(name) {
                Some(l) if ours(l, policy) && shape(l) == shape(w) => {}
                Some(l) if ours(l, policy) => {
                    findings.push(Finding::rule(FindingKind::Changed, detail(l), &format!("the policy has: {}", detail(w))))
                }
                _ => findings.push(Finding::rule(FindingKind::Missing, detail(w), "in the policy, not live")),
            }
        }
        for (name, l) in &live {
            if want.contains_key(name) && ours(l, policy) {
                continue;
            }
            // Someone else's rule matters when it allows something to the
            // policy's instances (a rule without target tags applies to all).
            let reaches_ours = l.target_tags.is_empty() || l.target_tags.iter().any(|t| tags.contains(t));
            if ours(l, policy) {
                findings.push(Finding::rule(FindingKind::Extra, detail(l), "segc's, not in the policy: apply deletes it"));
            } else if l.denied.is_empty() && reaches_ours {
                findings.push(Finding::rule(
                    FindingKind::Extra,
                    detail(l),
                    "not segc's, and it applies to the policy's instances: review it (apply leaves it alone)",
                ));
            }
        }
        Ok(findings)
    }
}

/// A request id for one write, the same through the client's retries of it
/// (GCP then does not apply it twice), new for every write.
fn request_id(c: &Change) -> String {
    static N: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let seed = format!("{c:?} {} {} {n}", std::process::id(), segc_fsio::clock::unix_seconds());
    let h = segc_compiler::sha256::hex(seed.as_bytes());
    format!("{}-{}-4{}-a{}-{}", &h[0..8], &h[8..12], &h[13..16], &h[17..20], &h[20..32])
}
