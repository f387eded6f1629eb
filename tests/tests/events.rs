//! Server-sent events: live grant and withdraw events per controller, resuming by
//! `Last-Event-ID` or `after`, and `expire` events when a grant's valid_until passes, including
//! on a node whose clock is shifted and after a restart.

use std::time::{Duration, Instant};

use proto::api::{ConsentEvent, Verdict};
use proto::entry::Entry;
use proto::keys::PublicKey;
use tests::{key, now_ms, Chain, EventStream, NodeOptions, SseEvent, TestNode};

/// How quickly a ledger event must reach a subscriber.
const LIVE: Duration = Duration::from_secs(2);
/// Slack on top of a grant's remaining validity for its expire event.
const EXPIRY_SLACK: Duration = Duration::from_secs(3);

fn brand(name: &str) -> PublicKey {
    key(&format!("brand/{name}")).public_key()
}

fn parse(ev: &SseEvent) -> ConsentEvent {
    serde_json::from_str(&ev.data)
        .unwrap_or_else(|e| panic!("SSE data is not a ConsentEvent ({e}): {ev:?}"))
}

/// Asserts `ev` is the ledger event of `entry`, stored at `log_index`.
#[track_caller]
fn assert_ledger_event(ev: &SseEvent, entry: &Entry, log_index: u64) {
    let kind = entry.kind().as_str();
    assert_eq!(ev.event, kind, "{ev:?}");
    assert_eq!(
        ev.id.as_deref(),
        Some(log_index.to_string().as_str()),
        "{ev:?}"
    );
    let data = parse(ev);
    let consent = entry.content.body.consent().expect("a consent entry");
    assert_eq!(data.kind, kind);
    assert_eq!(data.subject, entry.subject());
    assert_eq!(data.controller, consent.controller);
    assert_eq!(data.purposes, consent.purposes);
    assert_eq!(
        (data.seq, data.hash, data.log_index),
        (entry.seq(), entry.hash(), log_index)
    );
    assert_eq!(data.valid_until, consent.valid_until);
}

fn within_ms(ms: u64) -> Duration {
    Duration::from_millis(ms) + EXPIRY_SLACK
}

#[test]
fn grant_and_withdraw_reach_a_subscriber_of_their_controller_within_two_seconds() {
    let node = TestNode::new();
    let (b, other) = (brand("a"), brand("other"));
    let stream = node.events(&b, None);
    let mut alice = Chain::new("sse-alice");
    let mut bob = Chain::new("sse-bob");

    let g = alice.grant(b, &["dpv:Marketing"]);
    let t = Instant::now();
    let idx = node.submit(&g, 201).log_index.expect("log index");
    assert_ledger_event(&stream.next(LIVE, "the grant event"), &g, idx);
    assert!(t.elapsed() < LIVE);

    // Another controller's event and a rotation are not sent to this subscriber.
    node.submit(&bob.grant(other, &["dpv:Marketing"]), 201);
    node.submit(
        &alice.rotate(key("sse-alice/new"), &key("sse-alice/rec2")),
        201,
    );
    let w = alice.withdraw(b, &["dpv:Marketing"]);
    let t = Instant::now();
    let idx = node.submit(&w, 201).log_index.expect("log index");
    assert_ledger_event(&stream.next(LIVE, "the withdraw event"), &w, idx);
    assert!(t.elapsed() < LIVE);

    let r = bob.refuse(b, &[]);
    let idx = node.submit(&r, 201).log_index.expect("log index");
    assert_ledger_event(&stream.next(LIVE, "the refuse event"), &r, idx);
    // A duplicate publishes nothing.
    node.submit(&r, 200);
    assert_eq!(stream.try_next(Duration::from_millis(300)), None);
}

