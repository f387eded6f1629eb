//! The node's HTTP API, as the CLI uses it, and the verification of everything it serves.
//!
//! Nothing a node serves is trusted: a chain is decoded from its canonical hex, compared with its
//! JSON form and its claimed hash, and verified from seq 1 with `proto::verify_chain`; a single
//! entry is verified the same way; every answer must name what was asked. A failure is
//! [`Error::Unverified`] and names the entry and the reason.

use std::io::Read;
use std::time::Duration;

use proto::api::{
    ChainResponse, CheckQuery, CheckResponse, EntryRecord, ErrorBody, SubmitResponse,
};
use proto::chain::{verify_chain, ChainHead};
use proto::entry::Entry;
use proto::keys::{Hash, PublicKey};
use serde::de::DeserializeOwned;

use crate::error::{Error, Result};

/// The default node address (the node's own default).
pub const DEFAULT_NODE: &str = "http://127.0.0.1:7411";
/// Entries per chain page (the node's maximum).
pub const PAGE: usize = 1000;
/// Largest answer body read (a full chain page is about 2 MB of JSON).
const MAX_ANSWER: u64 = 16 * 1024 * 1024;
/// Most entries of one chain this client will fetch.
const MAX_CHAIN: usize = 1_000_000;
/// Largest export `consent audit` reads (about 6 million entries).
pub const MAX_EXPORT: u64 = 2 * 1024 * 1024 * 1024;
/// How long an export download may go without receiving a byte (or sending one) before it is
/// given up as broken off. There is no limit on the whole download: a large ledger takes as long
/// as it takes, as long as it keeps coming.
pub const EXPORT_IDLE: Duration = Duration::from_secs(30);

/// A client for one node.
#[derive(Clone, Debug)]
pub struct NodeClient {
    url: String,
    agent: ureq::Agent,
}

/// A subject's chain as served by a node, verified from seq 1.
#[derive(Clone, Debug)]
pub struct VerifiedChain {
    /// The subject.
    pub subject: PublicKey,
    /// Every entry, seq 1 first.
    pub entries: Vec<Entry>,
    /// Each entry's position in the node's ingest log.
    pub log_indexes: Vec<u64>,
    /// The verified head (none for an empty chain).
    pub head: Option<ChainHead>,
    /// Whether the node holds a fork proof for this subject (then every check denies).
    pub forked: bool,
}

impl VerifiedChain {
    /// Head seq (0 for an empty chain).
    pub fn head_seq(&self) -> u64 {
        self.head.as_ref().map_or(0, |h| h.seq)
    }

    /// Fails with [`Error::Fork`] when the node reports the chain as forked.
    ///
    /// # Errors
    /// [`Error::Fork`].
    pub fn require_not_forked(&self) -> Result<()> {
        if self.forked {
            return Err(Error::Fork(format!(
                "the node holds a fork proof for subject {}: its keys signed two entries at one \
                 seq; every consent check for it denies, and nothing more is signed on it",
                self.subject
            )));
        }
        Ok(())
    }
}

impl NodeClient {
    /// A client for the node at `url` (e.g. `http://127.0.0.1:7411`), with a 5 s connect and a
    /// 30 s overall timeout.
    ///
    /// # Errors
    /// [`Error::Usage`] unless the URL starts with `http://` (this build has no TLS).
    pub fn new(url: &str) -> Result<NodeClient> {
        let url = url.trim_end_matches('/').to_owned();
        if !url.starts_with("http://") {
            return Err(Error::Usage(format!(
                "node URL {url:?} must start with http:// (this build has no TLS)"
            )));
        }
        let agent = ureq::AgentBuilder::new()
            .timeout_connect(Duration::from_secs(5))
            .timeout(Duration::from_secs(30))
            .build();
        Ok(NodeClient { url, agent })
    }

    /// The base URL.
    pub fn url(&self) -> &str {
        &self.url
    }

