//! The HTTP API (axum), JSON under `/v1`; see docs/API.md and `/openapi.json`.
//!
//! This module owns the one mapping from errors to status codes. Every error body is JSON
//! `{error, message}`; request bodies are bounded; every parameter is parsed with a precise 400.

use std::convert::Infallible;
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, JsonRejection, PathRejection, QueryRejection};
use axum::extract::{DefaultBodyLimit, Path, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use futures_util::Stream;
use proto::api::{
    BatchAnswer, BatchCheckRequest, BatchCheckResponse, ChainResponse, CheckQuery, CheckResponse,
    ConsentEvent, ConsentItem, ConsentsResponse, ConsistencyProof, EntryRecord, ErrorBody,
    InclusionProof, LogLine, NodeInfo, PeerInfo, SubmitResponse, SubmitStatus, Verdict,
};
use proto::chain::ForkProof;
use proto::entry::{Entry, MAX_ENTRY_BYTES};
use proto::json::Object;
use proto::keys::{Hash, PublicKey};
use proto::state::Status;
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tokio_stream::StreamExt;
use utoipa::OpenApi;

use crate::ledger::{IngestError, Ledger, QueryError};
use crate::store::Store;

/// Largest request body (JSON entries are a few KiB; batch checks up to 1,000 questions).
pub const MAX_BODY: usize = 512 * 1024;
/// How long a request body may go without a byte arriving before the request is answered 408:
/// a client that declares a body and does not send it does not hold a connection for ever.
pub const BODY_IDLE: Duration = Duration::from_secs(30);
/// Largest JSON body for one entry.
pub const MAX_ENTRY_JSON: usize = 64 * 1024;
/// Most questions in one batch check.
pub const MAX_BATCH: usize = 1000;
/// Most entries returned by one chain or log page.
pub const MAX_PAGE: usize = 1000;

/// Shared state of the handlers.
#[derive(Clone)]
pub struct AppState {
    /// The ledger.
    pub ledger: Ledger,
    /// The node's public key.
    pub node_key: PublicKey,
    /// Signs this node's checkpoints.
    pub checkpoints: std::sync::Arc<crate::checkpoint::Checkpointer>,
    /// This node as a witness of other logs.
    pub witness: std::sync::Arc<crate::witness::Witness>,
    /// Cancelled at shutdown: ends event streams so that the server can stop.
    pub shutdown: tokio_util::sync::CancellationToken,
    /// The p2p layer (None when replication is off).
    pub net: Option<crate::p2p::NetHandle>,
}

/// An error response.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
    fork_proof: Option<Box<ForkProof>>,
}

impl ApiError {
    fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            code,
            message: message.into(),
            fork_proof: None,
        }
    }

    fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "bad_request", message)
    }

    fn internal(message: impl Into<String>) -> Self {
        ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", message)
    }

    fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", message)
    }

    fn body(&self) -> ErrorBody {
        ErrorBody {
            error: self.code.to_owned(),
            message: self.message.clone(),
            fork_proof: self.fork_proof.clone(),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut r = (self.status, Json(self.body())).into_response();
        // Worth retrying soon only when the pending area was full; a read-only node needs its
        // operator.
        if self.code == "unavailable" || self.code == "repairing" || self.code == "chain_damaged" {
            r.headers_mut()
                .insert(header::RETRY_AFTER, header::HeaderValue::from_static("1"));
        }
        r
    }
}

impl From<IngestError> for ApiError {
    fn from(e: IngestError) -> Self {
        match e {
            IngestError::Invalid(m) | IngestError::OtherBranch(m) => {
                ApiError::new(StatusCode::BAD_REQUEST, "invalid_entry", m)
            }
            IngestError::Fork(proof) => ApiError {
                status: StatusCode::CONFLICT,
                code: "fork",
                message: IngestError::Fork(proof.clone()).to_string(),
                fork_proof: Some(proof),
            },
            e @ IngestError::PendingFull => ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "unavailable",
                e.to_string(),
            ),
            e @ IngestError::ReadOnly => {
                ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "read_only", e.to_string())
            }
            e @ IngestError::Repairing => {
                ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "repairing", e.to_string())
            }
            IngestError::Storage(e) => QueryError::Storage(e).into(),
        }
    }
}

impl From<QueryError> for ApiError {
    fn from(e: QueryError) -> Self {
        match e {
            QueryError::BadRequest(m) => ApiError::bad_request(m),
            QueryError::Storage(e @ crate::store::StoreError::ReadOnly) => {
                ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "read_only", e.to_string())
            }
            QueryError::Storage(
                e @ (crate::store::StoreError::Reopening | crate::store::StoreError::NotDurable),
            ) => ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "unavailable",
                e.to_string(),
            ),
            QueryError::Storage(e) => {
                tracing::error!(error = %e, "storage error");
                ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "storage", e.to_string())
            }
        }
    }
}

impl From<crate::store::StoreError> for ApiError {
    fn from(e: crate::store::StoreError) -> Self {
        QueryError::Storage(e).into()
    }
}

type ApiResult<T> = Result<T, ApiError>;

fn parse_key(field: &str, s: &str) -> ApiResult<PublicKey> {
    s.parse()
        .map_err(|e| ApiError::bad_request(format!("{field}: {e}")))
}

fn path(p: Result<Path<String>, PathRejection>) -> ApiResult<String> {
    p.map(|Path(s)| s)
        .map_err(|e| ApiError::bad_request(e.body_text()))
}

fn query<T>(q: Result<Query<T>, QueryRejection>) -> ApiResult<T> {
    q.map(|Query(t)| t)
        .map_err(|e| ApiError::bad_request(e.body_text()))
}

/// Parses an RFC 3339 time into ms since the Unix epoch.
fn parse_time(s: &str) -> ApiResult<u64> {
    let t = time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339)
        .map_err(|e| ApiError::bad_request(format!("at: not an RFC 3339 time ({e})")))?;
    let ms = t.unix_timestamp_nanos() / 1_000_000;
    u64::try_from(ms).map_err(|_| ApiError::bad_request("at: before 1970"))
}

