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

use crate::journal::{Finding, FindingKind};
pub use rules::Change;
use rules::{detail, firewall, ours, shape};

/// Writes under way at once within a step of an apply: GCP takes seconds
/// per firewall operation, so one at a time would take an hour for a
/// thousand rules; eight stays well inside the API's write rate.
pub const PARALLEL_WRITES: usize = 8;

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

    /// Applies the plan in its order, step by step ([`Change::step`],
    /// [`in_steps`]); on a failure, what was applied and why.
    pub async fn apply(
        &self,
        out: &Output,
        policy: &str,
        hooks: &crate::cloud::Hooks<'_>,
    ) -> Result<Vec<String>, (Vec<String>, anyhow::Error)> {
        let changes = self.plan(out, policy).await.map_err(|e| (Vec::new(), e))?;
        in_steps(&changes, Change::step, hooks, |c| self.execute(c)).await
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

/// Runs `changes` (in their order) step by step: the changes of one step
/// (consecutive, the same `step`) run together, up to [`PARALLEL_WRITES`]
/// at a time, and the next step starts only when all of them are done, so
/// an order's guarantee between steps holds. After a failure (or when
/// `hooks` stop acting) no change starts; those under way are waited for,
/// so that what is reported applied is exactly what was. Each applied
/// change is reported in order once its step is done.
async fn in_steps<'a, C, Fut>(
    changes: &'a [C],
    step: impl Fn(&C) -> u8,
    hooks: &crate::cloud::Hooks<'_>,
    execute: impl Fn(&'a C) -> Fut,
) -> Result<Vec<String>, (Vec<String>, anyhow::Error)>
where
    C: std::fmt::Display,
    Fut: std::future::Future<Output = Result<()>>,
{
    use futures::stream::{self, StreamExt};
    let mut done = Vec::new();
    for run in changes.chunk_by(|a, b| step(a) == step(b)) {
        let stopped = std::cell::Cell::new(false);
        let results: Vec<Option<Result<()>>> = stream::iter(run)
            .map(|c| {
                let (stopped, execute) = (&stopped, &execute);
                async move {
                    if stopped.get() {
                        return None;
                    }
                    let r = match hooks.check() {
                        Ok(()) => execute(c).await.map_err(|e| e.context(c.to_string())),
                        Err(e) => Err(e),
                    };
                    stopped.set(stopped.get() || r.is_err());
                    Some(r)
                }
            })
            .buffered(PARALLEL_WRITES)
            .collect()
            .await;
        let mut failure = None;
        for (c, r) in run.iter().zip(results) {
            match r {
                Some(Ok(())) => {
                    (hooks.progress)(&c.to_string());
                    done.push(c.to_string());
                }
                Some(Err(e)) => failure = failure.or(Some(e)),
                None => {}
            }
        }
        if let Some(e) = failure {
            return Err((done, e));
        }
    }
    Ok(done)
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

#[cfg(test)]
mod tests {
    use std::cell::RefCell;
    use std::time::Duration;

    use super::{in_steps, PARALLEL_WRITES};
    use crate::cloud::Hooks;

    /// A change of the test: its step, its name, and whether it fails.
    struct C(u8, String, bool);

    impl std::fmt::Display for C {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str(&self.1)
        }
    }

    /// What [`in_steps`] returns.
    type Applied = Result<Vec<String>, (Vec<String>, anyhow::Error)>;

    /// Runs `changes` through [`in_steps`] with writes that take 5 ms:
    /// the result and every start and end, in the order they happened.
    fn run(changes: &[C]) -> (Applied, Vec<String>) {
        let events = RefCell::new(Vec::new());
        let hooks = Hooks { progress: &|_| {}, may_act: &|| true };
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
        let r = rt.block_on(in_steps(
            changes,
            |c| c.0,
            &hooks,
            |c| {
                let events = &events;
                async move {
                    events.borrow_mut().push(format!("start {}", c.1));
                    tokio::time::sleep(Duration::from_millis(5)).await;
                    events.borrow_mut().push(format!("end {}", c.1));
                    if c.2 {
                        anyhow::bail!("refused")
                    }
                    Ok(())
                }
            },
        ));
        (r, events.into_inner())
    }

    #[test]
    fn a_step_starts_when_the_one_before_is_done_and_runs_together() {
        let changes: Vec<C> = (0..20).map(|i| C(u8::from(i >= 12), format!("c{i}"), false)).collect();
        let (r, events) = run(&changes);
        assert_eq!(r.expect("applied"), changes.iter().map(|c| c.1.clone()).collect::<Vec<_>>());
        let at = |e: &str| events.iter().position(|x| x == e).expect(e);
        let last_end = (0..12).map(|i| at(&format!("end c{i}"))).max().expect("ends");
        let first_start = (12..20).map(|i| at(&format!("start c{i}"))).min().expect("starts");
        assert!(last_end < first_start, "step 1 started before step 0 was done: {events:?}");
        // Within a step, up to PARALLEL_WRITES under way at once.
        let mut live = 0usize;
        let mut most = 0;
        for e in &events {
            live = if e.starts_with("start") { live + 1 } else { live - 1 };
            most = most.max(live);
        }
        assert_eq!(most, PARALLEL_WRITES, "{events:?}");
    }

    #[test]
    fn after_a_failure_nothing_starts_and_what_was_under_way_is_reported() {
        let changes: Vec<C> = (0..30).map(|i| C(u8::from(i >= 20), format!("c{i}"), i == 3)).collect();
        let (r, events) = run(&changes);
        let (done, e) = r.expect_err("a change failed");
        assert!(format!("{e:#}").contains("c3: refused"), "{e:#}");
        // The eight started together (c0..c7) finish; c3 fails; nothing more starts.
        let started: Vec<&String> = events.iter().filter(|e| e.starts_with("start")).collect();
        assert_eq!(started.len(), PARALLEL_WRITES, "{events:?}");
        assert_eq!(done, ["c0", "c1", "c2", "c4", "c5", "c6", "c7"]);
    }
}