    fn send(&self, r: std::result::Result<ureq::Response, ureq::Error>) -> Result<ureq::Response> {
        match r {
            Ok(resp) => Ok(resp),
            Err(ureq::Error::Status(status, resp)) => Err(self.status_error(status, resp)),
            Err(ureq::Error::Transport(t)) => Err(Error::NodeUnreachable {
                url: self.url.clone(),
                message: t.to_string(),
            }),
        }
    }

    fn status_error(&self, status: u16, resp: ureq::Response) -> Error {
        let body: Option<ErrorBody> = read_json(resp).ok();
        let (code, message) = body.map_or_else(
            || ("http".to_owned(), format!("HTTP status {status}")),
            |b| (b.error, b.message),
        );
        let url = self.url.clone();
        match status {
            409 => Error::Fork(format!("node {url} refused the entry: {message}")),
            500..=599 => Error::NodeUnavailable {
                url,
                status,
                code,
                message,
            },
            _ => Error::NodeRefused {
                url,
                status,
                code,
                message,
            },
        }
    }

    /// Fetches `subject`'s whole chain (page by page) and verifies it.
    ///
    /// # Errors
    /// [`Error::NodeUnreachable`], [`Error::NodeUnavailable`], [`Error::NodeRefused`];
    /// [`Error::Unverified`] naming the first entry that does not verify and why.
    pub fn chain(&self, subject: &PublicKey) -> Result<VerifiedChain> {
        let mut entries: Vec<Entry> = Vec::new();
        let mut log_indexes = Vec::new();
        let mut forked = false;
        let mut head_seq;
        loop {
            let from = entries.len() as u64 + 1;
            let page: ChainResponse = read_json(
                self.send(
                    self.agent
                        .get(&format!("{}/v1/subjects/{subject}/entries", self.url))
                        .query("from_seq", &from.to_string())
                        .query("limit", &PAGE.to_string())
                        .call(),
                )?,
            )?;
            if page.subject != *subject {
                return Err(Error::Unverified(format!(
                    "asked for subject {subject}, the node answered for {}",
                    page.subject
                )));
            }
            if page.entries.len() > PAGE {
                return Err(Error::Unverified(format!(
                    "a page of {} entries, more than the limit {PAGE} asked for",
                    page.entries.len()
                )));
            }
            forked |= page.forked;
            head_seq = page.head_seq;
            if page.entries.is_empty() {
                break;
            }
            for rec in &page.entries {
                let e = check_record(rec)?;
                entries.push(e);
                log_indexes.push(rec.log_index);
            }
            if entries.len() as u64 >= head_seq {
                break;
            }
            if entries.len() > MAX_CHAIN {
                return Err(Error::Unverified(format!(
                    "the chain of {subject} is longer than {MAX_CHAIN} entries"
                )));
            }
        }
        if (entries.len() as u64) < head_seq {
            return Err(Error::Unverified(format!(
                "the node says the head of {subject} is seq {head_seq} but served only {} entries",
                entries.len()
            )));
        }
        let head =
            if entries.is_empty() {
                None
            } else {
                Some(verify_chain(&entries).map_err(|e| {
                    Error::Unverified(format!("the chain of subject {subject}: {e}"))
                })?)
            };
        Ok(VerifiedChain {
            subject: *subject,
            entries,
            log_indexes,
            head,
            forked,
        })
    }

    /// Submits `entry` (canonical bytes) and checks that the answer names it.
    ///
    /// # Errors
    /// [`Error::Fork`] on HTTP 409; the transport and status errors of [`NodeClient::chain`];
    /// [`Error::Unverified`] when the answer names another entry.
    pub fn submit(&self, entry: &Entry) -> Result<SubmitResponse> {
        let resp: SubmitResponse = read_json(
            self.send(
                self.agent
                    .post(&format!("{}/v1/entries", self.url))
                    .set("Content-Type", "application/octet-stream")
                    .send_bytes(&entry.to_bytes()),
            )?,
        )?;
        let hash = entry.hash();
        if resp.hash != hash || resp.subject != entry.subject() || resp.seq != entry.seq() {
            return Err(Error::Unverified(format!(
                "submitted entry {hash} (seq {}), the node answered for {} (seq {})",
                entry.seq(),
                resp.hash,
                resp.seq
            )));
        }
        Ok(resp)
    }

