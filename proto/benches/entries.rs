//! Benchmarks of proto's entry pipeline against raw ed25519-dalek on the same signatures.
//!
//! Two data sets, both deterministic:
//! - `distinct`: 1024 realistic entries (grants with 2-3 purposes, data categories, a notice,
//!   validity and jurisdiction; some withdrawals and refusals) from 1024 different subjects, so
//!   1024 different keys;
//! - `chain`: one subject's chain of 1024 such entries, all signed by the same key.
//!
//! Criterion measures every routine (groups `distinct`, `chain`, and `parts`, the pieces that
//! explain the batch ratio); after the run this binary reads criterion's `<group>/<bench>/new/`
//! files of every benchmark that ran in this process (the best sample's time per iteration, and
//! criterion's median estimate) and turns them into figures. The two acceptance figures come from paired
//! measurements instead (ours and ed25519-dalek's timed back to back, median of the per-round
//! ratios), which a busy machine disturbs far less. Output: one JSON object per line, written to
//! the file named by `BENCH_FIGURES`, or printed to stdout after criterion's report when that is
//! unset. `BENCH_QUICK=1` shortens everything for a smoke run. `scripts/bench` drives it;
//! docs/BENCHMARKS.md explains every figure.

use std::collections::{BTreeMap, HashMap};
use std::hint::black_box;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime};

use criterion::{BenchmarkGroup, Criterion, Throughput};
use curve25519_dalek::edwards::{CompressedEdwardsY, EdwardsPoint};
use curve25519_dalek::scalar::Scalar;
use curve25519_dalek::traits::{IsIdentity, VartimeMultiscalarMul};
use ed25519_dalek::{Signature as DalekSignature, Verifier, VerifyingKey};
use proto::entry::{
    hash_entry_bytes, recovery_commitment, sha256, Body, Consent, Content, Entry, Method, Notice,
};
use proto::keys::{Hash, SecretKey};
use proto::sig::BatchItem;
use sha2::{Digest, Sha512};

/// Entries (and signatures) in each data set; a power of two so that indices wrap with a mask.
const N: usize = 1024;
/// The small batch size.
const SMALL_BATCH: usize = 64;
/// 2026-01-01T00:00:00Z in ms.
const T0: u64 = 1_767_225_600_000;
const DAY_MS: u64 = 86_400_000;

const PURPOSES: &[&str] = &[
    "dpv:Advertising",
    "dpv:CommunicationManagement",
    "dpv:CustomerCare",
    "dpv:DirectMarketing",
    "dpv:Marketing",
    "dpv:OptimiseUserInterface",
    "dpv:Personalisation",
    "dpv:PersonalisedAdvertising",
];
const DATA: &[&str] = &[
    "pd:BrowsingBehavior",
    "pd:Cookie",
    "pd:EmailAddress",
    "pd:IPAddress",
    "pd:Location",
    "pd:Name",
    "pd:Preference",
    "pd:PurchaseHistory",
];
const LEGAL_BASES: &[&str] = &["dpv:Consent", "dpv:ExplicitlyExpressedConsent"];
const JURISDICTIONS: &[&str] = &["EU", "US-CA", "GB", "DE"];
const METHODS: &[Method] = &[Method::UiAction, Method::Api, Method::Cli, Method::Written];

/// A deterministic secret key from a label and an index.
fn key(label: &str, i: u64) -> SecretKey {
    let mut input = label.as_bytes().to_vec();
    input.extend_from_slice(&i.to_be_bytes());
    SecretKey::from_seed(sha256(&input).to_bytes())
}

/// `count` distinct codes from `pool`, chosen by `i`, sorted (as the encoding requires).
fn pick(pool: &[&str], i: usize, count: usize) -> Vec<String> {
    let mut v: Vec<String> = (0..count)
        .map(|k| pool[(i * 3 + k * 5) % pool.len()].to_owned())
        .collect();
    v.sort();
    v.dedup();
    v
}

/// A realistic consent body; `i` varies every field, `kind` is 0 grant, 1 withdraw, 2 refuse.
fn body(i: usize, kind: usize, issued_at: u64) -> Body {
    let version = i % 5 + 1;
    let consent = Consent {
        controller: key("bench/brand", (i % 16) as u64).public_key(),
        purposes: pick(PURPOSES, i, 2 + i % 2),
        data: pick(DATA, i + 1, 1 + i % 3),
        legal_basis: LEGAL_BASES[i % LEGAL_BASES.len()].into(),
        notice: Some(Notice {
            url: format!("https://brand-{}.example/privacy/v{version}", i % 16),
            sha256: sha256(format!("privacy notice {} v{version}", i % 16).as_bytes()),
            version: format!("v{version}"),
        }),
        valid_until: (kind == 0).then_some(issued_at + 400 * DAY_MS),
        jurisdiction: Some(JURISDICTIONS[i % JURISDICTIONS.len()].into()),
        method: METHODS[i % METHODS.len()],
        gpc: Some(i.is_multiple_of(3)),
    };
    match kind {
        0 => Body::Grant(consent),
        1 => Body::Withdraw(consent),
        _ => Body::Refuse(consent),
    }
}