/// The OpenAPI document, generated from the handlers and types below.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "consent-node",
        description = "consent-ledger node API; see docs/API.md"
    ),
    paths(
        submit_entry,
        check_one,
        check_batch,
        subject_entries,
        subject_consents,
        subject_fork,
        entry_by_hash,
        log_entries,
        checkpoint,
        split_views,
        witness_info,
        add_checkpoint,
        export,
        inclusion_proof,
        consistency_proof,
        events,
        healthz,
        node_info,
        peers,
        dial_peer,
        block_peer,
        unblock_peer,
        metrics
    ),
    components(schemas(
        ErrorBody,
        SubmitResponse,
        SubmitStatus,
        CheckResponse,
        Verdict,
        CheckQuery,
        BatchCheckRequest,
        BatchCheckResponse,
        BatchAnswer,
        EntryRecord,
        ChainResponse,
        ConsentItem,
        ConsentsResponse,
        NodeInfo,
        PeerInfo,
        crate::witness::SplitViewReport,
        crate::witness::WitnessedLog,
        WitnessInfo,
        DialRequest,
        ConsentEvent,
        LogLine,
        proto::api::Evidence,
        InclusionProof,
        ConsistencyProof
    ))
)]
pub struct ApiDoc;

/// The router.
pub fn router(state: AppState) -> Router {
    Router::new()
        // Reads of the ledger's state: answered only once what they read is durable.
        .route("/v1/entries/{hash}", get(entry_by_hash))
        .route("/v1/subjects/{subject}/entries", get(subject_entries))
        .route("/v1/subjects/{subject}/consents", get(subject_consents))
        .route("/v1/subjects/{subject}/fork", get(subject_fork))
        .route("/v1/log/entries", get(log_entries))
        .route("/v1/log/export", get(export))
        .route("/v1/log/proof/inclusion", get(inclusion_proof))
        .route("/v1/log/proof/consistency", get(consistency_proof))
        .route("/v1/events", get(events))
        .route("/v1/node/info", get(node_info))
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            durable_reads,
        ))
        // Submissions answer after their own flush, checks wait per subject
        // (`durable_answers`); the rest shows no ledger state, or only checkpoints (durable).
        .route("/v1/entries", post(submit_entry))
        .route("/v1/consent/check", get(check_one).post(check_batch))
        .route("/v1/log/checkpoint", get(checkpoint))
        .route("/v1/log/split-views", get(split_views))
        .route("/v1/witness", get(witness_info))
        .route("/v1/witness/add-checkpoint", post(add_checkpoint))
        .route("/v1/peers", get(peers).post(dial_peer))
        .route(
            "/v1/peers/{peer_id}/block",
            post(block_peer).delete(unblock_peer),
        )
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics))
        .route("/openapi.json", get(openapi))
        .fallback(|| async { ApiError::not_found("no such endpoint") })
        .method_not_allowed_fallback(|| async {
            ApiError::new(
                StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                "this endpoint does not take that method",
            )
        })
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .layer(axum::middleware::map_request(body_idle_timeout))
        .layer(axum::middleware::map_response_with_state(
            state.clone(),
            count_errors,
        ))
        .with_state(state)
}

/// How long a read waits for the flush that makes what it read durable before it answers 503.
const DURABLE_WAIT: Duration = Duration::from_secs(5);

/// Answers a successful read only once everything it could have read is durable
/// ([`crate::store::SledStore::wait_durable`]): an entry, a head, a consent state or a log size
/// that a crash could still take back is never shown, so a brand never acts on (or keeps as
/// evidence) an answer that the node could contradict after a restart. Without writes in flight
/// this costs one atomic load; during ingest a read waits for the flush already under way (a few
/// milliseconds). Layered on the ledger-reading routes of [`router`] only: `POST /v1/entries`
/// answers after its own flush, checks wait only for their own subjects ([`durable_answers`]),
/// and `/healthz` and `/metrics` describe the node, not the ledger.
async fn durable_reads(
    State(st): State<AppState>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let resp = next.run(req).await;
    if !resp.status().is_success() {
        return resp;
    }
    match st.ledger.store().wait_durable(DURABLE_WAIT).await {
        Ok(()) => resp,
        Err(e) => ApiError::from(e).into_response(),
    }
}

/// Runs blocking store work off the async workers.
async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> ApiResult<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| ApiError::internal(e.to_string()))
}

/// The error for a request body that could not be read: 413 when over the limit, else 400.
fn body_rejection(e: BytesRejection) -> ApiError {
    // The documented message for a raw body over the limit (API.md, size limits).
    let text = if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
        "request body is too large".to_owned()
    } else {
        e.body_text()
    };
    rejection(e.status(), text, &e)
}

fn json_rejection(e: JsonRejection) -> ApiError {
    rejection(e.status(), e.body_text(), &e)
}

/// A request body's rejection (axum's `status` and `text`): 413 over the limit, 408 when it
/// stopped arriving ([`body_idle_timeout`]), else 400.
fn rejection(status: StatusCode, text: String, e: &(dyn std::error::Error + 'static)) -> ApiError {
    if status == StatusCode::PAYLOAD_TOO_LARGE {
        return ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "too_large", text);
    }
    if std::iter::successors(Some(e), |e| e.source())
        .any(|e| e.is::<tower_http::timeout::TimeoutError>())
    {
        return ApiError::new(
            StatusCode::REQUEST_TIMEOUT,
            "timeout",
            format!(
                "the request body stopped arriving (nothing for {} s)",
                BODY_IDLE.as_secs()
            ),
        );
    }
    ApiError::bad_request(text)
}

/// Wraps a request body in an idle timeout ([`BODY_IDLE`]); a request without one (every GET) is
/// left as it is.
async fn body_idle_timeout(req: axum::extract::Request) -> axum::extract::Request {
    use axum::body::HttpBody;
    if req.body().is_end_stream() {
        return req;
    }
    req.map(|b| axum::body::Body::new(tower_http::timeout::TimeoutBody::new(BODY_IDLE, b)))
}

/// Counts every 4xx and 5xx response by status code.
async fn count_errors(State(st): State<AppState>, r: Response) -> Response {
    let status = r.status();
    if status.is_client_error() || status.is_server_error() {
        st.ledger
            .metrics()
            .http_errors
            .get_or_create(&crate::metrics::Reason {
                reason: status.as_u16().to_string(),
            })
            .inc();
    }
    r
}