    /// Fetches one entry by hash and verifies it on its own (form, signature, hash).
    ///
    /// # Errors
    /// As [`NodeClient::chain`]; [`Error::NodeRefused`] (404) when the node does not have it.
    pub fn entry(&self, hash: &Hash) -> Result<(Entry, u64)> {
        let rec: EntryRecord = read_json(
            self.send(
                self.agent
                    .get(&format!("{}/v1/entries/{hash}", self.url))
                    .call(),
            )?,
        )?;
        if rec.hash != *hash {
            return Err(Error::Unverified(format!(
                "asked for entry {hash}, the node answered with {}",
                rec.hash
            )));
        }
        let e = check_record(&rec)?;
        proto::verify_entry(&e)
            .map_err(|err| Error::Unverified(format!("entry {hash} (seq {}): {err}", e.seq())))?;
        Ok((e, rec.log_index))
    }

    /// Asks one consent question and checks that the answer is to that question.
    ///
    /// # Errors
    /// As [`NodeClient::chain`]; [`Error::NodeRefused`] for a question the node rejects.
    pub fn check(&self, q: &CheckQuery) -> Result<CheckResponse> {
        let mut req = self
            .agent
            .get(&format!("{}/v1/consent/check", self.url))
            .query("subject", &q.subject)
            .query("controller", &q.controller)
            .query("purpose", &q.purpose);
        if let Some(at) = &q.at {
            req = req.query("at", at);
        }
        if q.evidence {
            req = req.query("evidence", "true");
        }
        let r: CheckResponse = read_json(self.send(req.call())?)?;
        if r.subject.to_string() != q.subject
            || r.controller.to_string() != q.controller
            || r.purpose != q.purpose
        {
            return Err(Error::Unverified(format!(
                "asked about ({}, {}, {}), the node answered about ({}, {}, {})",
                q.subject, q.controller, q.purpose, r.subject, r.controller, r.purpose
            )));
        }
        let given = r.status == proto::Status::Given.dpv();
        if given != (r.decision == proto::api::Verdict::Allow) {
            return Err(Error::Unverified(format!(
                "the node's decision {:?} contradicts its status {}",
                r.decision, r.status
            )));
        }
        if q.evidence && r.evidence.is_none() {
            return Err(Error::Unverified(
                "asked for evidence, the node answered without it".into(),
            ));
        }
        Ok(r)
    }

    /// Starts downloading the node's export (`GET /v1/log/export`, NDJSON) and returns the body
    /// as it streams in (the caller reads it, and should stop after [`MAX_EXPORT`] bytes). A read
    /// that waits [`EXPORT_IDLE`] for data fails (a node that stalls is reported, not waited on).
    ///
    /// # Errors
    /// [`Error::NodeUnreachable`], [`Error::NodeUnavailable`], [`Error::NodeRefused`].
    pub fn export(&self) -> Result<impl Read + Send> {
        self.export_idle(EXPORT_IDLE)
    }

    fn export_idle(&self, idle: Duration) -> Result<impl Read + Send> {
        // Idle timeouts, no overall deadline: ureq lets a request's deadline override them.
        let agent = ureq::AgentBuilder::new()
            .timeout_connect(Duration::from_secs(5))
            .timeout_read(idle)
            .timeout_write(idle)
            .build();
        let resp = self.send(agent.get(&format!("{}/v1/log/export", self.url)).call())?;
        Ok(resp.into_reader())
    }
}

fn read_json<T: DeserializeOwned>(resp: ureq::Response) -> Result<T> {
    let reader = resp.into_reader().take(MAX_ANSWER);
    serde_json::from_reader(reader)
        .map_err(|e| Error::Unverified(format!("the node's answer is not the expected JSON: {e}")))
}

