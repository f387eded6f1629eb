//! Every bad input the API names, in one table: each must get its status and error code with a
//! JSON `{error, message}` body, and none may change the node (log, counters, chains).

use proto::entry::{Body, Entry};
use proto::keys::{Hash, PublicKey};
use serde_json::{json, Value};
use tests::{consent, key, sign_as, Chain, Reply, TestNode};

/// BUG (node, http.rs): a path parameter that is not valid UTF-8 after percent-decoding (e.g.
/// `GET /v1/entries/%FF`) is rejected by axum's `Path<String>` extractor with
/// `400 text/plain` "Invalid URL: Invalid UTF-8 in `hash`", not the JSON error body. The status
/// is still asserted; only the body check is skipped while this is true. Set to false once fixed.
const KNOWN_BUG_PATH_REJECTION_BODY_IS_NOT_JSON: bool = false;

/// The node's request-body limit (`node::http::MAX_BODY`).
const MAX_BODY: usize = 512 * 1024;

/// One bad request and what the node must answer.
struct Case {
    name: &'static str,
    method: &'static str,
    path: String,
    headers: Vec<(&'static str, String)>,
    body: Option<Vec<u8>>,
    status: u16,
    code: &'static str,
    /// A piece of the message, when the message must say something specific.
    message_has: Option<&'static str>,
    /// Set when a known node bug makes the body not JSON: skip the body check (the status is
    /// still asserted) and fail if the bug no longer reproduces.
    known_bug: Option<(&'static str, bool)>,
}

impl Case {
    fn get(name: &'static str, path: String, status: u16, code: &'static str) -> Case {
        Case {
            name,
            method: "GET",
            path,
            headers: vec![],
            body: None,
            status,
            code,
            message_has: None,
            known_bug: None,
        }
    }

    fn post(
        name: &'static str,
        path: &str,
        content_type: Option<&str>,
        body: Vec<u8>,
        status: u16,
        code: &'static str,
    ) -> Case {
        Case {
            name,
            method: "POST",
            path: path.to_owned(),
            headers: content_type
                .map(|ct| vec![("Content-Type", ct.to_owned())])
                .unwrap_or_default(),
            body: Some(body),
            status,
            code,
            message_has: None,
            known_bug: None,
        }
    }

    fn entry_bytes(name: &'static str, body: Vec<u8>, status: u16, code: &'static str) -> Case {
        Self::post(
            name,
            "/v1/entries",
            Some("application/octet-stream"),
            body,
            status,
            code,
        )
    }

    fn entry_json(name: &'static str, body: Vec<u8>) -> Case {
        Self::post(
            name,
            "/v1/entries",
            Some("application/json"),
            body,
            400,
            "invalid_entry",
        )
    }

    fn entry(name: &'static str, e: &Entry) -> Case {
        Self::entry_json(name, serde_json::to_vec(e).expect("entry JSON"))
    }

    fn saying(mut self, piece: &'static str) -> Case {
        self.message_has = Some(piece);
        self
    }

    fn header(mut self, name: &'static str, value: &str) -> Case {
        self.headers.push((name, value.to_owned()));
        self
    }

    fn method(mut self, method: &'static str) -> Case {
        self.method = method;
        self
    }

    fn known_bug(mut self, flag_name: &'static str, flag: bool) -> Case {
        self.known_bug = Some((flag_name, flag));
        self
    }

    /// Runs the case; `Err` says how the answer differs from the expectation.
    fn run(&self, node: &TestNode) -> Result<(), String> {
        let headers: Vec<(&str, &str)> =
            self.headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let r: Reply = node.try_request(self.method, &self.path, &headers, self.body.as_deref())?;
        if r.status != self.status {
            return Err(format!(
                "status {} (expected {}), body {:?}",
                r.status, self.status, r.body
            ));
        }
        let parsed = r.error_body();
        match (self.known_bug, parsed) {
            (Some((flag, true)), Ok(_)) => Err(format!(
                "{flag} looks fixed (the body is the JSON error body now): set it to false"
            )),
            (Some((_, true)), Err(_)) => Ok(()),
            (_, Err(e)) => Err(e),
            (_, Ok((code, message))) => {
                if code != self.code {
                    return Err(format!(
                        "error code {code:?} (expected {:?}), message {message:?}",
                        self.code
                    ));
                }
                match self.message_has {
                    Some(piece) if !message.contains(piece) => {
                        Err(format!("message {message:?} does not contain {piece:?}"))
                    }
                    _ => Ok(()),
                }
            }
        }
    }
}

fn with_field(e: &Entry, field: &str, value: Value) -> Vec<u8> {
    let mut v = serde_json::to_value(e).expect("entry JSON");
    v[field] = value;
    serde_json::to_vec(&v).expect("JSON")
}

fn without_field(e: &Entry, field: &str) -> Vec<u8> {
    let mut v = serde_json::to_value(e).expect("entry JSON");
    v.as_object_mut().expect("a JSON object").remove(field);
    serde_json::to_vec(&v).expect("JSON")
}

#[test]
fn every_bad_input_is_refused_with_its_status_and_code_and_changes_nothing() {
    let node = TestNode::new();
    let brand = key("brand/a").public_key();
    let stranger = key("stranger");

    // Subject A rotated its key at seq 2; subject B has two entries.
    let mut a = Chain::new("bad-a");
    let retired = a.signing.clone();
    let a_entries = vec![
        a.grant(brand, &["dpv:Marketing"]),
        a.rotate(key("bad-a/new"), &key("bad-a/next-recovery")),
        a.grant(brand, &["dpv:ServiceProvision"]),
    ];
    let mut b = Chain::new("bad-b");
    let b_entries = vec![
        b.grant(brand, &["dpv:Marketing"]),
        b.withdraw(brand, &["dpv:Marketing"]),
    ];
    node.submit_all(&a_entries);
    node.submit_all(&b_entries);
    let info_before = node.info();
    let log_before = node.get("/v1/log/entries").expect_status(200).body;

    // B's next entry, valid: every tampered variant below must be refused.
    let b3 = b.peek(Body::Grant(consent(brand, &["dpv:ServiceProvision"])));
    let b3_bytes = b3.to_bytes();
    let mut flipped_sig = b3_bytes.clone();
    let last = flipped_sig.len() - 1;
    flipped_sig[last - 20] ^= 0x01;
    let mut flipped_content = b3_bytes.clone();
    flipped_content[40] ^= 0x01;
    let mut trailing = b3_bytes.clone();
    trailing.push(0);
    let flipped_sig_entry = {
        let mut e = b3.clone();
        let mut sig = e.signature.to_bytes();
        sig[10] ^= 0x80;
        e.signature = proto::keys::Signature::from_bytes(sig);
        e
    };

    let wrong_key_seq1 = {
        let c = Chain::new("bad-c").content(Body::Grant(consent(brand, &["dpv:Marketing"])));
        sign_as(c, &stranger) // names the subject as signer, signed by someone else
    };
    let stranger_next = {
        let mut c = b.content(Body::Grant(consent(brand, &["dpv:Marketing"])));
        c.signer = stranger.public_key();
        sign_as(c, &stranger)
    };
    let retired_key_after_rotation = {
        let mut c = a.content(Body::Grant(consent(brand, &["dpv:Marketing"])));
        c.signer = retired.public_key();
        sign_as(c, &retired)
    };
    let rotation_by_non_recovery_key = {
        let mut c = a.content(Body::Rotate(proto::entry::Rotation {
            new_key: stranger.public_key(),
            next_recovery: Hash::from_bytes([1; 32]),
        }));
        c.signer = stranger.public_key();
        sign_as(c, &stranger)
    };
    let prev_mismatch = {
        let mut c = b.content(Body::Grant(consent(brand, &["dpv:Marketing"])));
        c.prev = Hash::from_bytes([9; 32]);
        c.sign(&b.signing).expect("signable")
    };
    let time_went_back = {
        let mut c = b.content(Body::Grant(consent(brand, &["dpv:Marketing"])));
        c.issued_at = b_entries[1].content.issued_at - 1;
        c.sign(&b.signing).expect("signable")
    };
    let stranger_at_taken_seq = {
        let mut short = b.clone();
        short.entries.truncate(1);
        let mut c = short.content(Body::Refuse(consent(brand, &[])));
        c.signer = stranger.public_key();
        sign_as(c, &stranger)
    };
    let b3_json = serde_json::to_vec(&b3).expect("entry JSON");
    // b3's members by position in a JSON array (docs/PROTOCOL.md section 9: an entry is an
    // object; serde's derived parsers also take this form, and the node once stored it).
    let b3_positional = {
        let v = serde_json::to_value(&b3).expect("entry JSON");
        let members: Vec<Value> = proto::json::MEMBERS
            .iter()
            .map(|k| v.get(*k).cloned().unwrap_or(Value::Null))
            .collect();
        serde_json::to_vec(&members).expect("JSON")
    };

    let s = b.id();
    let ctl = brand;
    let check = |query: &str| format!("/v1/consent/check?{query}");
    let good = format!("subject={s}&controller={ctl}&purpose=dpv:Marketing");
    let bad_subject = "zz".repeat(32);
    let questions = |n: usize| -> Vec<u8> {
        let q = json!({"subject": s.to_string(), "controller": ctl.to_string(), "purpose": "dpv:Marketing"});
        serde_json::to_vec(&json!({ "questions": vec![q; n] })).expect("JSON")
    };
    // Exactly one byte over the node's request limit (http::MAX_BODY): the node reads it all
    // before refusing, so the client is never cut off while still sending (which would make the
    // client, not the node, fail with a broken pipe).
    let over_request_limit = vec![b' '; MAX_BODY + 1];
    let events = |controller: &PublicKey| format!("/v1/events?controller={controller}");

    // One row per bad input: name, request, expected status and error code.
    #[rustfmt::skip]
    let cases = vec![
        // -- entry bodies --------------------------------------------------------------------
        Case::entry_bytes("garbage bytes", b"\x00\xffnot an entry at all".to_vec(), 400, "invalid_entry"),
        Case::entry_bytes("empty binary body", vec![], 400, "invalid_entry"),
        Case::post("empty JSON body", "/v1/entries", Some("application/json"), vec![], 400, "invalid_entry"),
        Case::entry_bytes("truncated entry (last byte cut)", b3_bytes[..b3_bytes.len() - 1].to_vec(), 400, "invalid_entry"),
        Case::entry_bytes("truncated entry (half)", b3_bytes[..b3_bytes.len() / 2].to_vec(), 400, "invalid_entry"),
        Case::entry_bytes("one trailing byte after the entry", trailing, 400, "invalid_entry").saying("trailing"),
        Case::entry_bytes("flipped signature byte (binary)", flipped_sig, 400, "invalid_entry"),
        Case::entry_bytes("flipped content byte (binary)", flipped_content, 400, "invalid_entry"),
        Case::entry("flipped signature byte (JSON)", &flipped_sig_entry),
        Case::entry_bytes("binary body over 4096 bytes", vec![1; 4097], 413, "too_large"),
        Case::entry_json("JSON array instead of an entry", b"[1,2,3]".to_vec()),
        Case::entry_json("a valid entry's members by position in a JSON array", b3_positional).saying("a JSON object"),
        Case::entry_json("JSON entry with trailing garbage", [b3_json.clone(), b"x".to_vec()].concat()),
        Case::post("JSON body over the 64 KiB entry limit", "/v1/entries", Some("application/json"), vec![b' '; 100_000], 413, "too_large"),
        Case::post("JSON body over the 512 KiB request limit", "/v1/entries", Some("application/json"), over_request_limit.clone(), 413, "too_large"),
        Case::entry_bytes("binary body over the 512 KiB request limit", over_request_limit.clone(), 413, "too_large"),
        Case::entry_json("unknown JSON field", with_field(&b3, "comment", json!("hello"))).saying("unknown field"),
        Case::entry_json("missing JSON field", without_field(&b3, "signature")),
        Case::post("wrong content type (text/plain)", "/v1/entries", Some("text/plain"), b3_json.clone(), 415, "unsupported_media_type"),
        Case::post("wrong content type (form)", "/v1/entries", Some("application/x-www-form-urlencoded"), b3_json.clone(), 415, "unsupported_media_type"),
        Case::post("content type that only begins like JSON", "/v1/entries", Some("application/jsonl"), b3_json.clone(), 415, "unsupported_media_type"),
        Case::post("content type that only begins like bytes", "/v1/entries", Some("application/octet-streamx"), b3_json.clone(), 415, "unsupported_media_type"),
        Case::entry("seq 1 signed by a key other than the subject's", &wrong_key_seq1),
        Case::entry("next entry signed by a stranger naming itself", &stranger_next),
        Case::entry("entry signed by the retired key after a rotation", &retired_key_after_rotation),
        Case::entry("rotation signed by a key that is not the committed recovery key", &rotation_by_non_recovery_key),
        Case::entry("prev mismatch at the next seq", &prev_mismatch),
        Case::entry("issued_at going backwards", &time_went_back),
        Case::entry("a stranger's entry at a taken seq (not a fork)", &stranger_at_taken_seq),
        Case::entry_json("unknown purpose code in an entry", with_field(&b3, "purposes", json!(["dpv:NoSuchPurpose"]))).saying("dpv:NoSuchPurpose"),
        Case::entry_json("unsorted purposes in an entry", with_field(&b3, "purposes", json!(["dpv:ServiceProvision", "dpv:Marketing"]))),
        Case::entry_json("grant with no purposes", with_field(&b3, "purposes", json!([]))),
        Case::entry_json("unknown entry version", with_field(&b3, "version", json!(2))),
        Case::entry_json("seq 0", with_field(&b3, "seq", json!(0))),
        Case::entry_json("uppercase hex subject in an entry", with_field(&b3, "subject", json!(s.to_string().to_uppercase()))),
        // -- queries -------------------------------------------------------------------------
        Case::get("bad hex subject in a check", check(&format!("subject={bad_subject}&controller={ctl}&purpose=dpv:Marketing")), 400, "bad_request").saying("subject"),
        Case::get("short hex controller in a check", check(&format!("subject={s}&controller=abcd&purpose=dpv:Marketing")), 400, "bad_request").saying("controller"),
        Case::get("uppercase hex controller in a check", check(&format!("subject={s}&controller={}&purpose=dpv:Marketing", ctl.to_string().to_uppercase())), 400, "bad_request").saying("lowercase"),
        Case::get("missing purpose in a check", check(&format!("subject={s}&controller={ctl}")), 400, "bad_request"),
        Case::get("unknown purpose in a check", check(&format!("subject={s}&controller={ctl}&purpose=dpv:Marketting")), 400, "bad_request").saying("did you mean"),
        Case::get("at= not RFC 3339", check(&format!("{good}&at=yesterday")), 400, "bad_request").saying("RFC 3339"),
        Case::get("at= a bare date", check(&format!("{good}&at=2026-01-01")), 400, "bad_request").saying("RFC 3339"),
        Case::get("at= before 1970", check(&format!("{good}&at=1969-12-31T23:59:59Z")), 400, "bad_request").saying("1970"),
        Case::get("bad hex in /v1/entries/{hash}", "/v1/entries/xyz".into(), 400, "bad_request").saying("hash"),
        Case::get("bad subject in /v1/subjects/{s}/entries", format!("/v1/subjects/{bad_subject}/entries"), 400, "bad_request"),
        Case::get("bad subject in /v1/subjects/{s}/consents", "/v1/subjects/nope/consents".into(), 400, "bad_request"),
        Case::get("from_seq not a number", format!("/v1/subjects/{s}/entries?from_seq=two"), 400, "bad_request"),
        Case::get("limit negative", format!("/v1/subjects/{s}/entries?limit=-1"), 400, "bad_request"),
        Case::get("log start not a number", "/v1/log/entries?start=x".into(), 400, "bad_request"),
        Case::get("events without a controller", "/v1/events".into(), 400, "bad_request"),
        Case::get("events with a bad controller", "/v1/events?controller=00".into(), 400, "bad_request"),
        Case::get("events with after= not a number", format!("{}&after=last", events(&ctl)), 400, "bad_request"),
        Case::get("events with a bad Last-Event-ID", events(&ctl), 400, "bad_request").header("Last-Event-ID", "not-a-number").saying("Last-Event-ID"),
        Case::get("events with a negative Last-Event-ID", events(&ctl), 400, "bad_request").header("Last-Event-ID", "-1"),
        // -- batch checks --------------------------------------------------------------------
        Case::post("batch check that is not JSON", "/v1/consent/check", Some("application/json"), b"{questions".to_vec(), 400, "bad_request"),
        Case::post("batch check without questions", "/v1/consent/check", Some("application/json"), b"{}".to_vec(), 400, "bad_request"),
        Case::post("batch check as a JSON array of its members", "/v1/consent/check", Some("application/json"), b"[[]]".to_vec(), 400, "bad_request").saying("a JSON object"),
        Case::post("batch check with 1001 questions", "/v1/consent/check", Some("application/json"), questions(1001), 400, "bad_request").saying("1000"),
        Case::post("batch check body over the 512 KiB request limit", "/v1/consent/check", Some("application/json"), over_request_limit, 413, "too_large"),
        // -- routing -------------------------------------------------------------------------
        Case::get("unknown route", "/v1/nothing/here".into(), 404, "not_found"),
        Case::get("unknown route outside /v1", "/admin".into(), 404, "not_found"),
        Case::get("wrong method on a known route", "/v1/entries".into(), 405, "method_not_allowed").method("PUT"),
        Case::get("DELETE of an entry", "/v1/entries/00".into(), 405, "method_not_allowed").method("DELETE"),
        Case::get("path parameter that is not UTF-8", "/v1/entries/%FF".into(), 400, "bad_request")
            .known_bug("KNOWN_BUG_PATH_REJECTION_BODY_IS_NOT_JSON", KNOWN_BUG_PATH_REJECTION_BODY_IS_NOT_JSON),
        Case::get("peer id path parameter that is not UTF-8", "/v1/peers/%FF/block".into(), 400, "bad_request").method("POST"),
        Case::get("peer id that is not a peer id", "/v1/peers/nope/block".into(), 400, "bad_request").method("DELETE"),
    ];

    // A body that is declared but stops arriving: answered 408 once nothing came for 30 s (the
    // node's BODY_IDLE), in the background while the cases run.
    let stalled = {
        let addr = node.url().trim_start_matches("http://").to_owned();
        let total = b3_json.len();
        let partial = b3_json[..total / 2].to_vec();
        std::thread::spawn(move || -> String {
            use std::io::{Read, Write};
            let mut c = std::net::TcpStream::connect(&addr).expect("connect");
            c.set_read_timeout(Some(std::time::Duration::from_secs(120)))
                .expect("timeout");
            let head = format!(
                "POST /v1/entries HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\n\
                 Content-Length: {total}\r\n\r\n"
            );
            c.write_all(head.as_bytes()).expect("head");
            c.write_all(&partial).expect("half the body");
            let mut answer = vec![0u8; 1024];
            let n = c.read(&mut answer).unwrap_or(0);
            String::from_utf8_lossy(&answer[..n]).into_owned()
        })
    };

    let mut failures = Vec::new();
    for case in &cases {
        if let Err(e) = case.run(&node) {
            failures.push(format!(
                "- {} ({} {}): {e}",
                case.name, case.method, case.path
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} bad inputs were not answered as expected:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );

    // A Last-Event-ID that is not ASCII (HTTP clients refuse to send one; raw bytes do).
    {
        use std::io::{Read, Write};
        let addr = node.url().trim_start_matches("http://").to_owned();
        let mut c = std::net::TcpStream::connect(&addr).expect("connect");
        c.set_read_timeout(Some(std::time::Duration::from_secs(10)))
            .expect("timeout");
        let mut req = format!(
            "GET {} HTTP/1.1\r\nHost: {addr}\r\nLast-Event-ID: ",
            events(&ctl)
        )
        .into_bytes();
        req.extend_from_slice(b"\xe9\x31\r\n\r\n");
        c.write_all(&req).expect("request");
        let mut answer = vec![0u8; 1024];
        let n = c.read(&mut answer).unwrap_or(0);
        let answer = String::from_utf8_lossy(&answer[..n]);
        assert!(
            answer.starts_with("HTTP/1.1 400") && answer.contains("Last-Event-ID"),
            "events with a Last-Event-ID that is not ASCII: {answer:?}"
        );
    }
    let stalled = stalled.join().expect("the stalled request's thread");
    assert!(
        stalled.starts_with("HTTP/1.1 408") && stalled.contains(r#""error":"timeout""#),
        "a body that stops arriving: {stalled:?}"
    );

    // Nothing changed: same counters, same log, same chains; no refused entry is retrievable.
    assert_eq!(node.info(), info_before, "/v1/node/info changed");
    assert_eq!(
        node.get("/v1/log/entries").expect_status(200).body,
        log_before,
        "the ingest log changed"
    );
    for e in [
        &b3,
        &flipped_sig_entry,
        &wrong_key_seq1,
        &stranger_next,
        &retired_key_after_rotation,
        &rotation_by_non_recovery_key,
        &prev_mismatch,
        &time_went_back,
        &stranger_at_taken_seq,
    ] {
        node.get(&format!("/v1/entries/{}", e.hash()))
            .expect_status(404);
    }
    assert!(
        !node.chain(&b.id()).forked,
        "a stranger cannot mark a chain forked"
    );
    assert_eq!(node.chain(&a.id()).head_seq, 3);

    // And the node still answers and accepts good entries.
    assert_eq!(
        node.get("/healthz").expect_status(200).json(),
        json!({"status": "ok", "writable": true})
    );
    node.submit(&b.commit(b3), 201);
    node.submit(&a.grant(brand, &["dpv:Advertising"]), 201);
    assert_eq!(node.info().log_size, info_before.log_size + 2);
}