/// Submit one signed entry.
#[utoipa::path(post, path = "/v1/entries",
    request_body(description = "The entry's JSON form (application/json, at most 64 KiB) or its canonical bytes (application/octet-stream, at most 4096 bytes)",
        content(
            (Object = "application/json"),
            (Vec<u8> = "application/octet-stream"))),
    responses(
        (status = 201, description = "Stored durably", body = SubmitResponse),
        (status = 200, description = "Already stored", body = SubmitResponse),
        (status = 202, description = "Waiting for its predecessor; not in the ledger", body = SubmitResponse),
        (status = 400, description = "Invalid entry", body = ErrorBody),
        (status = 409, description = "Fork: the body carries the proof", body = ErrorBody),
        (status = 413, description = "Too large", body = ErrorBody),
        (status = 415, description = "Neither application/json nor application/octet-stream", body = ErrorBody),
        (status = 500, description = "Storage error", body = ErrorBody),
        (status = 503, description = "Read-only or pending area full (Retry-After: 1)", body = ErrorBody)))]
async fn submit_entry(
    State(st): State<AppState>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult<(StatusCode, Json<SubmitResponse>)> {
    let body = body.map_err(body_rejection)?;
    // The media type alone (parameters such as `; charset=utf-8` dropped), case-insensitive; a
    // header that is not visible ASCII is an unsupported type, an absent one is JSON.
    let content_type = match headers.get(header::CONTENT_TYPE) {
        None => "application/json".to_owned(),
        Some(v) => v
            .to_str()
            .map(|t| {
                t.split(';')
                    .next()
                    .unwrap_or("")
                    .trim()
                    .to_ascii_lowercase()
            })
            .unwrap_or_default(),
    };
    let malformed = |e: String| {
        st.ledger.metrics().rejected("malformed");
        ApiError::new(StatusCode::BAD_REQUEST, "invalid_entry", e)
    };
    let entry = if content_type == "application/octet-stream" {
        if body.len() > MAX_ENTRY_BYTES {
            return Err(ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "too_large",
                format!(
                    "an entry is at most {MAX_ENTRY_BYTES} bytes; got {}",
                    body.len()
                ),
            ));
        }
        Entry::from_bytes(&body).map_err(|e| malformed(e.to_string()))?
    } else if content_type == "application/json" {
        if body.len() > MAX_ENTRY_JSON {
            return Err(ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "too_large",
                format!("an entry's JSON form is at most {MAX_ENTRY_JSON} bytes"),
            ));
        }
        serde_json::from_slice::<Entry>(&body).map_err(|e| malformed(e.to_string()))?
    } else {
        return Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            "send application/json or application/octet-stream",
        ));
    };
    let hash = entry.hash();
    let subject = entry.subject();
    let seq = entry.seq();
    let bytes = st.net.as_ref().map(|_| entry.to_bytes());
    let out = st.ledger.submit(entry).await.map_err(|e| {
        tracing::debug!(%subject, seq, error = %e, "entry refused");
        if let (Some(net), IngestError::Fork(p)) = (&st.net, &e) {
            net.publish_fork(p.to_bytes());
        }
        ApiError::from(e)
    })?;
    // Stored or pending (valid, waiting for its predecessor here): either way peers may be able
    // to use it, so it is announced, on the topics of the controllers its chain names; a pending
    // entry's predecessors may be at peers, so they are asked for them.
    if let (Some(net), Some(bytes), SubmitStatus::Stored | SubmitStatus::Pending) =
        (&st.net, bytes, out.status)
    {
        let (head, controllers) = st.ledger.head_and_controllers(&subject);
        if out.status == SubmitStatus::Pending {
            net.fetch_gap(subject, head + 1);
        }
        net.publish_entry(bytes, controllers);
    }
    let code = match out.status {
        SubmitStatus::Stored => StatusCode::CREATED,
        SubmitStatus::Duplicate => StatusCode::OK,
        SubmitStatus::Pending => StatusCode::ACCEPTED,
    };
    Ok((
        code,
        Json(SubmitResponse {
            status: out.status,
            hash,
            subject,
            seq,
            log_index: out.log_index,
        }),
    ))
}

/// Refuses a subject whose chain lost entries on disk that are not back from peers yet: any
/// answer from the rest of it could be wrong (a lost withdrawal would read as allow).
fn refuse_damaged(st: &AppState, subject: &PublicKey) -> ApiResult<()> {
    if st.ledger.damaged(subject) {
        return Err(chain_damaged(format!(
            "this node's copy of subject {subject}"
        )));
    }
    Ok(())
}

/// Refuses a lookup of an entry the store lost on disk and has not got back yet: a 404 would say
/// that an acknowledged entry does not exist.
fn refuse_lost(st: &AppState, hash: &Hash) -> ApiResult<()> {
    if st.ledger.lost(hash) {
        return Err(chain_damaged(format!("entry {hash}")));
    }
    Ok(())
}

/// 503 `chain_damaged` for `what`, which this node lost on disk and is repairing from peers.
fn chain_damaged(what: String) -> ApiError {
    ApiError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "chain_damaged",
        format!(
            "{what} was damaged on disk and is being repaired from peers; ask another node or \
             retry later"
        ),
    )
}

fn answer(st: &AppState, q: &CheckQuery) -> ApiResult<CheckResponse> {
    let subject = parse_key("subject", &q.subject)?;
    refuse_damaged(st, &subject)?;
    let controller = parse_key("controller", &q.controller)?;
    let at = q.at.as_deref().map(parse_time).transpose()?;
    let mut r = st.ledger.check(&subject, &controller, &q.purpose, at)?;
    if q.evidence {
        // Judge again from exactly the chain the evidence carries (read once, durable entries
        // only), so that the record verifies even if the subject's chain grew meanwhile.
        let (ev, chain) = evidence(st, &subject, at)?;
        let forked = st
            .ledger
            .store()
            .subject(&subject)?
            .is_some_and(|rec| rec.forked);
        let d = if forked {
            proto::state::forked_decision()
        } else {
            proto::ConsentState::fold(chain.iter())
                .decide(&controller, &q.purpose, r.at)
                .map_err(|e| ApiError::bad_request(e.to_string()))?
        };
        r.decision = Verdict::from_status(d.status);
        r.status = d.status.dpv().to_owned();
        r.hash = d.hash;
        r.seq = d.seq;
        r.notice_version = d.notice_version;
        r.valid_until = d.valid_until;
        r.head_seq = r.head_seq.max(chain.last().map_or(0, Entry::seq));
        r.evidence = Some(Box::new(ev));
        st.ledger.guard_freshness(&mut r);
    }
    Ok(r)
}