/// Kind by position: mostly grants, every 8th a withdrawal, every 16th (offset) a refusal.
fn kind_of(i: usize) -> usize {
    match i % 16 {
        7 | 15 => 1,
        11 => 2,
        _ => 0,
    }
}

/// 1024 entries from 1024 subjects; each entry stands alone (seq 1 to 4, with a plausible prev).
fn distinct_entries() -> Vec<Entry> {
    (0..N)
        .map(|i| {
            let subject = key("bench/subject", i as u64);
            let seq = 1 + (i % 4) as u64;
            let issued_at = T0 + i as u64 * 1_000;
            Content {
                subject: subject.public_key(),
                seq,
                prev: if seq == 1 {
                    Hash::ZERO
                } else {
                    sha256(format!("previous entry {i}").as_bytes())
                },
                issued_at,
                signer: subject.public_key(),
                recovery: (seq == 1)
                    .then(|| recovery_commitment(&key("bench/recovery", i as u64).public_key())),
                body: body(i, kind_of(i), issued_at),
            }
            .sign(&subject)
            .expect("bench entry is well formed")
        })
        .collect()
}

/// One subject's chain of 1024 entries, all signed by the subject key.
fn chain_entries() -> Vec<Entry> {
    let subject = key("bench/chain-subject", 0);
    let recovery = key("bench/chain-recovery", 0);
    let mut out: Vec<Entry> = Vec::with_capacity(N);
    for i in 0..N {
        let seq = i as u64 + 1;
        let issued_at = T0 + i as u64 * 60_000;
        let e = Content {
            subject: subject.public_key(),
            seq,
            prev: out.last().map_or(Hash::ZERO, Entry::hash),
            issued_at,
            signer: subject.public_key(),
            recovery: (seq == 1).then(|| recovery_commitment(&recovery.public_key())),
            body: body(i, kind_of(i), issued_at),
        }
        .sign(&subject)
        .expect("bench chain entry is well formed");
        out.push(e);
    }
    out
}

/// Everything both implementations need, precomputed outside the timed loops.
struct Set {
    entries: Vec<Entry>,
    bytes: Vec<Vec<u8>>,
    inputs: Vec<Vec<u8>>,
    key_bytes: Vec<[u8; 32]>,
    sig_bytes: Vec<[u8; 64]>,
    vks: Vec<VerifyingKey>,
    sigs: Vec<DalekSignature>,
}

impl Set {
    fn new(entries: Vec<Entry>) -> Set {
        let bytes: Vec<Vec<u8>> = entries.iter().map(Entry::to_bytes).collect();
        let inputs: Vec<Vec<u8>> = entries.iter().map(|e| e.content.signing_input()).collect();
        let key_bytes: Vec<[u8; 32]> = entries
            .iter()
            .map(|e| e.content.signer.to_bytes())
            .collect();
        let sig_bytes: Vec<[u8; 64]> = entries.iter().map(|e| e.signature.to_bytes()).collect();
        let vks: Vec<VerifyingKey> = key_bytes
            .iter()
            .map(|k| VerifyingKey::from_bytes(k).expect("bench key decodes"))
            .collect();
        let sigs: Vec<DalekSignature> = sig_bytes.iter().map(DalekSignature::from_bytes).collect();
        let set = Set {
            entries,
            bytes,
            inputs,
            key_bytes,
            sig_bytes,
            vks,
            sigs,
        };
        set.check();
        set
    }

    /// Every routine must measure the success path: check that all of them accept.
    fn check(&self) {
        for (i, e) in self.entries.iter().enumerate() {
            proto::verify_entry(e).expect("proto accepts the bench entry");
            assert_eq!(
                &Entry::from_bytes(&self.bytes[i]).expect("bench bytes decode"),
                e
            );
            self.vks[i]
                .verify_strict(&self.inputs[i], &self.sigs[i])
                .expect("dalek verify_strict accepts the bench signature");
        }
        let items = self.items();
        for size in [SMALL_BATCH, N] {
            for c in 0..N / size {
                let r = c * size..(c + 1) * size;
                proto::sig::verify_batch(&items[r.clone()])
                    .expect("proto batch accepts the bench signatures");
                let msgs: Vec<&[u8]> = self.inputs[r.clone()].iter().map(Vec::as_slice).collect();
                ed25519_dalek::verify_batch(&msgs, &self.sigs[r.clone()], &self.vks[r])
                    .expect("dalek batch accepts the bench signatures");
            }
        }
    }

    fn items(&self) -> Vec<BatchItem<'_>> {
        self.entries
            .iter()
            .zip(&self.inputs)
            .map(|(e, m)| BatchItem {
                key: &e.content.signer,
                message: m,
                signature: &e.signature,
            })
            .collect()
    }

    fn msgs(&self) -> Vec<&[u8]> {
        self.inputs.iter().map(Vec::as_slice).collect()
    }
}

/// Benchmarks that ran in this process, as "group/name".
static RAN: Mutex<Vec<String>> = Mutex::new(Vec::new());