#[test]
fn resuming_with_last_event_id_replays_only_the_events_after_it() {
    let node = TestNode::new();
    let (b, other) = (brand("a"), brand("other"));
    let mut c = Chain::new("resume");
    let g1 = c.grant(b, &["dpv:Marketing"]);
    let x = c.grant(other, &["dpv:Marketing"]);
    let w1 = c.withdraw(b, &["dpv:Marketing"]);
    let g2 = c.grant(b, &["dpv:Advertising"]);
    {
        // A subscriber sees g1, then goes away.
        let first = node.events(&b, None);
        node.submit(&g1, 201);
        let seen = first.next(LIVE, "the first grant");
        assert_ledger_event(&seen, &g1, 0);
    }
    node.submit_all(&[x, w1.clone(), g2.clone()]);

    let resumed = node.events(&b, Some(0));
    assert_ledger_event(&resumed.next(LIVE, "replayed withdraw"), &w1, 2);
    assert_ledger_event(&resumed.next(LIVE, "replayed grant"), &g2, 3);
    // Then live, without repeats.
    let g3 = c.grant(b, &["dpv:ServiceProvision"]);
    node.submit(&g3, 201);
    assert_ledger_event(
        &resumed.next(LIVE, "the live grant after the replay"),
        &g3,
        4,
    );
    assert_eq!(resumed.try_next(Duration::from_millis(300)), None);

    // `after=` resumes the same way; Last-Event-ID wins over it.
    let by_query = node.events_query(&format!("controller={b}&after=2"), None);
    assert_ledger_event(&by_query.next(LIVE, "grant after 2"), &g2, 3);
    assert_ledger_event(&by_query.next(LIVE, "grant after 3"), &g3, 4);
    let both = node.events_query(&format!("controller={b}&after=3"), Some("0"));
    assert_ledger_event(&both.next(LIVE, "withdraw after Last-Event-ID 0"), &w1, 2);
    // `from=` replays from a log index inclusive: `from=0` is everything; Last-Event-ID wins.
    let from_start = node.events_query(&format!("controller={b}&from=0"), None);
    for (e, idx) in [(&g1, 0), (&w1, 2), (&g2, 3), (&g3, 4)] {
        assert_ledger_event(&from_start.next(LIVE, "a replayed event from 0"), e, idx);
    }
    let from_and_id = node.events_query(&format!("controller={b}&from=0"), Some("3"));
    assert_ledger_event(&from_and_id.next(LIVE, "grant after id 3"), &g3, 4);
    // Resuming at the newest id replays nothing.
    let at_head = node.events(&b, Some(4));
    assert_eq!(at_head.try_next(Duration::from_millis(300)), None);
}

/// Waits for the next `expire` event, skipping ledger events; panics after `within`.
#[track_caller]
fn next_expire(stream: &EventStream, within: Duration) -> (SseEvent, ConsentEvent) {
    let deadline = Instant::now() + within;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let ev = stream.next(left, "an expire event");
        if ev.event == "expire" {
            let data = parse(&ev);
            return (ev, data);
        }
    }
}

#[test]
fn expiring_grant_emits_an_expire_event_and_checks_then_answer_expired() {
    let node = TestNode::new();
    let b = brand("a");
    let stream = node.events(&b, None);
    let mut alice = Chain::new("expiring-alice");
    let mut carol = Chain::new("expiring-carol");
    let valid_until = now_ms() + 1500;
    let g = alice.grant_until(b, &["dpv:Marketing"], valid_until);
    let idx = node.submit(&g, 201).log_index.expect("log index");
    assert_ledger_event(&stream.next(LIVE, "the grant event"), &g, idx);
    // Carol's grant would expire first, but she withdraws it: no expire event for her.
    node.submit(
        &carol.grant_until(b, &["dpv:Marketing"], valid_until - 300),
        201,
    );
    node.submit(&carol.withdraw(b, &[]), 201);
    let chk = node.check(&alice.id(), &b, "dpv:Marketing");
    assert_eq!(
        (chk.decision, chk.valid_until),
        (Verdict::Allow, Some(valid_until))
    );

    let (ev, data) = next_expire(&stream, within_ms(1500));
    assert!(now_ms() >= valid_until, "expire event before valid_until");
    assert_eq!(ev.id, None, "expire events carry no id");
    assert_eq!(
        data.subject,
        alice.id(),
        "only Alice's grant still decides: {data:?}"
    );
    assert_eq!((data.hash, data.seq, data.log_index), (g.hash(), 1, idx));
    assert_eq!(data.purposes, vec!["dpv:Marketing".to_owned()]);
    assert_eq!(data.valid_until, Some(valid_until));

    let chk = node.check(&alice.id(), &b, "dpv:Marketing");
    assert_eq!(
        (chk.decision, chk.status.as_str(), chk.hash),
        (Verdict::Deny, "dpv:ConsentExpired", Some(g.hash()))
    );
    assert_eq!(
        stream.try_next(Duration::from_millis(300)),
        None,
        "one expire event"
    );
}

#[test]
fn node_clock_offset_decides_when_a_grant_expires() {
    const HOUR: u64 = 3_600_000;
    let node = TestNode::spawn(NodeOptions::new().args(&["--clock-offset-ms", "3600000"]));
    let b = brand("a");
    let stream = node.events(&b, None);
    let mut c = Chain::new("offset");
    // An hour and a second from now by the real clock: a second from now by the node's.
    let real_now = now_ms();
    let valid_until = real_now + HOUR + 1000;
    let g = c.grant_until(b, &["dpv:Marketing"], valid_until);
    node.submit(&g, 201);
    let chk = node.check(&c.id(), &b, "dpv:Marketing");
    assert_eq!(chk.decision, Verdict::Allow);
    assert!(
        chk.at >= real_now + HOUR,
        "the node judges at its shifted clock: {chk:?}"
    );

    let (_, data) = next_expire(&stream, within_ms(1000));
    assert_eq!(data.hash, g.hash());
    assert!(
        now_ms() < valid_until,
        "expired by the node's clock, not the real one"
    );
    let chk = node.check(&c.id(), &b, "dpv:Marketing");
    assert_eq!(
        (chk.decision, chk.status.as_str()),
        (Verdict::Deny, "dpv:ConsentExpired")
    );
    // Asked about a time before valid_until, the answer is still "given".
    let then = node.check_at(&c.id(), &b, "dpv:Marketing", valid_until - 1);
    assert_eq!(
        (then.decision, then.status.as_str()),
        (Verdict::Allow, "dpv:ConsentGiven")
    );
}