/// The durable chain (for a question about a past time, the prefix signed by then), the head's
/// inclusion proof and a signed checkpoint covering it.
fn evidence(
    st: &AppState,
    subject: &PublicKey,
    at: Option<u64>,
) -> ApiResult<(proto::api::Evidence, Vec<Entry>)> {
    let store = st.ledger.store();
    // The checkpoint first: it covers the durable log; the chain is then cut to what it covers.
    let (size, checkpoint) = st.checkpoints.latest_sized(store)?;
    let mut chain = Vec::new();
    for e in store.chain(subject, 1, usize::MAX)? {
        if at.is_some_and(|t| e.content.issued_at > t) {
            break;
        }
        let covered = store.locate(&e.hash())?.is_some_and(|l| l.log_index < size);
        if !covered {
            break;
        }
        chain.push(e);
    }
    let head_inclusion = match chain.last() {
        None => None,
        Some(head) => {
            let hash = head.hash();
            let loc = store.locate(&hash)?.ok_or_else(|| {
                ApiError::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "storage",
                    "head not in the log",
                )
            })?;
            Some(InclusionProof {
                hash,
                log_index: loc.log_index,
                tree_size: size,
                root: store.tree_root(size)?,
                proof: store.inclusion_proof(loc.log_index, size)?,
            })
        }
    };
    Ok((
        proto::api::Evidence {
            chain: chain.iter().map(|e| hex::encode(e.to_bytes())).collect(),
            head_inclusion,
            checkpoint,
            log_vkey: st.checkpoints.vkey(),
        },
        chain,
    ))
}

/// May `controller` use `subject`'s data for `purpose` now (or at `at`)?
#[utoipa::path(get, path = "/v1/consent/check", params(CheckQuery),
    responses((status = 200, body = CheckResponse), (status = 400, body = ErrorBody)))]
async fn check_one(
    State(st): State<AppState>,
    q: Result<Query<CheckQuery>, QueryRejection>,
) -> ApiResult<Json<CheckResponse>> {
    let q = query(q)?;
    let started = Instant::now();
    let mut answers = [answer(&st, &q)];
    let waited = durable_answers(&st, &mut answers).await;
    let [r] = answers;
    let r = waited.and(r);
    st.ledger
        .metrics()
        .check_seconds
        .observe(started.elapsed().as_secs_f64());
    r.map(Json)
}

/// Holds check answers back until their subjects' records are durable (only a subject written
/// by a group still being flushed waits), then sets each answer's `log_size` to the durable log
/// size: a check never shows a state or a size that a crash could take back (see
/// [`durable_reads`], which checks bypass).
async fn durable_answers(st: &AppState, answers: &mut [ApiResult<CheckResponse>]) -> ApiResult<()> {
    let store = st.ledger.store();
    store
        .wait_subjects_durable(answers.iter().flatten().map(|r| &r.subject), DURABLE_WAIT)
        .await?;
    let size = store.flushed_size();
    for r in answers.iter_mut().flatten() {
        r.log_size = size;
    }
    Ok(())
}

/// Up to 1,000 questions at once; answers in question order.
#[utoipa::path(post, path = "/v1/consent/check", request_body = BatchCheckRequest,
    responses((status = 200, body = BatchCheckResponse), (status = 400, body = ErrorBody)))]
async fn check_batch(
    State(st): State<AppState>,
    body: Result<Json<Object<BatchCheckRequest>>, JsonRejection>,
) -> ApiResult<Json<BatchCheckResponse>> {
    let Json(Object(req)) = body.map_err(json_rejection)?;
    if req.questions.len() > MAX_BATCH {
        return Err(ApiError::bad_request(format!(
            "at most {MAX_BATCH} questions per batch; got {}",
            req.questions.len()
        )));
    }
    let started = Instant::now();
    let mut results: Vec<ApiResult<CheckResponse>> =
        req.questions.iter().map(|q| answer(&st, q)).collect();
    durable_answers(&st, &mut results).await?;
    let answers = results
        .into_iter()
        .map(|r| match r {
            Ok(a) => BatchAnswer::Answer(a),
            Err(e) => BatchAnswer::Error(e.body()),
        })
        .collect();
    st.ledger
        .metrics()
        .check_seconds
        .observe(started.elapsed().as_secs_f64());
    Ok(Json(BatchCheckResponse { answers }))
}

#[derive(Debug, Deserialize)]
struct ChainParams {
    from_seq: Option<u64>,
    limit: Option<usize>,
}

fn record(st: &AppState, e: Entry) -> ApiResult<EntryRecord> {
    let hash = e.hash();
    let log_index = st.ledger.store().locate(&hash)?.map_or(0, |l| l.log_index);
    Ok(EntryRecord {
        hash,
        log_index,
        hex: hex::encode(e.to_bytes()),
        entry: e,
    })
}

/// The subject's chain from `from_seq` (default 1), at most `limit` (default and maximum 1,000).
#[utoipa::path(get, path = "/v1/subjects/{subject}/entries",
    params(("subject" = String, Path), ("from_seq" = Option<u64>, Query), ("limit" = Option<usize>, Query)),
    responses((status = 200, body = ChainResponse), (status = 400, body = ErrorBody)))]
async fn subject_entries(
    State(st): State<AppState>,
    subject: Result<Path<String>, PathRejection>,
    q: Result<Query<ChainParams>, QueryRejection>,
) -> ApiResult<Json<ChainResponse>> {
    let subject = parse_key("subject", &path(subject)?)?;
    refuse_damaged(&st, &subject)?;
    let q = query(q)?;
    let limit = q.limit.unwrap_or(MAX_PAGE).min(MAX_PAGE);
    let store = st.ledger.store();
    let rec = store.subject(&subject)?;
    let entries = store
        .chain(&subject, q.from_seq.unwrap_or(1), limit)?
        .into_iter()
        .map(|e| record(&st, e))
        .collect::<ApiResult<Vec<_>>>()?;
    Ok(Json(ChainResponse {
        subject,
        head_seq: rec.as_ref().map_or(0, |r| r.head.seq),
        forked: rec.as_ref().is_some_and(|r| r.forked),
        entries,
    }))
}