fn mark(group: &str, name: &str) {
    let id = format!("{group}/{name}");
    let mut ran = RAN.lock().expect("RAN lock is never poisoned");
    if !ran.contains(&id) {
        ran.push(id);
    }
}

/// Registers a benchmark whose routine handles `items` entries per iteration. The routine is
/// called once per iteration with a counter that it may use to cycle through the set.
fn bench<F>(
    group: &mut BenchmarkGroup<'_, criterion::measurement::WallTime>,
    gname: &str,
    name: &str,
    items: usize,
    mut f: F,
) where
    F: FnMut(usize),
{
    group.throughput(Throughput::Elements(items as u64));
    group.bench_function(name, |b| {
        mark(gname, name);
        let mut i = 0usize;
        b.iter(|| {
            f(i);
            i = i.wrapping_add(1);
        });
    });
}

fn single_benches(
    g: &mut BenchmarkGroup<'_, criterion::measurement::WallTime>,
    gname: &str,
    s: &Set,
) {
    let m = N - 1;
    bench(g, gname, "verify_single", 1, |i| {
        black_box(&s.entries[i & m])
            .verify_signature()
            .expect("valid");
    });
    bench(g, gname, "raw_verify", 1, |i| {
        let i = i & m;
        black_box(&s.vks[i])
            .verify(&s.inputs[i], &s.sigs[i])
            .expect("valid");
    });
}

/// A what-if prototype, not proto's code: proto's batch rule (same checks, same cofactored
/// equation, same per-key aggregation) with three changes that docs/BENCHMARKS.md suggests:
/// keys come decoded and checked from a cache, R's small-order check compares R's bytes with
/// the 8 canonical small-order encodings (exact, because R must already be canonical) instead of
/// multiplying by the cofactor, and one SHA-512 yields four 128-bit coefficients.
struct WhatIf {
    /// Decoded, checked keys (a node would keep these per subject).
    cache: HashMap<[u8; 32], EdwardsPoint>,
    /// Canonical encodings of the 8 points of small order.
    small: [[u8; 32]; 8],
}

impl WhatIf {
    fn new(s: &Set) -> WhatIf {
        let cache = s
            .entries
            .iter()
            .map(|e| {
                proto::sig::check_public_key(&e.content.signer).expect("bench key passes");
                let p = CompressedEdwardsY(e.content.signer.to_bytes())
                    .decompress()
                    .expect("bench key decodes");
                (e.content.signer.to_bytes(), p)
            })
            .collect();
        let small = curve25519_dalek::constants::EIGHT_TORSION.map(|p| p.compress().to_bytes());
        WhatIf { cache, small }
    }