#[test]
fn expiry_of_a_grant_stored_before_a_restart_is_still_reported() {
    let b = brand("a");
    let mut c = Chain::new("restart-expiry");
    let valid_until = now_ms() + 3_600_000;
    let g = c.grant_until(b, &["dpv:Marketing"], valid_until);
    let mut first = TestNode::new();
    first.submit(&g, 201);
    let status = first.terminate();
    assert!(status.success(), "SIGTERM exit status {status}");

    // Restart on the same store with the clock set 1.5 s before valid_until: the expiry must come
    // from what the node finds in its store at startup.
    let offset = valid_until - now_ms() - 1500;
    let node = TestNode::spawn(
        NodeOptions::new()
            .data_dir(first.data_dir())
            .args(&["--clock-offset-ms", &offset.to_string()]),
    );
    let stream = node.events(&b, None);
    let (_, data) = next_expire(&stream, within_ms(1500));
    assert_eq!((data.subject, data.hash), (c.id(), g.hash()));
    assert_eq!(data.valid_until, Some(valid_until));
    let chk = node.check(&c.id(), &b, "dpv:Marketing");
    assert_eq!(chk.status, "dpv:ConsentExpired");
    drop(node);
    drop(first);
}

#[test]
fn fork_is_announced_once_to_every_controller_the_chain_names_and_not_replayed() {
    let node = TestNode::new();
    let (b, b2, stranger) = (brand("a"), brand("b"), brand("never-named"));
    let mut c = Chain::new("sse-fork");
    let e1 = c.grant(b, &["dpv:Marketing"]);
    let e2 = c.refuse(b2, &[]);
    let e3 = c.grant(b, &["dpv:Advertising"]);
    node.submit_all(&[e1, e2, e3]);
    let to_b = node.events(&b, None);
    let to_b2 = node.events(&b2, None);
    let to_stranger = node.events(&stranger, None);

    // Both entries at seq 2 are the subject's own: b2 is named only by the one already stored.
    let mut alt = c.clone();
    alt.entries.truncate(1);
    let conflicting = alt.grant(b, &["dpv:ServiceProvision"]);
    let body = node.post_entry_json(&conflicting).expect_status(409).json();
    let proof: proto::chain::ForkProof =
        serde_json::from_value(body["fork_proof"].clone()).expect("a fork proof");
    for (stream, controller) in [(&to_b, b), (&to_b2, b2)] {
        let ev = stream.next(LIVE, "the fork event");
        assert_eq!(
            (ev.event.as_str(), ev.id.as_deref()),
            ("fork", None),
            "{ev:?}"
        );
        let data = parse(&ev);
        assert_eq!(
            (data.kind.as_str(), data.subject, data.controller),
            ("fork", c.id(), controller)
        );
        assert!(data.purposes.is_empty(), "{data:?}");
        assert_eq!(
            (data.seq, data.hash, data.log_index),
            (2, proof.b.hash(), 0)
        );
        assert_eq!(data.valid_until, None);
    }
    // Once: a second conflicting entry is refused with 409 but announces nothing new.
    let mut alt2 = c.clone();
    alt2.entries.truncate(1);
    node.post_entry_json(&alt2.withdraw(b, &[]))
        .expect_status(409);
    assert_eq!(to_b.try_next(Duration::from_millis(300)), None);
    assert_eq!(to_stranger.try_next(Duration::from_millis(1)), None);
    // Not replayed: a stream from 0 carries the ledger events only.
    let replay = node.events_query(&format!("controller={b}&from=0"), None);
    for _ in 0..2 {
        let ev = replay.next(LIVE, "a replayed grant");
        assert_eq!(ev.event, "grant", "{ev:?}");
    }
    assert_eq!(replay.try_next(Duration::from_millis(300)), None);
}

#[test]
fn graceful_shutdown_ends_open_event_streams_and_exits_cleanly() {
    let mut node = TestNode::new();
    let b = brand("a");
    let stream = node.events(&b, None);
    let idle = node.events(&brand("idle"), None);
    let g = Chain::new("shutdown").grant(b, &["dpv:Marketing"]);
    node.submit(&g, 201);
    assert_ledger_event(&stream.next(LIVE, "the grant event"), &g, 0);

    let started = Instant::now();
    let status = node.terminate();
    assert!(
        status.success(),
        "exit status after SIGTERM with open streams: {status}"
    );
    assert!(
        stream.ends_within(LIVE),
        "the event stream did not end at shutdown"
    );
    assert!(
        idle.ends_within(LIVE),
        "the idle event stream did not end at shutdown"
    );
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "shutdown with open streams took {:?}",
        started.elapsed()
    );
}