/// The subject's current state per controller and purpose named in its chain.
#[utoipa::path(get, path = "/v1/subjects/{subject}/consents", params(("subject" = String, Path)),
    responses((status = 200, body = ConsentsResponse), (status = 400, body = ErrorBody)))]
async fn subject_consents(
    State(st): State<AppState>,
    subject: Result<Path<String>, PathRejection>,
) -> ApiResult<Json<ConsentsResponse>> {
    let subject = parse_key("subject", &path(subject)?)?;
    refuse_damaged(&st, &subject)?;
    let now = st.ledger.clock().now_ms();
    let rec = st.ledger.store().subject(&subject)?;
    let (head_seq, forked, consents) = match rec {
        None => (0, false, vec![]),
        Some(r) => {
            let item = |controller: PublicKey, purpose: String, d: proto::Decision| {
                if r.forked {
                    ConsentItem {
                        controller,
                        purpose,
                        decision: Verdict::Deny,
                        status: Status::Forked.dpv().to_owned(),
                        seq: None,
                        hash: None,
                        valid_until: None,
                    }
                } else {
                    ConsentItem {
                        controller,
                        purpose,
                        decision: Verdict::from_status(d.status),
                        status: d.status.dpv().to_owned(),
                        seq: d.seq,
                        hash: d.hash,
                        valid_until: d.valid_until,
                    }
                }
            };
            let mut items: Vec<ConsentItem> = r
                .consent
                .all(now)
                .into_iter()
                .map(|(c, p, d)| item(c, p, d))
                .collect();
            // A withdraw or refuse that names no purpose covers every purpose of its controller:
            // listed as purpose "*".
            for (controller, cs) in &r.consent.controllers {
                if let Some(m) = &cs.blanket {
                    let status = if m.kind == proto::Kind::Refuse {
                        Status::Refused
                    } else {
                        Status::Withdrawn
                    };
                    let d = proto::Decision {
                        status,
                        seq: Some(m.seq),
                        hash: Some(m.hash),
                        notice_version: m.notice_version.clone(),
                        valid_until: None,
                    };
                    items.push(item(*controller, "*".to_owned(), d));
                }
            }
            items.sort_by(|a, b| (a.controller, &a.purpose).cmp(&(b.controller, &b.purpose)));
            (r.head.seq, r.forked, items)
        }
    };
    Ok(Json(ConsentsResponse {
        subject,
        head_seq,
        forked,
        consents,
        at: now,
    }))
}

/// The stored fork proof of a forked subject (404 when the subject is not forked).
#[utoipa::path(get, path = "/v1/subjects/{subject}/fork", params(("subject" = String, Path)),
    responses((status = 200, description = "The fork proof (JSON form)"), (status = 404, body = ErrorBody)))]
async fn subject_fork(
    State(st): State<AppState>,
    subject: Result<Path<String>, PathRejection>,
) -> ApiResult<Json<ForkProof>> {
    let subject = parse_key("subject", &path(subject)?)?;
    refuse_damaged(&st, &subject)?;
    st.ledger
        .store()
        .fork(&subject)?
        .map(Json)
        .ok_or_else(|| ApiError::not_found(format!("subject {subject} is not forked")))
}

/// One entry by hash.
#[utoipa::path(get, path = "/v1/entries/{hash}", params(("hash" = String, Path)),
    responses((status = 200, body = EntryRecord), (status = 404, body = ErrorBody)))]
async fn entry_by_hash(
    State(st): State<AppState>,
    hash: Result<Path<String>, PathRejection>,
) -> ApiResult<Json<EntryRecord>> {
    let hash: Hash = path(hash)?
        .parse()
        .map_err(|e: proto::HexError| ApiError::bad_request(e.to_string()))?;
    refuse_lost(&st, &hash)?;
    let store = st.ledger.store();
    let loc = store
        .locate(&hash)?
        .ok_or_else(|| ApiError::not_found(format!("no entry {hash}")))?;
    let e = store
        .entry(&loc.subject, loc.seq)?
        .filter(|e| e.hash() == hash)
        .ok_or_else(|| ApiError::not_found(format!("no entry {hash}")))?;
    Ok(Json(EntryRecord {
        hash,
        log_index: loc.log_index,
        hex: hex::encode(e.to_bytes()),
        entry: e,
    }))
}

#[derive(Debug, Deserialize)]
struct LogParams {
    start: Option<u64>,
    limit: Option<usize>,
}

/// Entries in this node's ingest order, as NDJSON (`LogLine` per line), from `start` (default 0),
/// at most `limit` (default and maximum 1,000).
#[utoipa::path(get, path = "/v1/log/entries",
    params(("start" = Option<u64>, Query), ("limit" = Option<usize>, Query)),
    responses((status = 200, description = "application/x-ndjson, one LogLine per line", body = LogLine)))]
async fn log_entries(
    State(st): State<AppState>,
    q: Result<Query<LogParams>, QueryRejection>,
) -> ApiResult<Response> {
    let q = query(q)?;
    let limit = q.limit.unwrap_or(MAX_PAGE).min(MAX_PAGE);
    let store = st.ledger.store();
    let mut out = String::new();
    for (log_index, hash, e) in store.log_entries(q.start.unwrap_or(0), limit)? {
        let line = LogLine {
            log_index,
            hash,
            hex: hex::encode(e.to_bytes()),
        };
        out.push_str(&serde_json::to_string(&line).unwrap_or_default());
        out.push('\n');
    }
    Ok(([(header::CONTENT_TYPE, "application/x-ndjson")], out).into_response())
}

impl From<crate::store::ProofError> for ApiError {
    fn from(e: crate::store::ProofError) -> Self {
        match e {
            crate::store::ProofError::Store(e) => e.into(),
            other => ApiError::bad_request(other.to_string()),
        }
    }
}

/// This node's latest checkpoint: a C2SP signed note (text/plain) over the Merkle root of its
/// ingest log, signed by the node key under the name `log_origin` of `/v1/node/info`.
/// `GET /v1/log/checkpoint` parameters.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct CheckpointQuery {
    /// `true`: the newest checkpoint that carries at least one witness cosignature (404 when
    /// there is none yet) instead of the checkpoint at the current size.
    #[serde(default)]
    #[param(required = false)]
    pub cosigned: bool,
}