    /// True when every signature is valid (the prototype has no failure naming).
    fn verify_batch(&self, items: &[BatchItem<'_>]) -> bool {
        let n = items.len();
        let mut slot: HashMap<&[u8; 32], usize> = HashMap::with_capacity(n);
        let mut a_points: Vec<EdwardsPoint> = Vec::new();
        let mut points = Vec::with_capacity(2 * n + 1);
        let mut ks = Vec::with_capacity(n);
        let mut ss = Vec::with_capacity(n);
        let mut slots = Vec::with_capacity(n);
        let mut transcript = Sha512::new();
        transcript.update(b"consent-ledger/batch-z/v1\0");
        for it in items {
            let sig = it.signature.as_bytes();
            let mut r_bytes = [0u8; 32];
            let mut s_bytes = [0u8; 32];
            r_bytes.copy_from_slice(&sig[..32]);
            s_bytes.copy_from_slice(&sig[32..]);
            let Some(s) = Option::<Scalar>::from(Scalar::from_canonical_bytes(s_bytes)) else {
                return false;
            };
            let key = it.key.as_bytes();
            let next = a_points.len();
            let at = *slot.entry(key).or_insert(next);
            if at == next {
                match self.cache.get(key) {
                    Some(a) => a_points.push(*a),
                    None => return false, // a real cache would decode and check the key here
                }
            }
            if !proto::sig::is_canonical_point_encoding(&r_bytes) || self.small.contains(&r_bytes) {
                return false;
            }
            let Some(r) = CompressedEdwardsY(r_bytes).decompress() else {
                return false;
            };
            let mut h = Sha512::new();
            h.update(r_bytes);
            h.update(key);
            h.update(it.message);
            let k = Scalar::from_bytes_mod_order_wide(&h.finalize().into());
            transcript.update(k.as_bytes());
            transcript.update(r_bytes);
            transcript.update(s_bytes);
            points.push(r);
            ks.push(k);
            ss.push(s);
            slots.push(at);
        }
        let seed: [u8; 64] = transcript.finalize().into();
        let mut a_coef = vec![Scalar::ZERO; a_points.len()];
        let mut scalars = Vec::with_capacity(2 * n + 1);
        let mut b = Scalar::ZERO;
        let mut block = [0u8; 64];
        for i in 0..n {
            if i.is_multiple_of(4) {
                let mut h = Sha512::new();
                h.update(seed);
                h.update((i as u64 / 4).to_be_bytes());
                block = h.finalize().into();
            }
            let mut z = [0u8; 32];
            z[..16].copy_from_slice(&block[(i % 4) * 16..(i % 4) * 16 + 16]);
            z[0] |= 1;
            let z = Scalar::from_bytes_mod_order(z);
            b += z * ss[i];
            a_coef[slots[i]] += z * ks[i];
            scalars.push(z);
        }
        scalars.extend_from_slice(&a_coef);
        points.extend_from_slice(&a_points);
        scalars.push(-b);
        points.push(curve25519_dalek::constants::ED25519_BASEPOINT_POINT);
        EdwardsPoint::vartime_multiscalar_mul(scalars, points)
            .mul_by_cofactor()
            .is_identity()
    }
}

fn whatif_benches(
    g: &mut BenchmarkGroup<'_, criterion::measurement::WallTime>,
    gname: &str,
    s: &Set,
    sizes: &[usize],
) {
    let w = WhatIf::new(s);
    let items = s.items();
    for &size in sizes {
        for c in items.chunks(size) {
            assert!(
                w.verify_batch(c),
                "what-if batch accepts the bench signatures"
            );
        }
        let wrong = b"tampered".to_vec();
        let mut bad = items[..size].to_vec();
        bad[size / 2].message = &wrong;
        assert!(
            !w.verify_batch(&bad),
            "what-if batch rejects a wrong message"
        );
        let chunks = N / size;
        bench(
            g,
            gname,
            &format!("whatif_verify_batch_{size}"),
            size,
            |i| {
                let c = (i % chunks) * size;
                assert!(w.verify_batch(black_box(&items[c..c + size])));
            },
        );
    }
}

/// proto's batch verification of chunk `c` (of `size` signatures) of a set.
fn ours_batch(items: &[BatchItem<'_>], size: usize, c: usize) {
    proto::sig::verify_batch(black_box(&items[c * size..(c + 1) * size])).expect("valid");
}

/// The same with decoded keys kept in a warm `KeyCache`, as a node keeps its subjects' keys: the
/// like-for-like comparison with ed25519-dalek given `VerifyingKey`s decoded outside the timing.
fn ours_batch_cached(
    items: &[BatchItem<'_>],
    size: usize,
    c: usize,
    cache: &std::cell::RefCell<proto::sig::KeyCache>,
) {
    proto::sig::verify_batch_cached(
        black_box(&items[c * size..(c + 1) * size]),
        &mut cache.borrow_mut(),
    )
    .expect("valid");
}

/// ed25519-dalek's `verify_batch` of chunk `c` (of `size` signatures) of a set: with keys
/// already decoded (`VerifyingKey`s built outside the timing), or `from_bytes` inside it.
fn raw_batch(s: &Set, msgs: &[&[u8]], size: usize, c: usize, from_bytes: bool) {
    let r = c * size..(c + 1) * size;
    if from_bytes {
        let vks: Vec<VerifyingKey> = black_box(&s.key_bytes[r.clone()])
            .iter()
            .map(|k| VerifyingKey::from_bytes(k).expect("valid key"))
            .collect();
        let sigs: Vec<DalekSignature> = s.sig_bytes[r.clone()]
            .iter()
            .map(DalekSignature::from_bytes)
            .collect();
        ed25519_dalek::verify_batch(&msgs[r], &sigs, &vks).expect("valid");
    } else {
        ed25519_dalek::verify_batch(black_box(&msgs[r.clone()]), &s.sigs[r.clone()], &s.vks[r])
            .expect("valid");
    }
}

fn batch_benches(
    g: &mut BenchmarkGroup<'_, criterion::measurement::WallTime>,
    gname: &str,
    s: &Set,
    sizes: &[usize],
) {
    let items = s.items();
    let msgs = s.msgs();
    for &size in sizes {
        let chunks = N / size;
        bench(g, gname, &format!("verify_batch_{size}"), size, |i| {
            ours_batch(&items, size, i % chunks);
        });
        bench(g, gname, &format!("raw_verify_batch_{size}"), size, |i| {
            raw_batch(s, &msgs, size, i % chunks, false);
        });
        bench(
            g,
            gname,
            &format!("raw_verify_batch_{size}_from_bytes"),
            size,
            |i| {
                raw_batch(s, &msgs, size, i % chunks, true);
            },
        );
    }
}

fn distinct_benches(c: &mut Criterion, s: &Set) {
    let gname = "distinct";
    let mut g = c.benchmark_group(gname);
    let m = N - 1;
    bench(&mut g, gname, "encode", 1, |i| {
        black_box(black_box(&s.entries[i & m]).to_bytes());
    });
    bench(&mut g, gname, "decode", 1, |i| {
        black_box(Entry::from_bytes(black_box(&s.bytes[i & m])).expect("valid"));
    });
    bench(&mut g, gname, "hash", 1, |i| {
        black_box(hash_entry_bytes(black_box(&s.bytes[i & m])));
    });
    bench(&mut g, gname, "entry_hash", 1, |i| {
        black_box(black_box(&s.entries[i & m]).hash());
    });
    bench(&mut g, gname, "decode_hash", 1, |i| {
        let b = black_box(&s.bytes[i & m]);
        black_box(Entry::from_bytes(b).expect("valid"));
        black_box(hash_entry_bytes(b));
    });
    bench(&mut g, gname, "verify_entry", 1, |i| {
        proto::verify_entry(black_box(&s.entries[i & m])).expect("valid");
    });
    bench(&mut g, gname, "sig_verify", 1, |i| {
        let i = i & m;
        let e = black_box(&s.entries[i]);
        proto::sig::verify(&e.content.signer, &s.inputs[i], &e.signature).expect("valid");
    });
    single_benches(&mut g, gname, s);
    bench(&mut g, gname, "raw_verify_strict", 1, |i| {
        let i = i & m;
        black_box(&s.vks[i])
            .verify_strict(&s.inputs[i], &s.sigs[i])
            .expect("valid");
    });
    bench(&mut g, gname, "raw_verify_from_bytes", 1, |i| {
        let i = i & m;
        VerifyingKey::from_bytes(black_box(&s.key_bytes[i]))
            .expect("valid key")
            .verify(&s.inputs[i], &DalekSignature::from_bytes(&s.sig_bytes[i]))
            .expect("valid");
    });
    batch_benches(&mut g, gname, s, &[SMALL_BATCH, N]);
    bench(&mut g, gname, &format!("verify_entries_{N}"), N, |_| {
        proto::chain::verify_entries(black_box(&s.entries)).expect("valid entries");
    });
    whatif_benches(&mut g, gname, s, &[SMALL_BATCH, N]);
    g.finish();
}

/// The parts of a batch verification that proto does and ed25519-dalek's batch (given decoded
/// keys) does not, or does differently; they explain the batch ratio (docs/BENCHMARKS.md).
fn parts_benches(c: &mut Criterion, s: &Set) {
    let gname = "parts";
    let mut g = c.benchmark_group(gname);
    let m = N - 1;
    let points: Vec<EdwardsPoint> = s.vks.iter().map(VerifyingKey::to_edwards).collect();
    bench(&mut g, gname, "point_decompress", 1, |i| {
        black_box(CompressedEdwardsY(*black_box(&s.key_bytes[i & m])).decompress());
    });
    bench(&mut g, gname, "small_order_check", 1, |i| {
        black_box(black_box(&points[i & m]).is_small_order());
    });
    bench(&mut g, gname, "sha512_coefficient", 1, |i| {
        // As proto::sig's per-item coefficient: SHA-512 over a 64-byte seed and the index.
        let mut h = Sha512::new();
        h.update(black_box(&s.sig_bytes[i & m]));
        h.update((i as u64).to_be_bytes());
        let d = h.finalize();
        let mut z = [0u8; 32];
        z[..16].copy_from_slice(&d[..16]);
        black_box(Scalar::from_bytes_mod_order(z));
    });
    bench(&mut g, gname, &format!("hashmap_keys_{N}"), N, |_| {
        // As proto::sig::verify_batch's key table: contains_key + insert, then get_mut, per item.
        let mut keys: HashMap<[u8; 32], (EdwardsPoint, Scalar)> = HashMap::new();
        for (k, p) in s.key_bytes.iter().zip(&points) {
            if !keys.contains_key(k) {
                keys.insert(*k, (*p, Scalar::ZERO));
            }
        }
        for k in &s.key_bytes {
            if let Some(e) = keys.get_mut(k) {
                e.1 += Scalar::ONE;
            }
        }
        black_box(keys);
    });
    g.finish();
}

fn chain_benches(c: &mut Criterion, s: &Set) {
    let gname = "chain";
    let mut g = c.benchmark_group(gname);
    bench(&mut g, gname, &format!("verify_chain_{N}"), N, |_| {
        proto::verify_chain(black_box(&s.entries)).expect("valid chain");
    });
    single_benches(&mut g, gname, s);
    batch_benches(&mut g, gname, s, &[N]);
    g.finish();
}

/// Time per iteration (ns) of a benchmark that ran in this process, from criterion's files:
/// the best sample (lowest mean time per iteration over one sample, from `sample.json`) and
/// criterion's median estimate (`estimates.json`).
///
/// The best sample is the figure: the code under test is deterministic and interference (other
/// processes on a 2-core machine) only ever adds time, so the least disturbed sample is the
/// steadiest estimate of its cost. Each sample averages many iterations (milliseconds or more),
/// so timer noise does not make the minimum optimistic.
fn timings(dir: &Path, id: &str, since: SystemTime) -> Option<(f64, f64)> {
    let new = dir.join(id).join("new");
    let read = |name: &str| -> Option<serde_json::Value> {
        let path = new.join(name);
        let fresh = std::fs::metadata(&path)
            .and_then(|m| m.modified())
            .is_ok_and(|t| t >= since);
        if !fresh {
            return None;
        }
        serde_json::from_str(&std::fs::read_to_string(&path).ok()?).ok()
    };
    let median = read("estimates.json")?["median"]["point_estimate"].as_f64()?;
    let sample = read("sample.json")?;
    let iters = sample["iters"].as_array()?;
    let times = sample["times"].as_array()?;
    let best = iters
        .iter()
        .zip(times)
        .filter_map(|(n, t)| Some(t.as_f64()? / n.as_f64()?))
        .filter(|x| x.is_finite() && *x > 0.0)
        .min_by(f64::total_cmp)?;
    Some((best, median))
}

/// One figure line; keys keep their order.
struct Line(Vec<(&'static str, serde_json::Value)>);

impl Line {
    fn push(&mut self, k: &'static str, v: impl Into<serde_json::Value>) -> &mut Self {
        self.0.push((k, v.into()));
        self
    }

    fn render(&self) -> String {
        let fields: Vec<String> = self
            .0
            .iter()
            .map(|(k, v)| format!("{}:{}", serde_json::Value::from(*k), v))
            .collect();
        format!("{{{}}}", fields.join(","))
    }
}

fn round(x: f64, digits: i32) -> f64 {
    let p = 10f64.powi(digits);
    (x * p).round() / p
}

/// Items per iteration of each benchmark, by "group/name".
fn items_per_iter(id: &str) -> usize {
    let name = id.rsplit('/').next().unwrap_or(id);
    if name.contains(&format!("_{N}")) {
        N
    } else if name.contains(&format!("_{SMALL_BATCH}")) {
        SMALL_BATCH
    } else {
        1
    }
}

/// Turns criterion's measurements into figure lines; also returns ns per item (best sample) by
/// "group/name".
fn figures(dir: &Path, since: SystemTime) -> (Vec<String>, BTreeMap<String, f64>) {
    let ran = RAN.lock().expect("RAN lock is never poisoned").clone();
    let mut ns: BTreeMap<String, f64> = BTreeMap::new();
    let mut median_ns: BTreeMap<String, f64> = BTreeMap::new();
    for id in &ran {
        match timings(dir, id, since) {
            Some((best, median)) => {
                let items = items_per_iter(id) as f64;
                ns.insert(id.clone(), best / items);
                median_ns.insert(id.clone(), median / items);
            }
            None => eprintln!("bench: no fresh estimates for {id} under {}", dir.display()),
        }
    }
    let rate = |id: &str| ns.get(id).map(|t| 1e9 / t);
    let mut out = Vec::new();
    for id in &ran {
        let Some(&t) = ns.get(id) else { continue };
        let (group, name) = id.split_once('/').unwrap_or(("", id));
        let value = 1e9 / t;
        let reference = if group == "chain" {
            "chain"
        } else {
            "distinct"
        };
        let raw = rate(&format!("{reference}/raw_verify"));
        let mut l = Line(Vec::new());
        let figure = match group {
            "chain" => format!("chain_{name}"),
            "parts" => format!("part_{name}"),
            _ => name.to_owned(),
        };
        let unit = if group == "parts" {
            "ops/s"
        } else if name.starts_with("raw_") || name.contains("verify_batch") || name == "sig_verify"
        {
            "signatures/s"
        } else {
            "entries/s"
        };
        l.push("name", figure)
            .push("unit", unit)
            .push("value", round(value, 1))
            .push("ns_per_item", round(t, 1))
            .push(
                "median_ns_per_item",
                median_ns.get(id).map(|m| round(*m, 1)),
            )
            .push("subjects", if group == "chain" { 1 } else { N })
            .push("raw_ed25519_verify_per_s", raw.map(|r| round(r, 1)))
            .push("ratio_to_raw_verify", raw.map(|r| round(value / r, 4)));
        let batch = items_per_iter(id);
        if batch > 1 && group != "parts" {
            let raw_batch = rate(&format!("{group}/raw_verify_batch_{batch}"));
            l.push("batch_size", batch)
                .push(
                    "raw_ed25519_verify_batch_per_s",
                    raw_batch.map(|r| round(r, 1)),
                )
                .push("ratio_to_raw_batch", raw_batch.map(|r| round(value / r, 4)));
        }
        out.push(l.render());
    }

    (out, ns)
}

/// A paired measurement of two routines: timed back to back, in alternating order, `rounds`
/// times, so that both get the same chances at a quiet machine; the figure compares the best
/// round of each (interference only ever adds time). Much steadier on a shared 2-core machine
/// than the ratio of two benchmarks run a minute apart.
struct Pair {
    /// Best (lowest) ns per item of `a` over the rounds.
    a_ns: f64,
    /// Best ns per item of `b` over the rounds.
    b_ns: f64,
    /// `a_ns / b_ns`: the figure (best against best, as for criterion's figures).
    time_ratio: f64,
    /// Median over rounds of the per-round ratio, a cross-check.
    median_ratio: f64,
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

fn paired(
    rounds: usize,
    a_items: usize,
    mut a: impl FnMut(),
    b_items: usize,
    mut b: impl FnMut(),
) -> Pair {
    // Each timed call follows an untimed call of the same routine, so that neither routine is
    // timed on caches that the other one has just filled with its own data.
    let time = |f: &mut dyn FnMut(), items: usize| {
        f();
        let t = Instant::now();
        f();
        t.elapsed().as_nanos() as f64 / items as f64
    };
    let (mut ra, mut rb, mut ratios) = (Vec::new(), Vec::new(), Vec::new());
    for r in 0..rounds {
        let (ta, tb) = if r.is_multiple_of(2) {
            let ta = time(&mut a, a_items);
            (ta, time(&mut b, b_items))
        } else {
            let tb = time(&mut b, b_items);
            (time(&mut a, a_items), tb)
        };
        ra.push(ta);
        rb.push(tb);
        ratios.push(ta / tb);
    }
    let best = |v: &[f64]| v.iter().copied().fold(f64::INFINITY, f64::min);
    let (a_ns, b_ns) = (best(&ra), best(&rb));
    Pair {
        a_ns,
        b_ns,
        time_ratio: a_ns / b_ns,
        median_ratio: median(ratios),
    }
}

/// The two acceptance figures, from paired measurements; criterion's figures (`ns`, ns per
/// item) are added as a cross-check.
fn acceptance(ns: &BTreeMap<String, f64>, d: &Set, ch: &Set, rounds: usize) -> Vec<String> {
    eprintln!("bench: paired measurements for the acceptance figures ({rounds} rounds each)");
    let (d_items, d_msgs) = (d.items(), d.msgs());
    let (c_items, c_msgs) = (ch.items(), ch.msgs());
    let whatif = WhatIf::new(d);
    let all = |size: usize, f: &mut dyn FnMut(usize, usize)| {
        for c in 0..N / size {
            f(size, c);
        }
    };
    let cache = std::cell::RefCell::new(proto::sig::KeyCache::new(4 * N));
    let ours_d = |size| all(size, &mut |z, c| ours_batch(&d_items, z, c));
    let ours_dc = |size| all(size, &mut |z, c| ours_batch_cached(&d_items, z, c, &cache));
    let raw_d = |size, fb| all(size, &mut |z, c| raw_batch(d, &d_msgs, z, c, fb));
    // Warm the cache once, as dalek's keys are decoded once outside the timing.
    ours_dc(N);
    ours_batch_cached(&c_items, N, 0, &cache);
    // (case, pair): `a` is ours, `b` is ed25519-dalek's batch; a rate ratio is b_ns / a_ns.
    let cases: Vec<(&str, Pair)> = vec![
        (
            "distinct_1024",
            paired(rounds, N, || ours_dc(N), N, || raw_d(N, false)),
        ),
        (
            "distinct_64",
            paired(
                rounds,
                N,
                || ours_dc(SMALL_BATCH),
                N,
                || raw_d(SMALL_BATCH, false),
            ),
        ),
        (
            "chain_1024",
            paired(
                rounds,
                N,
                || ours_batch_cached(&c_items, N, 0, &cache),
                N,
                || raw_batch(ch, &c_msgs, N, 0, false),
            ),
        ),
        (
            "distinct_1024_cold_vs_dalek_decoded",
            paired(rounds, N, || ours_d(N), N, || raw_d(N, false)),
        ),
        (
            "distinct_1024_cold_vs_dalek_from_bytes",
            paired(rounds, N, || ours_d(N), N, || raw_d(N, true)),
        ),
        (
            "chain_1024_vs_dalek_from_bytes",
            paired(
                rounds,
                N,
                || ours_batch(&c_items, N, 0),
                N,
                || raw_batch(ch, &c_msgs, N, 0, true),
            ),
        ),
        (
            "whatif_distinct_1024",
            paired(
                rounds,
                N,
                || assert!(whatif.verify_batch(black_box(&d_items))),
                N,
                || raw_d(N, false),
            ),
        ),
    ];
    let raw_verify = ns.get("distinct/raw_verify").map(|t| 1e9 / t);
    let mut out = Vec::new();

    // Acceptance 1: our batch against ed25519-dalek's batch on the same signatures.
    let mut by_case = serde_json::Map::new();
    for (case, p) in &cases {
        by_case.insert((*case).to_owned(), round(1.0 / p.time_ratio, 4).into());
    }
    let head = &cases[0].1;
    let v = 1.0 / head.time_ratio;
    let criterion_value = match (
        ns.get(&format!("distinct/verify_batch_{N}")),
        ns.get(&format!("distinct/raw_verify_batch_{N}")),
    ) {
        (Some(a), Some(b)) => Some(round(b / a, 4)),
        _ => None,
    };
    let mut l = Line(Vec::new());
    l.push("name", "batch_vs_raw_batch")
        .push("unit", "ratio")
        .push("value", round(v, 4))
        .push("target", ">= 0.90")
        .push("meets_target", v >= 0.90)
        .push("method", format!("paired, best of {rounds} rounds each"))
        .push("batch_size", N)
        .push("subjects", N)
        .push("verify_batch_per_s", round(1e9 / head.a_ns, 1))
        .push("raw_ed25519_verify_batch_per_s", round(1e9 / head.b_ns, 1))
        .push("raw_ed25519_verify_per_s", raw_verify.map(|r| round(r, 1)))
        .push(
            "ratio_to_raw_verify",
            raw_verify.map(|r| round(1e9 / head.a_ns / r, 4)),
        )
        .push("ratio_to_raw_batch", round(v, 4))
        .push("median_round_ratio", round(1.0 / head.median_ratio, 4))
        .push("criterion_value", criterion_value)
        .push("by_case", serde_json::Value::Object(by_case));
    out.push(l.render());

    // Acceptance 2: decoding and hashing an entry against verifying its signature.
    const VERIFY_CHUNK: usize = 64;
    let mut next = 0usize;
    let p = paired(
        rounds,
        N,
        || {
            for b in &d.bytes {
                black_box(Entry::from_bytes(black_box(b)).expect("valid"));
                black_box(hash_entry_bytes(b));
            }
        },
        VERIFY_CHUNK,
        || {
            for _ in 0..VERIFY_CHUNK {
                black_box(&d.entries[next & (N - 1)])
                    .verify_signature()
                    .expect("valid");
                next += 1;
            }
        },
    );
    let v = p.time_ratio;
    let criterion_value = match (
        ns.get("distinct/decode_hash"),
        ns.get("distinct/verify_single"),
    ) {
        (Some(a), Some(b)) => Some(round(a / b, 4)),
        _ => None,
    };
    let mut l = Line(Vec::new());
    l.push("name", "decode_hash_cost_vs_verify")
        .push("unit", "ratio")
        .push("value", round(v, 4))
        .push("target", "< 0.10")
        .push("meets_target", v < 0.10)
        .push("method", format!("paired, best of {rounds} rounds each"))
        .push("decode_hash_ns", round(p.a_ns, 1))
        .push("verify_single_ns", round(p.b_ns, 1))
        .push("raw_ed25519_verify_per_s", raw_verify.map(|r| round(r, 1)))
        .push("ratio_to_raw_verify", serde_json::Value::Null)
        .push("median_round_ratio", round(p.median_ratio, 4))
        .push("criterion_value", criterion_value);
    out.push(l.render());
    out
}

/// Where criterion keeps its estimates: `$CRITERION_HOME`, else `<target dir>/criterion`, the
/// target dir being `$CARGO_TARGET_DIR` or the one this binary was built into.
fn criterion_dir() -> PathBuf {
    if let Some(home) = std::env::var_os("CRITERION_HOME") {
        return PathBuf::from(home);
    }
    if let Some(t) = std::env::var_os("CARGO_TARGET_DIR") {
        return PathBuf::from(t).join("criterion");
    }
    // target/<profile>/deps/entries-<hash>
    std::env::current_exe()
        .ok()
        .and_then(|exe| exe.ancestors().nth(3).map(Path::to_path_buf))
        .map_or_else(
            || PathBuf::from("target/criterion"),
            |t| t.join("criterion"),
        )
}

fn main() {
    let quick = std::env::var("BENCH_QUICK").is_ok_and(|v| !v.is_empty() && v != "0");
    let (warm_up, measure, samples) = if quick {
        (Duration::from_millis(100), Duration::from_millis(300), 10)
    } else {
        (Duration::from_secs(1), Duration::from_secs(3), 30)
    };
    let dir = criterion_dir();
    let mut c = Criterion::default()
        .warm_up_time(warm_up)
        .measurement_time(measure)
        .sample_size(samples)
        .output_directory(&dir)
        .configure_from_args();

    eprintln!("bench: building data sets ({N} subjects; one chain of {N})");
    let distinct = Set::new(distinct_entries());
    let chain = Set::new(chain_entries());
    proto::verify_chain(&chain.entries).expect("bench chain verifies");
    let avg_len = distinct.bytes.iter().map(Vec::len).sum::<usize>() / N;
    eprintln!("bench: average encoded entry: {avg_len} bytes");

    // Estimates older than this are from earlier runs and are ignored.
    let since = SystemTime::now() - Duration::from_secs(1);
    distinct_benches(&mut c, &distinct);
    chain_benches(&mut c, &chain);
    parts_benches(&mut c, &distinct);
    c.final_summary();

    // Criterion measures only when cargo bench passes `--bench`; `cargo test` runs each routine
    // once, and `--list` / `--test` run nothing worth reporting.
    let args: Vec<String> = std::env::args().collect();
    if !args.iter().any(|a| a == "--bench") || args.iter().any(|a| a == "--test" || a == "--list") {
        return;
    }
    let (mut lines, ns) = figures(&dir, since);
    if lines.is_empty() {
        eprintln!("bench: no figures (no benchmark ran?)");
        return;
    }
    lines.extend(acceptance(
        &ns,
        &distinct,
        &chain,
        if quick { 9 } else { 41 },
    ));
    let text = lines.join("\n") + "\n";
    match std::env::var_os("BENCH_FIGURES") {
        Some(path) => {
            std::fs::write(&path, text).expect("write BENCH_FIGURES");
            eprintln!(
                "bench: {} figures written to {}",
                lines.len(),
                Path::new(&path).display()
            );
        }
        None => print!("{text}"),
    }
}