/// Decodes a served record's canonical hex and checks that it is the same entry as its JSON form
/// and that it has the hash the node claims. The signature is checked by the caller.
///
/// # Errors
/// [`Error::Unverified`].
pub fn check_record(rec: &EntryRecord) -> Result<Entry> {
    let seq = rec.entry.seq();
    let bytes = hex::decode(&rec.hex).map_err(|_| {
        Error::Unverified(format!("entry at seq {seq}: its canonical form is not hex"))
    })?;
    let e = Entry::from_bytes(&bytes).map_err(|err| {
        Error::Unverified(format!(
            "entry at seq {seq}: its canonical form does not decode: {err}"
        ))
    })?;
    if e != rec.entry {
        return Err(Error::Unverified(format!(
            "entry at seq {seq}: its JSON form and its canonical bytes differ"
        )));
    }
    let h = e.hash();
    if h != rec.hash {
        return Err(Error::Unverified(format!(
            "entry at seq {seq}: the node says its hash is {}, but it hashes to {h}",
            rec.hash
        )));
    }
    Ok(e)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::commands::tests::chain;

    /// A server on loopback that answers every connection with `reply`, then holds it open
    /// without a further byte for a minute.
    fn stalling_server(reply: &'static [u8]) -> String {
        use std::io::Write;
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().expect("addr");
        std::thread::spawn(move || {
            for mut c in listener.incoming().flatten() {
                let _ = c.write_all(reply);
                std::thread::spawn(move || {
                    std::thread::sleep(Duration::from_secs(60));
                    drop(c);
                });
            }
        });
        format!("http://{addr}")
    }

    #[test]
    fn an_export_that_stalls_fails_instead_of_hanging() {
        let idle = Duration::from_millis(300);
        // No answer at all.
        let started = std::time::Instant::now();
        let silent = NodeClient::new(&stalling_server(b"")).expect("client");
        let err = silent
            .export_idle(idle)
            .err()
            .expect("no answer is an error");
        assert!(matches!(err, Error::NodeUnreachable { .. }), "{err:?}");
        // Headers and a first line, then nothing.
        let stalled = NodeClient::new(&stalling_server(
            b"HTTP/1.1 200 OK\r\ncontent-type: application/x-ndjson\r\ntransfer-encoding: chunked\r\n\r\n5\r\n{}\n\r\n",
        ))
        .expect("client");
        let mut body = stalled.export_idle(idle).expect("the headers arrive");
        let mut text = String::new();
        let read = body.read_to_string(&mut text);
        assert!(read.is_err(), "a stalled export must fail, read {text:?}");
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "{:?}",
            started.elapsed()
        );
    }

    fn record(e: &Entry) -> EntryRecord {
        EntryRecord {
            hash: e.hash(),
            log_index: 0,
            hex: hex::encode(e.to_bytes()),
            entry: e.clone(),
        }
    }

    #[test]
    fn served_records_must_agree_with_their_bytes_and_hash() {
        let c = chain(2);
        let good = record(&c.entries[1]);
        assert_eq!(check_record(&good).ok().as_ref(), Some(&c.entries[1]));
        let mut wrong_hash = good.clone();
        wrong_hash.hash = Hash::from_bytes([1; 32]);
        let mut other_bytes = good.clone();
        other_bytes.hex = record(&c.entries[0]).hex;
        let mut not_hex = good.clone();
        not_hex.hex = "zz".into();
        let mut truncated = good.clone();
        truncated.hex.truncate(40);
        for (name, r, why) in [
            ("wrong hash", wrong_hash, "hashes to"),
            ("other bytes", other_bytes, "differ"),
            ("not hex", not_hex, "not hex"),
            ("truncated", truncated, "does not decode"),
        ] {
            match check_record(&r) {
                Err(Error::Unverified(m)) => assert!(m.contains(why), "{name}: {m}"),
                other => panic!("{name}: expected Unverified, got {other:?}"),
            }
        }
    }
}