#[utoipa::path(get, path = "/v1/log/checkpoint", params(CheckpointQuery),
    responses((status = 200, description = "text/plain; a C2SP tlog-checkpoint signed note, with the witness cosignatures collected for its size"),
        (status = 404, body = ErrorBody)))]
async fn checkpoint(
    State(st): State<AppState>,
    q: Result<Query<CheckpointQuery>, QueryRejection>,
) -> ApiResult<Response> {
    let Query(q) = q.map_err(|e| ApiError::bad_request(e.body_text()))?;
    let note = if q.cosigned {
        let c = st.checkpoints.clone();
        let l = st.ledger.clone();
        blocking(move || c.latest_cosigned(l.store()))
            .await??
            .map(|(_, n)| n)
            .ok_or_else(|| ApiError::not_found("no checkpoint has been cosigned yet"))?
    } else {
        st.checkpoints.latest(st.ledger.store())?
    };
    Ok(([(header::CONTENT_TYPE, "text/plain; charset=utf-8")], note).into_response())
}

/// `GET /v1/witness`: this node as a witness.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct WitnessInfo {
    /// The cosigner key name, `consent-witness/<node key hex>`.
    pub name: String,
    /// The C2SP cosigner vkey (type 0x04).
    pub vkey: String,
    /// The logs witnessed, with the latest checkpoint cosigned for each.
    pub logs: Vec<crate::witness::WitnessedLog>,
}

#[utoipa::path(get, path = "/v1/witness",
    responses((status = 200, body = WitnessInfo)))]
async fn witness_info(State(st): State<AppState>) -> ApiResult<Json<WitnessInfo>> {
    let w = st.witness.clone();
    let logs = blocking(move || w.logs()).await??;
    Ok(Json(WitnessInfo {
        name: st.witness.cosigner().name.clone(),
        vkey: st.witness.cosigner().to_vkey(),
        logs,
    }))
}

/// C2SP tlog-witness `add-checkpoint`: the body is `old <size>`, consistency proof lines, an
/// empty line, then the signed checkpoint. 200: the cosignature line; 409 with
/// `text/x.tlog.size`: the size this witness holds (or a root conflict); 400, 403, 404, 422 as
/// C2SP says.
#[utoipa::path(post, path = "/v1/witness/add-checkpoint", request_body(content = String, content_type = "text/plain"),
    responses((status = 200, description = "text/plain; cosignature lines"),
        (status = 400, description = "malformed request"), (status = 403, description = "bad log signature"),
        (status = 404, description = "not a consent-ledger log origin"), (status = 409, description = "old size or root conflict"),
        (status = 413, body = ErrorBody), (status = 422, description = "consistency proof does not verify")))]
async fn add_checkpoint(
    State(st): State<AppState>,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult<Response> {
    let body = body.map_err(body_rejection)?;
    if body.len() > proto::witness::MAX_ADD_BODY {
        return Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "too_large",
            format!(
                "an add-checkpoint body is at most {} bytes",
                proto::witness::MAX_ADD_BODY
            ),
        ));
    }
    let w = st.witness.clone();
    let out = blocking(move || w.add_checkpoint(&body)).await?;
    Ok(match out {
        Ok(lines) => ([(header::CONTENT_TYPE, "text/plain; charset=utf-8")], lines).into_response(),
        Err(Ok(e)) => {
            let status = StatusCode::from_u16(e.status()).unwrap_or(StatusCode::BAD_REQUEST);
            let content_type = if matches!(e, proto::witness::WitnessError::SizeConflict(_)) {
                "text/x.tlog.size"
            } else {
                "text/plain; charset=utf-8"
            };
            (
                status,
                [(header::CONTENT_TYPE, content_type)],
                crate::p2p::sync::witness_error_body(&e),
            )
                .into_response()
        }
        Err(Err(e)) => return Err(e.into()),
    })
}

#[utoipa::path(get, path = "/v1/log/split-views",
    responses((status = 200, body = Vec<crate::witness::SplitViewReport>)))]
async fn split_views(
    State(st): State<AppState>,
) -> ApiResult<Json<Vec<crate::witness::SplitViewReport>>> {
    let w = st.witness.clone();
    let v = blocking(move || w.split_views()).await??;
    Ok(Json(v))
}

/// A `Write` that sends 64 KiB chunks into a channel (for streaming a body from blocking code).
struct ChannelWriter {
    tx: mpsc::Sender<Bytes>,
    buf: Vec<u8>,
}

impl std::io::Write for ChannelWriter {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        self.buf.extend_from_slice(data);
        if self.buf.len() >= 64 * 1024 {
            self.flush()?;
        }
        Ok(data.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let chunk = Bytes::from(std::mem::take(&mut self.buf));
        self.tx
            .blocking_send(chunk)
            .map_err(|_| std::io::Error::new(std::io::ErrorKind::BrokenPipe, "client went away"))
    }
}

/// The whole ledger as a self-contained NDJSON export (see `consent audit --file`), streamed.
#[utoipa::path(get, path = "/v1/log/export",
    responses((status = 200, description = "application/x-ndjson: header, entries in log order, checkpoints, fork proofs, end")))]
async fn export(State(st): State<AppState>) -> Response {
    if st.ledger.repairing() {
        // The log lacks entries it acknowledged; an export now would look like the whole ledger.
        return ApiError::from(IngestError::Repairing).into_response();
    }
    let (tx, rx) = mpsc::channel::<Bytes>(16);
    let ledger = st.ledger.clone();
    let checkpoints = st.checkpoints.clone();
    tokio::task::spawn_blocking(move || {
        let mut w = ChannelWriter {
            tx,
            buf: Vec::new(),
        };
        let now = ledger.clock().now_ms();
        if let Err(e) =
            crate::export::write_export(ledger.store(), &checkpoints, now, &mut w, &mut |_| {})
        {
            // The status line is sent already; a truncated export has no end line, which the
            // auditor reports.
            tracing::warn!(error = %e, "export stopped");
        }
    });
    let body = axum::body::Body::from_stream(ReceiverStream::new(rx).map(Ok::<_, Infallible>));
    ([(header::CONTENT_TYPE, "application/x-ndjson")], body).into_response()
}

#[derive(Debug, Deserialize)]
struct InclusionParams {
    hash: String,
    size: Option<u64>,
}

/// The inclusion proof of entry `hash` in the tree of `size` entries (default: the current log
/// size).
#[utoipa::path(get, path = "/v1/log/proof/inclusion",
    params(("hash" = String, Query), ("size" = Option<u64>, Query)),
    responses((status = 200, body = InclusionProof), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn inclusion_proof(
    State(st): State<AppState>,
    q: Result<Query<InclusionParams>, QueryRejection>,
) -> ApiResult<Json<InclusionProof>> {
    let q = query(q)?;
    let hash: Hash = q
        .hash
        .parse()
        .map_err(|e: proto::HexError| ApiError::bad_request(e.to_string()))?;
    refuse_lost(&st, &hash)?;
    let store = st.ledger.store();
    let size = q.size.unwrap_or_else(|| store.log_size());
    let loc = store
        .locate(&hash)?
        .ok_or_else(|| ApiError::not_found(format!("no entry {hash}")))?;
    let proof = store.inclusion_proof(loc.log_index, size)?;
    Ok(Json(InclusionProof {
        hash,
        log_index: loc.log_index,
        tree_size: size,
        root: store.tree_root(size)?,
        proof,
    }))
}

#[derive(Debug, Deserialize)]
struct ConsistencyParams {
    from: u64,
    to: Option<u64>,
}

/// The consistency proof from the tree of `from` entries to the tree of `to` (default: the
/// current log size).
#[utoipa::path(get, path = "/v1/log/proof/consistency",
    params(("from" = u64, Query), ("to" = Option<u64>, Query)),
    responses((status = 200, body = ConsistencyProof), (status = 400, body = ErrorBody)))]
async fn consistency_proof(
    State(st): State<AppState>,
    q: Result<Query<ConsistencyParams>, QueryRejection>,
) -> ApiResult<Json<ConsistencyProof>> {
    let q = query(q)?;
    let store = st.ledger.store();
    let to = q.to.unwrap_or_else(|| store.log_size());
    let proof = store.consistency_proof(q.from, to)?;
    Ok(Json(ConsistencyProof {
        from: q.from,
        to,
        from_root: store.tree_root(q.from)?,
        to_root: store.tree_root(to)?,
        proof,
    }))
}

#[derive(Debug, Deserialize)]
struct EventParams {
    controller: String,
    after: Option<u64>,
    from: Option<u64>,
}

/// Whether an event kind is a ledger event (has an SSE id and a place in the log).
fn is_ledger_event(kind: &str) -> bool {
    matches!(kind, "grant" | "withdraw" | "refuse")
}

/// Server-sent events: every state change for one controller. Ledger events (grant, withdraw,
/// refuse) carry the entry's log index as their id; resume with `Last-Event-ID` or `after`
/// (events with a greater log index), or replay from `from` (inclusive, e.g. `from=0`). `expire`
/// and `fork` events carry no id.
#[utoipa::path(get, path = "/v1/events",
    params(("controller" = String, Query), ("after" = Option<u64>, Query), ("from" = Option<u64>, Query)),
    responses((status = 200, description = "text/event-stream of ConsentEvent", body = ConsentEvent)))]
async fn events(
    State(st): State<AppState>,
    headers: HeaderMap,
    q: Result<Query<EventParams>, QueryRejection>,
) -> ApiResult<Sse<impl Stream<Item = Result<Event, Infallible>>>> {
    let q = query(q)?;
    let controller = parse_key("controller", &q.controller)?;
    let last_id = headers
        .get("last-event-id")
        .map(|v| {
            v.to_str()
                .ok()
                .and_then(|s| s.trim().parse::<u64>().ok())
                .ok_or_else(|| ApiError::bad_request("Last-Event-ID: not a log index"))
        })
        .transpose()?;
    // The first log index to replay; with none of these, only new events.
    let start = last_id.or(q.after).map(|a| a.saturating_add(1)).or(q.from);
    let (tx, rx) = mpsc::channel::<ConsentEvent>(256);
    let mut live = st.ledger.subscribe();
    let ledger = st.ledger.clone();
    let shutdown = st.shutdown.clone();
    tokio::spawn(async move {
        let mut next = match start {
            Some(s) => s,
            // From the durable end: later entries are still being flushed, and their live events
            // come after their flush (or the backlog below sends them once durable).
            None => ledger.store().flushed_size(),
        };
        // Backlog from the log, in pages, then live events (skipping what the backlog covered).
        loop {
            let page = match ledger.store().log_range(next, 256) {
                Ok(p) => p,
                Err(e) => {
                    tracing::warn!(error = %e, "event backlog read failed");
                    return;
                }
            };
            if page.is_empty() {
                break;
            }
            // No event for an entry a crash could still take back.
            if let Err(e) = ledger.store().wait_durable(DURABLE_WAIT).await {
                tracing::warn!(error = %e, "event backlog stopped");
                return;
            }
            for (idx, hash) in page {
                next = idx + 1;
                if let Some(ev) = event_for(&ledger, &hash, idx, &controller) {
                    if tx.send(ev).await.is_err() {
                        return;
                    }
                }
            }
        }
        loop {
            let received = tokio::select! {
                biased;
                () = shutdown.cancelled() => return,
                r = live.recv() => r,
            };
            match received {
                Ok(ev) => {
                    let ledger_event = is_ledger_event(&ev.kind);
                    if ev.controller != controller || (ledger_event && ev.log_index < next) {
                        continue;
                    }
                    if ledger_event {
                        next = ev.log_index + 1;
                    }
                    if tx.send(ev).await.is_err() {
                        return;
                    }
                }
                // A slow reader missed events: end the stream; the client resumes by id.
                Err(_) => return,
            }
        }
    });
    let stream = ReceiverStream::new(rx).map(|ev| {
        let data = serde_json::to_string(&ev).unwrap_or_default();
        let e = Event::default().event(ev.kind.clone()).data(data);
        Ok(if is_ledger_event(&ev.kind) {
            e.id(ev.log_index.to_string())
        } else {
            e
        })
    });
    Ok(Sse::new(stream).keep_alive(KeepAlive::new().interval(Duration::from_secs(15))))
}

fn event_for(
    ledger: &Ledger,
    hash: &Hash,
    idx: u64,
    controller: &PublicKey,
) -> Option<ConsentEvent> {
    let store = ledger.store();
    let loc = store.locate(hash).ok()??;
    let e = store.entry(&loc.subject, loc.seq).ok()??;
    let k = e.content.body.consent()?;
    (k.controller == *controller).then(|| ConsentEvent {
        kind: e.kind().as_str().to_owned(),
        subject: e.subject(),
        controller: k.controller,
        purposes: k.purposes.clone(),
        seq: e.seq(),
        hash: *hash,
        log_index: idx,
        valid_until: k.valid_until,
    })
}

/// Liveness: 200 while the node serves; `writable` false after a storage failure.
#[utoipa::path(get, path = "/healthz", responses((status = 200, description = "{status, writable}")))]
async fn healthz(State(st): State<AppState>) -> Json<serde_json::Value> {
    Json(serde_json::json!({"status": "ok", "writable": st.ledger.writable()}))
}

/// The node's key, version and counters.
#[utoipa::path(get, path = "/v1/node/info", responses((status = 200, body = NodeInfo)))]
async fn node_info(State(st): State<AppState>) -> Json<NodeInfo> {
    let l = &st.ledger;
    Json(NodeInfo {
        node_key: st.node_key,
        version: env!("CARGO_PKG_VERSION").to_owned(),
        entry_version: proto::entry::VERSION,
        vocabulary: "dpv-2.0/consent-ledger-v1".to_owned(),
        log_size: l.store().log_size(),
        subjects: l.subjects(),
        pending: l.pending(),
        forks: l.forks(),
        writable: l.writable(),
        log_origin: st.checkpoints.origin().to_owned(),
        log_vkey: st.checkpoints.vkey(),
        peer_id: st
            .net
            .as_ref()
            .map(|n| n.peer_id().to_string())
            .unwrap_or_default(),
        p2p_addrs: st
            .net
            .as_ref()
            .map(crate::p2p::NetHandle::listen_addrs)
            .unwrap_or_default(),
        witness_vkey: st.witness.cosigner().to_vkey(),
        split_views: l.store().split_view_count() as u64,
        stale: l.stale(),
        last_sync_ms: l.last_fresh_ms(),
        repairing: l.repairing(),
        damaged_subjects: l.damaged_count(),
    })
}

/// The connected peers (empty when replication is off).
#[utoipa::path(get, path = "/v1/peers", responses((status = 200, body = [PeerInfo])))]
async fn peers(State(st): State<AppState>) -> Json<Vec<PeerInfo>> {
    match &st.net {
        Some(n) => Json(n.peers().await),
        None => Json(Vec::new()),
    }
}

/// Blocks a peer: disconnects it and refuses it until unblocked (an operator's way to cut a
/// link, e.g. for partition drills). 204.
#[utoipa::path(post, path = "/v1/peers/{peer_id}/block",
    params(("peer_id" = String, Path, description = "libp2p peer id")),
    responses((status = 204, description = "blocked"), (status = 400, body = ErrorBody), (status = 503, body = ErrorBody)))]
async fn block_peer(
    State(st): State<AppState>,
    peer_id: Result<Path<String>, PathRejection>,
) -> ApiResult<StatusCode> {
    set_blocked(&st, &path(peer_id)?, true).await
}

/// Unblocks a peer and dials it again. 204.
#[utoipa::path(delete, path = "/v1/peers/{peer_id}/block",
    params(("peer_id" = String, Path, description = "libp2p peer id")),
    responses((status = 204, description = "unblocked"), (status = 400, body = ErrorBody), (status = 503, body = ErrorBody)))]
async fn unblock_peer(
    State(st): State<AppState>,
    peer_id: Result<Path<String>, PathRejection>,
) -> ApiResult<StatusCode> {
    set_blocked(&st, &path(peer_id)?, false).await
}

/// The p2p handle, or 503 when replication is off.
fn replication(st: &AppState) -> ApiResult<&crate::p2p::NetHandle> {
    st.net.as_ref().ok_or_else(|| {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            "replication is off on this node",
        )
    })
}

async fn set_blocked(st: &AppState, peer_id: &str, block: bool) -> ApiResult<StatusCode> {
    let peer: libp2p::PeerId = peer_id
        .parse()
        .map_err(|e| ApiError::bad_request(format!("peer_id: not a libp2p peer id: {e}")))?;
    let net = replication(st)?;
    net.block(peer, block).await;
    Ok(StatusCode::NO_CONTENT)
}

/// `POST /v1/peers` body.
#[derive(Debug, serde::Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DialRequest {
    /// A multiaddr, e.g. `/ip4/127.0.0.1/tcp/7412/p2p/12D3Koo...`.
    pub addr: String,
}

/// Dials a peer (an operator's way to join two networks); 202 once the dial has started.
#[utoipa::path(post, path = "/v1/peers", request_body = DialRequest,
    responses((status = 202, description = "dialling"), (status = 400, body = ErrorBody), (status = 503, body = ErrorBody)))]
async fn dial_peer(
    State(st): State<AppState>,
    body: Result<Json<Object<DialRequest>>, JsonRejection>,
) -> ApiResult<StatusCode> {
    let Json(Object(req)) = body.map_err(json_rejection)?;
    let addr: libp2p::Multiaddr = req
        .addr
        .parse()
        .map_err(|e| ApiError::bad_request(format!("addr: not a multiaddr: {e}")))?;
    let net = replication(&st)?;
    net.dial(addr)
        .await
        .map_err(|e| ApiError::bad_request(format!("cannot dial: {e}")))?;
    Ok(StatusCode::ACCEPTED)
}

/// Prometheus text exposition.
#[utoipa::path(get, path = "/metrics", responses((status = 200, description = "Prometheus text format")))]
async fn metrics(State(st): State<AppState>) -> Response {
    let m = st.ledger.metrics();
    m.store_bytes.set(st.ledger.store().size_on_disk() as i64);
    m.log_size.set(st.ledger.store().flushed_size() as i64);
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        m.render(),
    )
        .into_response()
}

async fn openapi() -> Response {
    let doc = ApiDoc::openapi();
    match doc.to_pretty_json() {
        Ok(s) => ([(header::CONTENT_TYPE, "application/json")], s).into_response(),
        Err(e) => ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string())
            .into_response(),
    }
}
